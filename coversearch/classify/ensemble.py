"""Soft-voting ensemble: several estimators, each on its own columns, probabilities averaged.

Each member is ``{"method": ..., "params": {...}, "columns": [start, stop]}`` where the columns
index the model's concatenated features (e.g. vgg16 is [0, 512) and hsv [512, 1024) when the
features are vgg16,hsv).  Members make different kinds of mistakes (a dense head, boosted trees,
nearest neighbours), so their averaged probabilities are better than any one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coversearch.classify.base import ClassifierBase, ProgressFn
from coversearch.classify.registry import make_estimator, method_class
from coversearch.errors import CoverSearchError


class EnsembleGenre(ClassifierBase):
    method = "ensemble"

    def __init__(self, members: list[dict[str, Any]] | None = None):
        if not members:
            raise CoverSearchError("an ensemble needs members: [{method, params, columns: [start, stop]}, ...]")
        if not isinstance(members, list):
            raise CoverSearchError(f"bad ensemble parameter members={members!r}: expected a list of members")
        for member in members:
            columns = member.get("columns", ()) if isinstance(member, dict) else ()
            if (not isinstance(member, dict) or member.get("method") == "ensemble" or not isinstance(columns, (list, tuple))
                    or len(columns) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) for c in columns)
                    or not 0 <= columns[0] < columns[1]):
                raise CoverSearchError(
                    f"bad ensemble member {member!r}: needs a method other than ensemble and columns [start, stop], 0 <= start < stop"
                )
            make_estimator(member["method"], member.get("params", {}))  # each member's parameters checked now, not after training
        self.members = [dict(m) for m in members]

    def _columns(self, X: np.ndarray, member: dict) -> np.ndarray:
        start, stop = member["columns"]
        if stop > X.shape[1]:
            raise CoverSearchError(f"ensemble member {member['method']} wants columns up to {stop}; the features have {X.shape[1]}")
        return X[:, start:stop]

    def fit(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "EnsembleGenre":
        return self._fit_members(X, y, X_val, y_val, progress, final=False)

    def fit_final(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "EnsembleGenre":
        """Each member fits its own final model (see ``ClassifierBase.fit_final``); the members'
        parameters then record what validation chose for them, so the saved model says how it was fitted."""
        return self._fit_members(X, y, X_val, y_val, progress, final=True)

    def _fit_members(self, X, y, X_val, y_val, progress: ProgressFn | None, final: bool) -> "EnsembleGenre":
        # A final fit also learns from the validation rows, so their genres count too.
        self._set_classes(np.concatenate([y, y_val]) if final and X_val is not None else np.asarray(y))
        self.estimators_ = []
        for i, member in enumerate(self.members):
            estimator = make_estimator(member["method"], member.get("params", {}))
            val = self._columns(X_val, member) if X_val is not None else None
            (estimator.fit_final if final else estimator.fit)(self._columns(X, member), y, val, y_val)
            if final:
                self.members[i] = {**member, "params": estimator.get_params()}
            if list(estimator.classes_) != list(self.classes_):
                raise CoverSearchError("ensemble members disagree on the genres")
            self.estimators_.append(estimator)
            if progress:
                progress(i + 1, len(self.members))
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return np.mean([est.predict_proba(self._columns(X, m)) for est, m in zip(self.estimators_, self.members)], axis=0)

    def save(self, folder: Path) -> None:
        for i, estimator in enumerate(self.estimators_):
            (folder / f"member-{i}").mkdir()
            estimator.save(folder / f"member-{i}")
        self.save_meta(folder)

    @classmethod
    def load(cls, folder: Path) -> "EnsembleGenre":
        self, _ = cls.load_meta(folder)
        self.estimators_ = [method_class(m["method"]).load(folder / f"member-{i}") for i, m in enumerate(self.members)]
        return self
