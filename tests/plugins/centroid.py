"""A genre classifier in a few lines: the nearest genre centroid, softmax over negative distances."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coversearch.classify.base import ClassifierBase, ProgressFn, check_param


class NearestCentroid(ClassifierBase):
    method = "centroid"

    def __init__(self, temperature: float = 0.1):
        check_param(self.method, "temperature", temperature, float, 0, above=True)
        self.temperature = temperature

    def fit(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "NearestCentroid":
        labels = self._set_classes(np.asarray(y))
        X = np.asarray(X, dtype=np.float32)
        self.centroids_ = np.stack([X[labels == i].mean(axis=0) for i in range(len(self.classes_))])
        if progress:
            progress(1, 1)
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        distances = np.linalg.norm(X[:, None, :] - self.centroids_[None, :, :], axis=2)
        logits = -distances / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def save(self, folder: Path) -> None:
        np.save(folder / "centroids.npy", self.centroids_)
        self.save_meta(folder)

    @classmethod
    def load(cls, folder: Path) -> "NearestCentroid":
        self, _ = cls.load_meta(folder)
        self.centroids_ = np.load(folder / "centroids.npy")
        return self
