"""One mark of what a feature set holds: ``feature_sets.kind`` is 'vector', 'record' or 'text'.
Record sets (keypoints) were marked by ``"storage": "record"`` in their params instead; they get
kind 'record' and lose that key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _rewrite(select_where: str, change) -> None:
    con = op.get_bind()
    rows = con.execute(sa.text(f"SELECT id, params FROM feature_sets WHERE {select_where}")).fetchall()
    for set_id, params in rows:
        params = json.loads(params)
        kind = change(params)
        if kind is not None:
            con.execute(sa.text("UPDATE feature_sets SET kind = :kind, params = :params WHERE id = :id"),
                        {"kind": kind, "params": json.dumps(params), "id": set_id})


def _to_record(params: dict) -> str | None:
    if params.get("storage") != "record":
        return None
    del params["storage"]
    return "record"


def _to_marker(params: dict) -> str:
    params["storage"] = "record"
    return "vector"


def upgrade() -> None:
    op.execute("UPDATE feature_sets SET kind = 'vector' WHERE kind IS NULL")
    _rewrite("kind = 'vector'", _to_record)


def downgrade() -> None:
    _rewrite("kind = 'record'", _to_marker)
