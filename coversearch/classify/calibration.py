"""Calibrated genre probabilities, how to measure them, and the "none of these" answer.

A calibrator maps a model's raw probabilities to ones that mean what they say: of the covers
given 0.6, about 60% are right.  It is fitted on validation albums the model did not learn from
and stored with the model; ``TrainedModel.answer`` applies it, so ``classify``, ``evaluate``, the
page and the API give identical probabilities.

- ``temperature`` (Guo et al., 2017): p_i proportional to exp(log(p_i) / T), one number T for every
  genre, fitted by minimising the validation log-loss.  It never changes which genre ranks first,
  so accuracy is untouched, and it works on any model's probabilities (a soft vote included).
- ``isotonic``: for each genre, a monotone map from its raw probability to the share of albums
  having that genre (pool-adjacent-violators), then rows renormalised.  More flexible, so it
  needs more validation albums and can reorder genres.

An album filed under several genres counts as right when the top genre is any of them (as in
evaluation), so its likelihood is the summed probability of its genres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from coversearch.errors import CoverSearchError

ECE_BINS = 15
UNKNOWN = "unknown"
# No calibrated probability is exactly 0 or 1: a model is never certain, so --min-confidence 1
# abstains on everything.
PROBABILITY_FLOOR = 1e-9
# The default threshold abstains on at most this share of validation albums; below the issue's
# 10% so that the sampling noise of ~470 validation albums (about 1.4 points) leaves room on test.
DEFAULT_MAX_ABSTAIN = 0.08
CALIBRATION_METHODS = ("temperature", "isotonic", "none")


# -- targets and measures ----------------------------------------------------------------------------
def genre_matrix(classes: Sequence[str], genres: Sequence[tuple[str, ...]]) -> np.ndarray:
    """(albums, classes) booleans: which of the model's genres each album has."""
    index = {c: i for i, c in enumerate(classes)}
    Y = np.zeros((len(genres), len(classes)), dtype=bool)
    for row, gs in enumerate(genres):
        for g in gs:
            if g in index:
                Y[row, index[g]] = True
    return Y


