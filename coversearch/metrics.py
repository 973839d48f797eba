"""Distance metrics: the one place a metric is defined.

Each metric is one ``Metric`` row below (its SQL for exact search in the store, its largest
meaningful threshold) plus its branch in ``prepare``, ``from_squared_l2`` and ``pair_distances``;
a feature says which metric compares its vectors (the ``metric`` of its extractor class).

Two metrics as in the original study, and one for hashes:

- ``cosine`` (vgg16): vectors are L2-normalised and compared by inner product; the reported
  distance is ``1 - cos`` (0 = same direction, 2 = opposite).
- ``euclidean`` (hsv): the true L2 distance between the (already L2-normalised) histograms, not
  its square.
- ``hamming`` (phash): vectors of 0/1 values (one per bit); the reported distance is the number
  of differing bits, which is exactly their squared L2 distance.

FAISS kinds index the prepared vectors (unit rows for cosine) under squared L2, which ranks
unit vectors exactly as cosine does (``|a - b|^2 = 2 - 2 cos``); ``from_squared_l2`` turns
their output into the reported distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coversearch.errors import CoverSearchError

COSINE = "cosine"
EUCLIDEAN = "euclidean"
HAMMING = "hamming"


@dataclass(frozen=True)
class Metric:
    name: str
    sql: str  # DuckDB's distance between the column ``vector`` and the query ``{q}`` (``Store.nearest``)
    max_threshold: float | None  # the largest meaningful distance; None: the vector's length (bits)


METRIC_TABLE = {
    COSINE: Metric(COSINE, "array_cosine_distance(vector, {q})", 2.0),
    EUCLIDEAN: Metric(EUCLIDEAN, "array_distance(vector, {q})", 2.0),  # between unit-length histograms
    # L2^2 of 0/1 vectors counts the differing bits
    HAMMING: Metric(HAMMING, "round(pow(array_distance(vector, {q}), 2))", None),
}
METRICS = tuple(METRIC_TABLE)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise CoverSearchError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return metric


def definition(name: str) -> Metric:
    """The metric ``name`` (an unknown name is an error)."""
    return METRIC_TABLE[check_metric(name)]


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, (n, dim); rows scaled to unit length for cosine (zero rows stay zero)."""
    x = np.array(vectors, dtype=np.float32, copy=True, order="C")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if metric == COSINE:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
    return x


def from_squared_l2(squared: np.ndarray, metric: str) -> np.ndarray:
    """Squared L2 between prepared vectors -> the reported distance for ``metric``."""
    squared = np.maximum(np.asarray(squared, dtype=np.float32), 0.0)
    if metric == COSINE:
        return squared / 2.0  # unit vectors: |a - b|^2 / 2 = 1 - cos
    if metric == HAMMING:
        return np.rint(squared)  # 0/1 vectors: |a - b|^2 counts the differing bits
    return np.sqrt(squared)


def pair_distances(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Exact distance (float64) between ``queries[i]`` and ``vectors[i]`` for each i."""
    q = prepare(queries, metric).astype(np.float64)
    v = prepare(vectors, metric).astype(np.float64)
    if metric == COSINE:
        # Rounding can put the dot product of a vector with itself just above 1: never a negative distance.
        return np.maximum(1.0 - np.einsum("ij,ij->i", q, v), 0.0)
    if metric == HAMMING:
        return np.count_nonzero((q > 0.5) != (v > 0.5), axis=1).astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", q - v, q - v))
