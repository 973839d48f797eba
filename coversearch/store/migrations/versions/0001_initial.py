"""Initial schema: albums, their genres, and feature sets.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Ids are assigned explicitly by the single writer (DuckDB has no SERIAL).
    op.execute(
        """
        CREATE TABLE albums (
            id BIGINT PRIMARY KEY,
            sha256 VARCHAR NOT NULL UNIQUE,
            source_path VARCHAR NOT NULL,
            source_url VARCHAR,
            artist VARCHAR,
            title VARCHAR,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            format VARCHAR NOT NULL,
            ingested_at TIMESTAMP NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE album_genres (
            album_id BIGINT NOT NULL,
            genre VARCHAR NOT NULL,
            PRIMARY KEY (album_id, genre)
        )
        """
    )
    # One row per (name, version); vectors live in a table per feature set, embeddings_<id>,
    # created when the set is registered, because each has its own fixed FLOAT[dim] type.
    op.execute(
        """
        CREATE TABLE feature_sets (
            id INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            dim INTEGER NOT NULL,
            params VARCHAR NOT NULL,
            model_fingerprint VARCHAR,
            created_at TIMESTAMP NOT NULL,
            UNIQUE (name, version)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE feature_sets")
    op.execute("DROP TABLE album_genres")
    op.execute("DROP TABLE albums")
