"""Distance metrics, and how every index kind reports them so that kinds are comparable.

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

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.features.registry import FEATURES, feature_metric

COSINE = "cosine"
EUCLIDEAN = "euclidean"
HAMMING = "hamming"
METRICS = (COSINE, EUCLIDEAN, HAMMING)

def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise CoverSearchError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return metric


def default_metric(feature: str) -> str:
    """A computed feature's metric: its extractor class says (``metric``); an unknown name is an error."""
    return check_metric(feature_metric(feature))


def metric_for(feature_set) -> str:
    """A feature set's metric: the one recorded with it (imported vectors), else its extractor's."""
    if getattr(feature_set, "kind", "vector") == "text":
        raise CoverSearchError(f"{feature_set.label} is the words read on each cover, not vectors: search it with "
                               "`coversearch search`, not by similarity")
    recorded = feature_set.params.get("metric")
    if recorded:
        return check_metric(recorded)
    if feature_set.name not in FEATURES:
        raise CoverSearchError(f"feature set {feature_set.name!r} records no metric and no extractor is registered for it")
    return default_metric(feature_set.name)


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
        return 1.0 - np.einsum("ij,ij->i", q, v)
    if metric == HAMMING:
        return np.count_nonzero((q > 0.5) != (v > 0.5), axis=1).astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", q - v, q - v))
