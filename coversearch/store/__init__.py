"""The embedded DuckDB feature store: schema (Alembic migrations), connection and reads."""

from coversearch.store.db import FeatureSet, Store, StoreBusyError

__all__ = ["FeatureSet", "Store", "StoreBusyError"]
