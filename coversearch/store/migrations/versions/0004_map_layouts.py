"""2-D layouts of a feature set's vectors for the catalogue map, cached per feature-set state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One layout per (feature set, method); embedding_fingerprint is the store's fingerprint of the
    # vectors it was computed from, so an ingest or remove makes it stale, as it does an index.
    op.execute(
        """
        CREATE TABLE map_layouts (
            feature_set_id INTEGER NOT NULL,
            method VARCHAR NOT NULL,
            embedding_fingerprint VARCHAR NOT NULL,
            albums BIGINT NOT NULL,
            seconds DOUBLE NOT NULL,
            computed_at TIMESTAMP NOT NULL,
            PRIMARY KEY (feature_set_id, method)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE map_coords (
            feature_set_id INTEGER NOT NULL,
            method VARCHAR NOT NULL,
            album_id BIGINT NOT NULL,
            x FLOAT NOT NULL,
            y FLOAT NOT NULL,
            PRIMARY KEY (feature_set_id, method, album_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE map_coords")
    op.execute("DROP TABLE map_layouts")
