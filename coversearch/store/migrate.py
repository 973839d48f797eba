"""Alembic, driven from code: the store's schema lives in ``coversearch/store/migrations/`` (package data,
so an installed wheel carries it).

Alembic ships no DuckDB dialect implementation, so one is registered here; DuckDB runs DDL inside
transactions, which lets a failed migration roll back whole.  SQLAlchemy and Alembic are imported
by the functions that use them: commands that never open a store (``--help``) do not load them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@lru_cache(maxsize=1)
def register_duckdb_impl() -> None:
    from alembic.ddl.impl import DefaultImpl

    class DuckDBImpl(DefaultImpl):  # defining the class registers it for the dialect
        __dialect__ = "duckdb"
        transactional_ddl = True


def alembic_config(url: str | None = None):
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(f"migrations folder not found at {MIGRATIONS_DIR}: this coversearch was installed without its package data")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def engine_for(path: Path):
    import sqlalchemy as sa

    return sa.create_engine(f"duckdb:///{path}", poolclass=sa.pool.NullPool)


def upgrade(path: Path, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` through SQLAlchemy + duckdb-engine."""
    _migrate(path, "upgrade", revision)


def downgrade(path: Path, revision: str) -> None:
    """Undo migrations down to ``revision`` (for an older coversearch to open the store)."""
    _migrate(path, "downgrade", revision)


def _migrate(path: Path, direction: str, revision: str) -> None:
    from alembic import command

    register_duckdb_impl()
    engine = engine_for(path)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            getattr(command, direction)(cfg, revision)
    finally:
        engine.dispose()
