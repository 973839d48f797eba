"""Every file seen (several files can hold the same album) and the ingest errors table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE album_files (
            path VARCHAR PRIMARY KEY,
            album_id BIGINT NOT NULL,
            size_bytes BIGINT,
            seen_at TIMESTAMP NOT NULL
        )
        """
    )
    # Stores made at 0001 knew one file per album: its source path.
    op.execute(
        "INSERT INTO album_files (path, album_id, size_bytes, seen_at) "
        "SELECT source_path, id, NULL, ingested_at FROM albums"
    )
    op.execute(
        """
        CREATE TABLE ingest_errors (
            path VARCHAR PRIMARY KEY,
            reason VARCHAR NOT NULL,
            detail VARCHAR,
            occurred_at TIMESTAMP NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ingest_errors")
    op.execute("DROP TABLE album_files")
