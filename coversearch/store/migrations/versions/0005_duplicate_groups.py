"""Near-duplicate groups kept in the store: each placed album's own candidates and every verdict.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The rule each feature's rows were computed under (JSON); rows under another rule are stale.
    op.execute("CREATE TABLE dedupe_rules (feature VARCHAR PRIMARY KEY, rule VARCHAR NOT NULL)")
    # An album placed under a feature: its candidates are in dedupe_sides.  kth is the distance of
    # its last neighbour that can still be a verified candidate: a newcomer closer than that changes
    # its candidates.  No primary keys on rows that are deleted and rewritten in one transaction
    # (DuckDB checks a key against rows deleted earlier in the same transaction).
    op.execute("CREATE TABLE dedupe_placed (album_id BIGINT NOT NULL, feature VARCHAR NOT NULL, kth DOUBLE)")
    # What the album's own neighbour search found under the feature's rule (exact distances).
    op.execute(
        "CREATE TABLE dedupe_sides (album_id BIGINT NOT NULL, feature VARCHAR NOT NULL, other BIGINT NOT NULL, distance DOUBLE NOT NULL)"
    )
    # Keypoint verification of a pair (a < b): inliers, share of differing cells, and the verdict.
    op.execute(
        "CREATE TABLE dedupe_verdicts (a BIGINT NOT NULL, b BIGINT NOT NULL, inliers INTEGER NOT NULL, "
        "differing DOUBLE NOT NULL, confirmed BOOLEAN NOT NULL)"
    )


def downgrade() -> None:
    for table in ("dedupe_verdicts", "dedupe_sides", "dedupe_placed", "dedupe_rules"):
        op.execute(f"DROP TABLE {table}")
