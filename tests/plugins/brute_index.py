"""An index kind in numpy alone: exact search by computing every distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coversearch import metrics
from coversearch.index.base import VectorIndex


class NumpyBruteIndex(VectorIndex):
    kind = "numpy-brute"
    exact = True
    native_file = "vectors.npy"
    supported_metrics = (metrics.COSINE, metrics.EUCLIDEAN)
    build_defaults = {}
    query_defaults = {"chunk": 1024}  # queries scored at once

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)

    def _fit(self, x: np.ndarray) -> None:
        self.vectors = x

    def _add(self, x: np.ndarray) -> None:
        self.vectors = np.vstack([self.vectors, x])

    def _search_rows(self, q, k, allowed_rows):
        rows = np.arange(len(self.vectors)) if allowed_rows is None else np.asarray(allowed_rows)
        found = np.full((len(q), k), -1, dtype=np.int64)
        distances = np.full((len(q), k), np.inf, dtype=np.float32)
        squared = ((q[:, None, :] - self.vectors[rows][None, :, :]) ** 2).sum(axis=2)  # prepared vectors: squared L2
        for i, row_distances in enumerate(squared):
            order = np.argsort(row_distances, kind="stable")[:k]
            found[i, : len(order)] = rows[order]
            distances[i, : len(order)] = metrics.from_squared_l2(row_distances[order], self.metric)
        return found, distances

    def _save_native(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, self.vectors, allow_pickle=False)

    def _load_native(self, path: Path) -> None:
        self.vectors = np.load(path, allow_pickle=False)

    def _native_count(self) -> int:
        return len(self.vectors)

    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes)
