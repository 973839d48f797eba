"""The embedded DuckDB feature store: schema (Alembic migrations), connection and reads."""

from coversearch.store.db import Store, StoreBusyError
from coversearch.store.rows import FeatureSet

__all__ = ["FeatureSet", "Store", "StoreBusyError"]
