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
from coversearch.stages import StageClock


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
        self._fit_members(X, y, X_val, y_val, refit=False, held_out=None, stages=StageClock(), progress=progress)
        return self

    def fit_in_stages(self, X, y, X_val=None, y_val=None, *, refit=False, held_out=None, stages: StageClock | None = None,
                      label: str | None = None) -> np.ndarray | None:
        """Each member fits as ``ClassifierBase.fit_in_stages`` says, its fits stages of their own; with
        ``refit`` the members' parameters then record what validation chose for them, so the saved model
        says how it was fitted.  The held-out probabilities are the members' averaged."""
        return self._fit_members(X, y, X_val, y_val, refit=refit, held_out=held_out, stages=stages or StageClock(),
                                 prefix=f"{label}: " if label else "")

    def _fit_members(self, X, y, X_val, y_val, *, refit: bool, held_out, stages: StageClock, progress: ProgressFn | None = None,
                     prefix: str = "") -> np.ndarray | None:
        X = np.asarray(X, dtype=np.float32)
        has_val = X_val is not None and len(X_val) > 0
        # A refit also learns from the validation rows, so their genres count too.
        self._set_classes(np.concatenate([y, y_val]) if refit and has_val else np.asarray(y))
        self.estimators_ = []
        held_out_proba = []
        for i, member in enumerate(self.members):
            estimator = make_estimator(member["method"], member.get("params", {}))
            val = self._columns(np.asarray(X_val, dtype=np.float32), member) if has_val else None
            proba = estimator.fit_in_stages(
                self._columns(X, member), y, val, y_val if has_val else None, refit=refit,
                held_out=None if held_out is None else self._columns(np.asarray(held_out, dtype=np.float32), member),
                stages=stages, label=f"{prefix}member {i + 1} {member['method']}",
            )
            held_out_proba.append(proba)
            if refit:
                self.members[i] = {**member, "params": estimator.get_params()}
            if list(estimator.classes_) != list(self.classes_):
                raise CoverSearchError("ensemble members disagree on the genres")
            self.estimators_.append(estimator)
            if progress:
                progress(i + 1, len(self.members))
        return None if held_out is None else np.mean(held_out_proba, axis=0)

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
