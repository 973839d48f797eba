"""Majority vote of the k nearest training covers, through any index kind of the index layer.

The study's first recipe: HSV histograms, 10 nearest neighbours from Annoy, majority vote.  Any
kind (exact or approximate) can serve the neighbours, which is how the benchmark shows what
approximation costs in accuracy.  Votes are counted per genre (an album with two genres is one
training row per genre); ties go to the genre of the nearest voter among the tied ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coversearch.classify.base import ClassifierBase, ProgressFn, check_param
from coversearch.errors import CoverSearchError
from coversearch.metrics import check_metric
from coversearch.index.registry import create_index, index_class

INDEX_FOLDER = "index"


class KNNVote(ClassifierBase):
    method = "knn"

    def __init__(self, k: int = 10, index_kind: str = "annoy", metric: str = "euclidean",
                 index_params: dict[str, Any] | None = None, query_params: dict[str, Any] | None = None):
        check_param(self.method, "k", k, int, 1)
        if index_class(index_kind).searches_store:  # an unknown kind fails here too, before training
            # Such a kind searches a store table; here the neighbours are training rows (use `exact`).
            raise CoverSearchError(f"knn cannot use the {index_kind} index kind (it searches the store, not training rows); use exact")
        check_metric(metric)
        for key, value in (("index_params", index_params), ("query_params", query_params)):
            if value is not None and not isinstance(value, dict):
                raise CoverSearchError(f"bad knn parameter {key}={value!r}: expected a JSON object, e.g. {{\"n_trees\": 20}}")
        self.k = k
        self.index_kind = index_kind
        self.metric = metric
        self.index_params = dict(index_params or {})  # build parameters of the index kind
        self.query_params = dict(query_params or {})  # its query parameters (e.g. annoy's search_k)

    def fit(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "KNNVote":
        self.labels_ = self._set_classes(np.asarray(y))
        X = np.asarray(X, dtype=np.float32)
        # Rows, not albums, are the index's ids: an album with two genres is two rows.
        self.index_ = create_index(self.index_kind, self.metric, X.shape[1], self.index_params, self.query_params).fit(X, np.arange(len(X)))
        if progress:
            progress(1, 1)
        return self

    def predict_proba(self, X) -> np.ndarray:
        rows, _ = self.index_.batch_search(np.asarray(X, dtype=np.float32), min(self.k, len(self.index_)))
        n_classes = len(self.classes_)
        proba = np.zeros((len(rows), n_classes), dtype=np.float64)
        for i, found in enumerate(rows):
            found = found[found >= 0]
            votes = self.labels_[found]
            counts = np.bincount(votes, minlength=n_classes).astype(np.float64)
            # Tie-break towards the nearest voter: a tiny bonus shrinking with rank.
            for rank, label in enumerate(votes):
                counts[label] += 1e-6 * (len(votes) - rank) / len(votes)
            proba[i] = counts / max(counts.sum(), 1e-12)
        return proba

    def save(self, folder: Path) -> None:
        (folder / INDEX_FOLDER).mkdir()
        self.index_.save(folder / INDEX_FOLDER)
        np.save(folder / "labels.npy", self.labels_)
        self.save_meta(folder, dim=self.index_.dim, build_params=self.index_.build_params, query_params=self.index_.query_params)

    @classmethod
    def load(cls, folder: Path) -> "KNNVote":
        self, meta = cls.load_meta(folder)
        self.labels_ = np.load(folder / "labels.npy")
        self.index_ = index_class(self.index_kind).load(
            folder / INDEX_FOLDER, metric=self.metric, dim=meta["dim"],
            build_params=meta["build_params"], query_params=meta["query_params"],
        )
        return self
