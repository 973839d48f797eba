"""Alembic, driven from code: the store's schema lives in the top-level ``migrations/`` folder.

Alembic ships no DuckDB dialect implementation, so one is registered here; DuckDB runs DDL inside
transactions, which lets a failed migration roll back whole.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.ddl.impl import DefaultImpl
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class DuckDBImpl(DefaultImpl):
    __dialect__ = "duckdb"
    transactional_ddl = True


def alembic_config(url: str | None = None) -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(f"migrations folder not found at {MIGRATIONS_DIR}; install the project with `pip install -e .`")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def engine_for(path: Path) -> sa.Engine:
    return sa.create_engine(f"duckdb:///{path}", poolclass=sa.pool.NullPool)


def upgrade(path: Path, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` through SQLAlchemy + duckdb-engine."""
    engine = engine_for(path)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()
