"""``duckdb``: exact search inside the store, with DuckDB's native array functions.

No index file at all: each query is one SQL scan of the feature set's ``FLOAT[dim]`` column with
``array_cosine_distance`` (cosine) or ``array_distance`` (Euclidean), so it is always current
with the store.  The id filter is a SQL ``WHERE``; the SQL itself is ``Store.nearest``.  It must be bound to an open store
(``bind``) before it can search.
"""

from __future__ import annotations

import numpy as np

from coversearch.index.base import VectorIndex
from coversearch.store import FeatureSet, Store


class DuckDBIndex(VectorIndex):
    kind = "duckdb"
    exact = True
    native_file = None
    searches_store = True  # always current; bound to the store when opened; never over other rows

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.store: Store | None = None
        self.feature_set: FeatureSet | None = None

    def bind(self, store: Store, feature_set: FeatureSet) -> "DuckDBIndex":
        """Search ``feature_set``'s vectors in ``store`` (its current rows, whatever was built)."""
        if feature_set.dim != self.dim:
            raise ValueError(f"feature set {feature_set.label} has dimension {feature_set.dim}, not {self.dim}")
        self.store = store
        self.feature_set = feature_set
        self.ids = store.embedding_album_ids(feature_set)
        return self

    def _fit(self, x: np.ndarray) -> None:
        pass  # nothing to build: the store's table is the index

    def _add(self, x: np.ndarray) -> None:
        pass  # the vectors are already in the store

    def _search_rows(self, q, k, allowed_rows):
        raise NotImplementedError("the duckdb kind searches by album id in SQL")

    def _search_ids(self, q: np.ndarray, k: int, allowed_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.store is None or self.feature_set is None:
            raise RuntimeError("bind the duckdb index to a store before searching")
        return self.store.nearest(self.feature_set, self.metric, q, k, allowed_ids)

    def memory_bytes(self) -> int:
        return 0  # the vectors stay in the store
