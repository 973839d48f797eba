"""Train / validation / test splits stored with the data, so every method sees the same one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE splits (
            name VARCHAR PRIMARY KEY,
            seed BIGINT NOT NULL,
            train_fraction DOUBLE NOT NULL,
            val_fraction DOUBLE NOT NULL,
            test_fraction DOUBLE NOT NULL,
            created_at TIMESTAMP NOT NULL
        )
        """
    )
    # Albums, not files, are assigned: every copy of the same bytes is one album, so copies
    # can never land on two sides.
    op.execute(
        """
        CREATE TABLE split_assignments (
            split VARCHAR NOT NULL,
            album_id BIGINT NOT NULL,
            side VARCHAR NOT NULL,
            PRIMARY KEY (split, album_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE split_assignments")
    op.execute("DROP TABLE splits")
