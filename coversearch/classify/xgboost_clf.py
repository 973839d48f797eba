"""XGBoost on any feature set (hist tree method), through XGBoost's native API.

The native ``xgb.train`` API is used rather than ``XGBClassifier`` because the latter requires
scikit-learn, which this project does not otherwise need.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from coversearch.classify.base import ClassifierBase, ProgressFn, check_param


class _Progress(xgb.callback.TrainingCallback):
    def __init__(self, fn: ProgressFn, total: int):
        self.fn, self.total = fn, total

    def after_iteration(self, model, epoch, evals_log) -> bool:
        self.fn(epoch + 1, self.total)
        return False


# Below this many rows a tree level is too little work to share: OpenMP's synchronisation costs more
# than a second thread gains (covers5's 3,519 x 2,560 training rows: 9 CPU s per 40 rounds on one
# thread, 36 on two, the same trees).
PARALLEL_ROWS = 100_000


def threads_for(rows: int) -> int:
    return (os.cpu_count() or 1) if rows >= PARALLEL_ROWS else 1


class XGBoostGenre(ClassifierBase):
    method = "xgboost"
    progress_unit = "round"
    fits_concurrently = True  # one OpenMP thread each below PARALLEL_ROWS: two fits use two cores

    def __init__(self, n_estimators: int = 100, max_depth: int = 6, learning_rate: float = 0.3,
                 subsample: float = 1.0, colsample_bytree: float = 1.0, early_stopping_rounds: int | None = None,
                 seed: int = 0, max_bin: int = 256):
        # Defaults are XGBoost's own, as the study used it; early stopping is off unless asked.
        # ``max_bin``: the histogram bins per column of the hist method (fewer: each tree builds faster).
        for key, value, kind, low, high, above in (
            ("n_estimators", n_estimators, int, 1, None, False), ("max_depth", max_depth, int, 1, None, False),
            ("learning_rate", learning_rate, float, 0, None, True), ("subsample", subsample, float, 0, 1, True),
            ("colsample_bytree", colsample_bytree, float, 0, 1, True), ("seed", seed, int, 0, None, False),
            ("max_bin", max_bin, int, 2, None, False),
        ):
            check_param(self.method, key, value, kind, low, high, above=above)
        check_param(self.method, "early_stopping_rounds", early_stopping_rounds, int, 1, optional=True)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.max_bin = max_bin

    def _booster_params(self, rows: int) -> dict[str, Any]:
        return {
            "objective": "multi:softprob",
            "num_class": len(self.classes_),
            "tree_method": "hist",
            "max_bin": self.max_bin,
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "seed": self.seed,
            "nthread": threads_for(rows),
            "eval_metric": "mlogloss",
        }

    def fit(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "XGBoostGenre":
        labels = self._set_classes(np.asarray(y))
        # The quantised matrix the hist method trains on, built once (no float copy kept beside it).
        train = xgb.QuantileDMatrix(np.asarray(X, dtype=np.float32), label=labels, max_bin=self.max_bin)
        evals = []
        if X_val is not None and self.early_stopping_rounds:
            evals = [(xgb.QuantileDMatrix(np.asarray(X_val, dtype=np.float32), label=self._encode(np.asarray(y_val)),
                                          ref=train), "val")]
        callbacks = [_Progress(progress, self.n_estimators)] if progress else []
        self.booster_ = xgb.train(
            self._booster_params(len(X)), train, num_boost_round=self.n_estimators, evals=evals,
            early_stopping_rounds=self.early_stopping_rounds if evals else None, callbacks=callbacks, verbose_eval=False,
        )
        return self

    @property
    def uses_validation(self) -> bool:
        return bool(self.early_stopping_rounds)  # the same test as fit's

    def _chosen_rounds(self) -> int | None:
        """The rounds early stopping kept in the last fit, or None when it did not run."""
        best = getattr(self.booster_, "best_iteration", None) if self.early_stopping_rounds else None
        return None if best is None else best + 1

    def validation_choices(self) -> dict[str, Any]:
        rounds = self._chosen_rounds()
        return {} if rounds is None else {"n_estimators": rounds, "early_stopping_rounds": None}

    def predict_proba(self, X) -> np.ndarray:
        matrix = xgb.DMatrix(np.asarray(X, dtype=np.float32))
        rounds = self._chosen_rounds()
        return self.booster_.predict(matrix) if rounds is None else self.booster_.predict(matrix, iteration_range=(0, rounds))

    def save(self, folder: Path) -> None:
        self.booster_.save_model(folder / "booster.ubj")
        self.save_meta(folder)

    @classmethod
    def load(cls, folder: Path) -> "XGBoostGenre":
        self, _ = cls.load_meta(folder)
        self.booster_ = xgb.Booster()
        self.booster_.load_model(folder / "booster.ubj")
        return self
