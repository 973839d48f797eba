"""Feature sets of another kind than vectors: the words read on each cover (the ``text`` feature).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 'vector': the set's rows live in embeddings_<id> (album_id, vector FLOAT[dim]);
    # 'text': in text_<id> (album_id, the recognised lines as JSON, and their searchable forms),
    # created, like embeddings_<id>, when the set is first registered.
    op.execute("ALTER TABLE feature_sets ADD COLUMN kind VARCHAR DEFAULT 'vector'")
    op.execute("UPDATE feature_sets SET kind = 'vector'")


def downgrade() -> None:
    op.execute("ALTER TABLE feature_sets DROP COLUMN kind")
