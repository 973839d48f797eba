"""``duckdb``: exact search inside the store, with DuckDB's native array functions.

No index file at all: each query is one SQL scan of the feature set's ``FLOAT[dim]`` column with
``array_cosine_distance`` (cosine) or ``array_distance`` (Euclidean), so it is always current
with the store.  The id filter is a SQL ``WHERE``.  It must be bound to an open store
(``bind``) before it can search.
"""

from __future__ import annotations

import numpy as np

from coversearch.index import metrics
from coversearch.index.base import VectorIndex
from coversearch.store import FeatureSet, Store

# SQL for each metric's distance between the column ``vector`` and the query ``q``.
SQL_DISTANCE = {
    metrics.COSINE: "array_cosine_distance(vector, {q})",
    metrics.EUCLIDEAN: "array_distance(vector, {q})",
    metrics.HAMMING: "round(pow(array_distance(vector, {q}), 2))",  # L2^2 of 0/1 vectors counts differing bits
}


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
        rows = store.con.execute(f"SELECT album_id FROM {feature_set.table} ORDER BY album_id").fetchnumpy()
        self.ids = np.asarray(rows["album_id"], dtype=np.int64)
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
        sql = (
            f"SELECT album_id, {SQL_DISTANCE[self.metric].format(q=f'$query::FLOAT[{self.dim}]')} AS distance "
            f"FROM {self.feature_set.table}"
        )
        params: dict = {}
        if allowed_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($allowed))"
            params["allowed"] = np.asarray(allowed_ids, dtype=np.int64)
        sql += f" ORDER BY distance, album_id LIMIT {int(k)}"
        ids = np.full((len(q), k), -1, dtype=np.int64)
        distances = np.full((len(q), k), np.inf, dtype=np.float32)
        for i, vector in enumerate(q):
            params["query"] = vector.tolist()
            found = self.store.con.execute(sql, params).fetchnumpy()
            n = len(found["album_id"])
            ids[i, :n] = found["album_id"]
            distances[i, :n] = found["distance"]
        return ids, distances

    def memory_bytes(self) -> int:
        return 0  # the vectors stay in the store
