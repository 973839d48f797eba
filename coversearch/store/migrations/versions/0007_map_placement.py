"""The catalogue map keeps what an incremental update and a readable map need: which albums the
last full layout fitted and which were placed into it since, each album's cluster, how typical it
is of that cluster, and its nearest-neighbour density.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Cached layouts carry none of this and are only a cache: they are dropped and laid out again.
    op.execute("DELETE FROM map_coords")
    op.execute("DELETE FROM map_layouts")
    # fitted: albums the last full layout laid out; placed: albums placed into it since (a full
    # layout runs again once placed / all passes the limit); params: seed, scale and settings (JSON).
    op.execute("ALTER TABLE map_layouts ADD COLUMN fitted BIGINT DEFAULT 0")
    op.execute("ALTER TABLE map_layouts ADD COLUMN placed BIGINT DEFAULT 0")
    op.execute("ALTER TABLE map_layouts ADD COLUMN params VARCHAR DEFAULT '{}'")
    op.execute("ALTER TABLE map_coords ADD COLUMN placed BOOLEAN DEFAULT false")
    op.execute("ALTER TABLE map_coords ADD COLUMN cluster INTEGER DEFAULT 0")
    op.execute("ALTER TABLE map_coords ADD COLUMN typicality FLOAT DEFAULT 0")
    op.execute("ALTER TABLE map_coords ADD COLUMN density FLOAT DEFAULT 0")


def downgrade() -> None:
    op.execute("DELETE FROM map_coords")
    op.execute("DELETE FROM map_layouts")
    for column in ("placed", "cluster", "typicality", "density"):
        op.execute(f"ALTER TABLE map_coords DROP COLUMN {column}")
    for column in ("fitted", "placed", "params"):
        op.execute(f"ALTER TABLE map_layouts DROP COLUMN {column}")
