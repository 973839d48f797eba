"""The estimator interface every genre classifier implements (scikit-learn's contract).

``fit(X, y, X_val, y_val)`` returns self and leaves learned state in attributes ending in ``_``;
``classes_`` holds the genre names in column order of ``predict_proba``.  ``fit_final`` fits the
model that ships on train + validation rows together (see there).  ``save``/``load`` put
the learned state in a folder; provenance (features, store fingerprint) is the job of
``model.TrainedModel``, not of the estimator.
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
import json
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.stages import ProgressFn, StageClock  # ProgressFn: called after each epoch / boosting round / block: (done, total)


@runtime_checkable
class GenreClassifier(Protocol):
    method: str
    classes_: np.ndarray

    def get_params(self) -> dict[str, Any]: ...

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            progress: ProgressFn | None = None) -> "GenreClassifier": ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> "GenreClassifier": ...


class ParamError(CoverSearchError):
    """An estimator parameter of the wrong type or out of its range."""


def check_param(method: str, key: str, value: Any, kind: type, low: float | None = None, high: float | None = None,
                *, above: bool = False, below: bool = False, optional: bool = False) -> None:
    """Refuse ``value`` unless it is a ``kind`` (int, float or bool) within [low, high]
    (``above``: > low; ``below``: < high).

    An int is accepted where a float is expected; a bool is never a number.
    """
    if value is None and optional:
        return
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    expected = {bool: "true or false", int: "an integer", float: "a number"}[kind] + (" or null" if optional else "")
    if not ok:
        raise ParamError(f"bad {method} parameter {key}={value!r}: expected {expected}")
    too_low = low is not None and (value <= low if above else value < low)
    too_high = high is not None and (value >= high if below else value > high)
    if too_low or too_high:
        lower = None if low is None else (f"> {low}" if above else f">= {low}")
        upper = None if high is None else (f"< {high}" if below else f"<= {high}")
        bounds = " and ".join(b for b in (lower, upper) if b)
        raise ParamError(f"bad {method} parameter {key}={value!r}: must be {bounds}")


META_FILE = "estimator.json"


class ClassifierBase:
    """Shared plumbing: parameters, label encoding, ``predict`` from ``predict_proba``, ``fit_final``,
    and the estimator.json every estimator saves beside its learned state."""

    classes_: np.ndarray

    # Whether ``fit`` lets validation rows steer training (early stopping); see ``fit_final``.
    uses_validation: bool = False
    # What ``fit`` counts in its progress calls (a progress bar's unit).
    progress_unit: str = "step"
    # Whether two instances may fit at once in two threads (each releases the GIL while it works).
    fits_concurrently: bool = False

    @classmethod
    def param_names(cls) -> list[str]:
        """The ``__init__`` arguments, in order: each is kept in an attribute of the same name."""
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """scikit-learn's rule: the parameters are the ``__init__`` arguments, read back from attributes."""
        return {name: getattr(self, name) for name in self.param_names()}

    def save_meta(self, folder: Path, **extra: Any) -> None:
        """estimator.json: the parameters, the genres in column order, and ``extra`` learned facts."""
        (folder / META_FILE).write_text(json.dumps({"params": self.get_params(), "classes": self.classes_.tolist(), **extra}))

    @classmethod
    def load_meta(cls, folder: Path) -> tuple[Any, dict[str, Any]]:
        """An estimator made from a saved estimator.json (its learned state still to load), and the file's content."""
        meta = json.loads((folder / META_FILE).read_text())
        self = cls(**meta["params"])
        self.classes_ = np.array(meta["classes"])
        return self, meta

    def set_params(self, **params: Any) -> "ClassifierBase":
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def validation_choices(self) -> dict[str, Any]:
        """Parameters that fix what validation chose in the last ``fit`` (epochs, boosting rounds)."""
        return {}

    def fit_final(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                  stages: StageClock | None = None) -> "ClassifierBase":
        """Fit on train and validation rows together: the model that ships sees all the labelled data.

        Where validation steers training (early stopping), a first fit on the train rows alone lets
        it choose as usual; the choice becomes a fixed parameter (``validation_choices``) and the
        final fit, without validation, runs on everything.  ``get_params`` then describes the final
        fit exactly.
        """
        self.fit_in_stages(X, y, X_val, y_val, refit=True, stages=stages)
        return self

    def fit_in_stages(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                      *, refit: bool = False, held_out: np.ndarray | None = None, stages: StageClock | None = None,
                      label: str | None = None) -> np.ndarray | None:
        """Fit as a recipe asks, each fit one named, timed stage of ``stages`` (labelled ``label``).

        Without ``refit``: one fit on the train rows (validation may steer it).  With ``refit``: see
        ``fit_final``.  Returns the probabilities of the ``held_out`` rows predicted by the fit on the
        train rows alone, which never learnt from them (what calibration needs), or None without
        ``held_out``.  The train-only fit of a refit is paid once: it chooses the epochs or rounds
        and predicts ``held_out``.
        """
        stages = stages or StageClock()
        label = label or self.method
        has_val = X_val is not None and len(X_val) > 0
        if not has_val:
            X_val = y_val = None
        if not refit or not has_val:
            with stages(f"{label}: fit", self.progress_unit) as advance:
                self.fit(X, y, X_val, y_val, progress=advance)
                return None if held_out is None else self.predict_proba(held_out)
        X_all, y_all = np.vstack([X, X_val]), np.concatenate([y, y_val])
        if held_out is not None and not self.uses_validation and self.fits_concurrently:
            # The two fits are independent (validation chooses nothing): the train-only one, for
            # calibration alone, runs on a copy in a second thread beside the refit.
            probe = type(self)(**self.get_params())
            with ThreadPoolExecutor(1) as pool:
                probe_done = pool.submit(self._fit_stage, probe, stages, f"{label}: fit on train", X, y, X_val, y_val, held_out)
                self._fit_stage(self, stages, f"{label}: refit on train+val", X_all, y_all)
                return probe_done.result()
        proba = None
        if self.uses_validation or held_out is not None:
            proba = self._fit_stage(self, stages, f"{label}: fit on train", X, y, X_val, y_val, held_out)
            self.set_params(**self.validation_choices())
        self._fit_stage(self, stages, f"{label}: refit on train+val", X_all, y_all)
        return proba

    @staticmethod
    def _fit_stage(estimator, stages: StageClock, name: str, X, y, X_val=None, y_val=None, held_out=None) -> np.ndarray | None:
        with stages(name, estimator.progress_unit) as advance:
            estimator.fit(X, y, X_val, y_val, progress=advance)
            return None if held_out is None else estimator.predict_proba(held_out)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes_)}
        return np.array([index[v] for v in y], dtype=np.int64)

    def _set_classes(self, y: np.ndarray) -> np.ndarray:
        self.classes_ = np.array(sorted(set(y.tolist())))
        return self._encode(y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class Standardizer:
    """Per-column mean/std learned on training rows (the dense head trains far better on it)."""

    def fit(self, X: np.ndarray) -> "Standardizer":
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.scale_ = (X.std(axis=0) + 1e-6).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "scale": self.scale_}

    @classmethod
    def from_state(cls, state) -> "Standardizer":
        self = cls()
        self.mean_, self.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        return self
