"""``annoy``: Spotify's forest of random-projection trees.

Build: n_trees, seed (the metric maps to annoy's ``angular`` for cosine, ``euclidean`` otherwise).
Query: search_k (candidate items inspected; -1 = annoy's default n_trees * k).  An annoy index
cannot take new items after ``build``, so refreshing one means building it again.

Annoy has no id filter: a filtered search asks for more neighbours (and inspects more candidates)
until k of them pass the filter or every item has been returned.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import annoy
import numpy as np

from coversearch import metrics
from coversearch.index.base import IndexFileError, VectorIndex
from coversearch.index.params import check_range
from coversearch.index.threads import available_cores


class AnnoyIndex(VectorIndex):
    kind = "annoy"
    supports_add = False
    native_file = "index.ann"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.forest: annoy.AnnoyIndex | None = None
        self._file_bytes: int | None = None

    @property
    def annoy_metric(self) -> str:
        return "angular" if self.metric == metrics.COSINE else "euclidean"

    def _check_params(self) -> None:
        check_range(self.kind, "n_trees", self.build_params["n_trees"], 1)
        check_range(self.kind, "seed", self.build_params["seed"], 0)
        if self.query_params["search_k"] != -1:
            check_range(self.kind, "search_k", self.query_params["search_k"], 1)

    def _fit(self, x: np.ndarray) -> None:
        forest = annoy.AnnoyIndex(self.dim, self.annoy_metric)
        forest.set_seed(int(self.build_params["seed"]))
        for row, vector in enumerate(x):
            forest.add_item(row, vector)
        forest.build(int(self.build_params["n_trees"]), n_jobs=available_cores())
        self.forest = forest
        self._file_bytes = None

    def _search_rows(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        forest = self._built()
        n_items = forest.get_n_items()
        n_trees = forest.get_n_trees()
        allowed = None
        if allowed_rows is not None:
            allowed = np.zeros(n_items, dtype=bool)
            allowed[allowed_rows] = True
        want = min(k, n_items if allowed_rows is None else len(allowed_rows))
        rows_out = np.full((len(q), k), -1, dtype=np.int64)
        dist_out = np.full((len(q), k), np.inf, dtype=np.float32)
        for i, vector in enumerate(q):
            # First guess: enough neighbours that about k pass the filter, given its selectivity.
            ask = k if allowed_rows is None else min(n_items, math.ceil(2 * k * n_items / len(allowed_rows)))
            search_k = self._search_k(ask, n_trees)
            while True:
                rows, dists = forest.get_nns_by_vector(vector, ask, search_k=search_k, include_distances=True)
                rows = np.asarray(rows, dtype=np.int64)
                dists = np.asarray(dists, dtype=np.float32)
                if allowed is not None:
                    keep = allowed[rows]
                    rows, dists = rows[keep], dists[keep]
                exhausted = ask >= n_items and search_k >= n_items * n_trees
                if len(rows) >= want or exhausted:
                    break
                ask = min(n_items, ask * 4)
                # Inspecting every leaf of every tree returns every item: the loop ends there.
                search_k = min(max(search_k * 4, self._search_k(ask, n_trees)), n_items * n_trees)
                if ask >= n_items:
                    search_k = n_items * n_trees
            rows_out[i, : min(k, len(rows))] = rows[:k]
            dist_out[i, : min(k, len(rows))] = self._distance(dists[:k])
        return rows_out, dist_out

    def _search_k(self, ask: int, n_trees: int) -> int:
        search_k = int(self.query_params["search_k"])
        return n_trees * ask if search_k == -1 else max(search_k, ask)

    def _distance(self, annoy_distances: np.ndarray) -> np.ndarray:
        if self.metric == metrics.COSINE:
            return annoy_distances**2 / 2.0  # annoy's angular distance is sqrt(2 - 2 cos)
        if self.metric == metrics.HAMMING:
            return np.rint(annoy_distances**2)  # Euclidean between 0/1 vectors is sqrt(Hamming)
        return annoy_distances

    def _save_native(self, path: Path) -> None:
        forest = self._built()
        if not forest.save(str(path)):
            raise IndexFileError(f"annoy could not write {path}")
        self._file_bytes = path.stat().st_size

    def _load_native(self, path: Path) -> None:
        forest = annoy.AnnoyIndex(self.dim, self.annoy_metric)
        try:
            forest.load(str(path), prefault=False)
        except (OSError, IOError) as exc:
            raise IndexFileError(f"index file {path} is unreadable: {exc}") from None
        self.forest = forest
        self._file_bytes = path.stat().st_size

    def _native_count(self) -> int:
        return int(self._built().get_n_items())

    def memory_bytes(self) -> int:
        """Annoy memory-maps its file; an index not yet saved is measured by saving a copy."""
        if self.forest is None:
            return 0
        if self._file_bytes is None:
            fd, name = tempfile.mkstemp(suffix=".ann")
            os.close(fd)
            try:
                self._save_native(Path(name))  # annoy now maps this file; unlinking it is safe on POSIX
            finally:
                os.unlink(name)
        return int(self._file_bytes or 0)

    def _built(self) -> annoy.AnnoyIndex:
        if self.forest is None:
            raise RuntimeError("the annoy index is not built yet; call fit() first")
        return self.forest