def _top(proba: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the top genre, whether it is one of the album's genres) per album."""
    top = np.argmax(proba, axis=1)
    return proba[np.arange(len(proba)), top], Y[np.arange(len(proba)), top]


def reliability_bins(proba: np.ndarray, Y: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Top-genre confidence in ``bins`` equal-width bins: albums, mean confidence, accuracy per bin."""
    confidence, correct = _top(proba, Y)
    # Bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to the first.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append({"low": b / bins, "high": (b + 1) / bins, "albums": n,
                    "confidence": float(confidence[inside].mean()) if n else None,
                    "accuracy": float(correct[inside].mean()) if n else None})
    return out


def expected_calibration_error(proba: np.ndarray, Y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the album-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    n = len(proba)
    if n == 0:
        return 0.0
    return float(sum(b["albums"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(proba, Y, bins) if b["albums"]))


def brier_score(proba: np.ndarray, Y: np.ndarray) -> float:
    """Mean over albums of sum_k (p_k - t_k)^2, t one-hot on the album's genre the model ranks
    highest (an album of two genres is right with either, as in evaluation)."""
    if len(proba) == 0:
        return 0.0
    target = np.zeros_like(proba)
    ranked = np.where(Y, proba, -np.inf)
    target[np.arange(len(proba)), np.argmax(ranked, axis=1)] = 1.0
    return float(np.mean(np.sum((proba - target) ** 2, axis=1)))


def log_loss(proba: np.ndarray, Y: np.ndarray) -> float:
    """Mean -log of the probability given to the album's genres together."""
    return float(np.mean(-np.log(np.maximum(np.sum(np.where(Y, proba, 0.0), axis=1), 1e-12))))


def calibration_measures(proba: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    confidence, correct = _top(proba, Y)
    return {"ece": expected_calibration_error(proba, Y), "brier": brier_score(proba, Y), "log_loss": log_loss(proba, Y),
            "mean_confidence": float(confidence.mean()) if len(proba) else 0.0,
            "accuracy": float(correct.mean()) if len(proba) else 0.0}


# -- calibrators ---------------------------------------------------------------------------------------
def _usable(proba: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with at least one of the model's genres (others carry no signal for these genres)."""
    proba, Y = np.asarray(proba, dtype=np.float64), np.asarray(Y, dtype=bool)
    keep = Y.any(axis=1)
    if keep.sum() < 2:
        raise CoverSearchError("calibration needs validation albums of the model's genres; the validation split has fewer than 2")
    return proba[keep], Y[keep]


def _floored(proba: np.ndarray) -> np.ndarray:
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, None)
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-300)
    return (proba + PROBABILITY_FLOOR) / (1.0 + proba.shape[1] * PROBABILITY_FLOOR)


class TemperatureScaling:
    method = "temperature"

    def __init__(self, temperature: float = 1.0):
        self.temperature = float(temperature)

    @staticmethod
    def _scaled(log_p: np.ndarray, temperature: float) -> np.ndarray:
        z = log_p / temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def fit(self, proba: np.ndarray, Y: np.ndarray) -> "TemperatureScaling":
        proba, Y = _usable(proba, Y)
        log_p = np.log(np.maximum(proba, 1e-12))

        def loss(log_t: float) -> float:
            return log_loss(self._scaled(log_p, math.exp(log_t)), Y)

        # A grid over T in [1/20, 400] (a 1-nearest-neighbour vote needs hundreds), then
        # golden-section search in the best cell: the loss is one-dimensional and smooth, but with
        # several genres per album not always convex.
        grid = np.linspace(-3.0, 6.0, 181)
        best = int(np.argmin([loss(t) for t in grid]))
        low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(40):
            a, b = high - ratio * (high - low), low + ratio * (high - low)
            if loss(a) < loss(b):
                high = b
            else:
                low = a
        self.temperature = float(math.exp((low + high) / 2))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        return self._scaled(np.log(np.maximum(np.asarray(proba, dtype=np.float64), 1e-12)), self.temperature)

    def state(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TemperatureScaling":
        return cls(state["temperature"])


def _pool_adjacent_violators(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) least-squares fit of y on x: the knots (x, fitted y) of the step map."""
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order].astype(np.float64)
    # Blocks of equal x start pooled, then adjacent violators merge.
    values, weights, lows, highs = [], [], [], []
    for xi, yi in zip(x, y):
        if lows and highs[-1] == xi:
            values[-1] = (values[-1] * weights[-1] + yi) / (weights[-1] + 1)
            weights[-1] += 1
        else:
            values.append(yi), weights.append(1.0), lows.append(xi), highs.append(xi)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            weights[-2], highs[-2] = w, highs[-1]
            del values[-1], weights[-1], lows[-1], highs[-1]
    knots_x = np.array([v for lo, hi in zip(lows, highs) for v in (lo, hi)])
    knots_y = np.array([v for v in values for _ in (0, 1)])
    return knots_x, knots_y


class IsotonicCalibration:
    method = "isotonic"

    def __init__(self, knots: list[dict[str, list[float]]] | None = None):
        self.knots = knots or []

    def fit(self, proba: np.ndarray, Y: np.ndarray) -> "IsotonicCalibration":
        proba, Y = _usable(proba, Y)
        self.knots = []
        for k in range(proba.shape[1]):
            x, y = _pool_adjacent_violators(proba[:, k], Y[:, k])
            self.knots.append({"x": x.tolist(), "y": y.tolist()})
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=np.float64)
        mapped = np.column_stack([np.interp(proba[:, k], knot["x"], knot["y"]) for k, knot in enumerate(self.knots)])
        # A row every map sends to 0 keeps the raw probabilities rather than dividing by zero.
        total = mapped.sum(axis=1, keepdims=True)
        return np.where(total > 0, mapped / np.maximum(total, 1e-300), proba)

    def state(self) -> dict[str, Any]:
        return {"knots": self.knots}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "IsotonicCalibration":
        return cls(state["knots"])


CALIBRATORS = {"temperature": TemperatureScaling, "isotonic": IsotonicCalibration}


def check_calibration_method(method: str) -> str:
    if method not in CALIBRATION_METHODS:
        raise CoverSearchError(f"unknown calibration {method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    return method


def fit_calibrator(method: str, proba: np.ndarray, Y: np.ndarray):
    return CALIBRATORS[check_calibration_method(method)]().fit(proba, Y)


def calibrator_from_state(method: str, state: dict[str, Any]):
    if method not in CALIBRATORS:
        raise CoverSearchError(f"unknown calibration {method!r} in the model; this version knows {', '.join(CALIBRATORS)}")
    return CALIBRATORS[method].from_state(state)


def calibrated(calibrator, proba: np.ndarray) -> np.ndarray:
    """The one place probabilities are calibrated (``calibrator`` None: the raw ones), floored."""
    return _floored(proba if calibrator is None else calibrator.transform(proba))


# -- "none of these" -----------------------------------------------------------------------------------
def parse_min_confidence(value: Any, name: str = "--min-confidence", empty_is_default: bool = False) -> float | None:
    """A threshold from the command line or a form: a number in [0, 1], or None when not given.

    A form's empty field means "the model's default" (``empty_is_default``); an empty option
    typed on the command line is a mistake, refused like any other non-number."""
    if value is None or (empty_is_default and isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:  # NaN fails the comparison too
        raise CoverSearchError(f"{name} must be a number from 0 to 1 (a probability), not {value!r}")
    return number


def choose_min_confidence(proba: np.ndarray, max_abstain: float = DEFAULT_MAX_ABSTAIN) -> float:
    """The highest threshold that abstains on at most ``max_abstain`` of these (validation) albums."""
    top = np.sort(np.max(proba, axis=1))
    if len(top) == 0:
        return 0.0
    # Albums strictly below top[m] number at most m <= max_abstain * n.
    return float(top[int(math.floor(max_abstain * len(top)))])


@dataclass
class Answer:
    genre: str  # the top genre, or UNKNOWN when its probability is below the threshold
    confidence: float  # the top genre's calibrated probability
    ranked: list[tuple[str, float]]  # every genre, most likely first

    @property
    def abstained(self) -> bool:
        return self.genre == UNKNOWN


def answers(classes: Sequence[str], proba: np.ndarray, min_confidence: float) -> list[Answer]:
    out = []
    for row in np.asarray(proba):
        ranked = [(classes[i], float(row[i])) for i in np.argsort(-row, kind="stable")]
        top_genre, top_p = ranked[0]
        out.append(Answer(top_genre if top_p >= min_confidence else UNKNOWN, top_p, ranked))
    return out


RISK_COVERAGE_THRESHOLDS = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)


def risk_coverage(proba: np.ndarray, Y: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    """For each threshold: share of albums abstained, and accuracy on the ones answered."""
    confidence, correct = _top(proba, Y)
    rows = []
    for t in sorted(set(float(t) for t in thresholds)):
        answered = confidence >= t
        n = int(answered.sum())
        rows.append({"min_confidence": t, "answered": n, "abstained_share": float(1 - n / len(proba)) if len(proba) else 0.0,
                     "answered_accuracy": float(correct[answered].mean()) if n else None})
    return rows
