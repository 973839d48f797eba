"""Genres from the words printed on the cover: TF-IDF over character n-grams, then a linear model.

The input columns are the ``text`` feature's hashed character 2-4-gram counts (classify/data.py
turns the stored ``plain`` text into them).  ``fit`` learns the inverse document frequencies on the
training rows, weighs each row's counts by them (with sublinear term frequency, 1 + log count) and
normalises the row to unit length, then fits a multinomial logistic regression on it.

A cover with no legible text (an all-zero row) says nothing about its genre: it is left out of
the fit, and ``predict_proba`` gives it the uniform distribution, so in a soft vote it leaves the
other members' ranking exactly as it was.  With legible text on covers of fewer than two genres,
every cover gets the uniform distribution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coversearch.classify.base import ClassifierBase, ProgressFn, check_param
from coversearch.errors import CoverSearchError


class TextLinearGenre(ClassifierBase):
    method = "text-linear"
    progress_unit = "fit"

    def __init__(self, C: float = 4.0, max_iter: int = 500, min_df: int = 2):
        # ``C``: inverse regularisation strength of the logistic regression; ``min_df``: n-gram columns
        # seen on fewer training covers than this get no weight (mostly OCR noise and hash collisions
        # of one-off grams).
        check_param(self.method, "C", C, float, 0, None, above=True)
        check_param(self.method, "max_iter", max_iter, int, 1)
        check_param(self.method, "min_df", min_df, int, 1)
        self.C = C
        self.max_iter = max_iter
        self.min_df = min_df

    def _tfidf(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        weighted = np.where(X > 0, 1.0 + np.log(np.maximum(X, 1.0)), 0.0).astype(np.float32) * self.idf_
        norms = np.linalg.norm(weighted, axis=1, keepdims=True)
        return weighted / np.maximum(norms, 1e-12)

    def fit(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "TextLinearGenre":
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float32)
        labels = self._set_classes(np.asarray(y))
        if len(self.classes_) < 2:
            raise CoverSearchError("text-linear needs at least 2 genres among the training covers")
        has_text = (X > 0).any(axis=1)
        X, labels = X[has_text], labels[has_text]
        if len(np.unique(labels)) < 2:
            # Too little legible text to learn from (a small store, covers without words): no opinion on
            # any cover, so an ensemble answers as its other members do instead of failing to train.
            self.idf_ = np.zeros(X.shape[1], np.float32)
            self.coef_ = np.zeros((len(self.classes_), X.shape[1]), np.float32)
            self.intercept_ = np.zeros(len(self.classes_), np.float32)
            return self
        df = (X > 0).sum(axis=0)
        # Smoothed inverse document frequency (scikit-learn's); columns under min_df weigh nothing.
        self.idf_ = np.where(df >= self.min_df, np.log((1 + len(X)) / (1 + df)) + 1.0, 0.0).astype(np.float32)
        from scipy.sparse import csr_matrix

        # A cover's text fills a few dozen of the 4,096 columns: the solver's passes cost that, not the width.
        Z = csr_matrix(self._tfidf(X))
        self.coef_, self.intercept_ = self._fit_linear(LogisticRegression, Z, labels, len(self.classes_))
        if progress:
            progress(1, 1)
        return self

    def _fit_linear(self, LogisticRegression, Z, labels: np.ndarray, n_classes: int):
        present = np.unique(labels)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(Z, labels)
        # A genre with no covers that carry text gets no column from scikit-learn: it keeps the
        # weights of a genre never predicted.
        coef = np.zeros((n_classes, Z.shape[1]), np.float32)
        intercept = np.full(n_classes, -30.0, np.float32)
        if len(present) == 2:  # scikit-learn's binary model: one column for the second class
            coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
            coef[present[0]], intercept[present[0]] = 0.0, 0.0
        else:
            coef[present], intercept[present] = model.coef_, model.intercept_
        return coef, intercept

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        logits = self._tfidf(X) @ self.coef_.T + self.intercept_
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        proba[~(X > 0).any(axis=1)] = 1.0 / len(self.classes_)  # no text: no opinion
        return proba

    def save(self, folder: Path) -> None:
        np.savez(folder / "linear.npz", idf=self.idf_, coef=self.coef_, intercept=self.intercept_)
        self.save_meta(folder)

    @classmethod
    def load(cls, folder: Path) -> "TextLinearGenre":
        self, _ = cls.load_meta(folder)
        with np.load(folder / "linear.npz") as state:
            self.idf_, self.coef_, self.intercept_ = state["idf"], state["coef"], state["intercept"]
        if self.coef_.shape != (len(self.classes_), len(self.idf_)):
            raise CoverSearchError(f"text-linear model in {folder} is damaged: its weights do not fit its genres")
        return self
