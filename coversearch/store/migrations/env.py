"""Alembic environment for the coversearch store (DuckDB through duckdb-engine)."""

from alembic import context

from coversearch.store.migrate import engine_for, register_duckdb_impl

register_duckdb_impl()  # Alembic's implementation for the duckdb dialect

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
else:  # `alembic` run by hand with sqlalchemy.url = duckdb:///path
    url = config.get_main_option("sqlalchemy.url")
    engine = engine_for(url.removeprefix("duckdb:///"))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
