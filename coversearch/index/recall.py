"""Recall as ann-benchmarks computes it, reusable by tests and benchmarks.

A returned item counts as a hit when its *true* distance to the query is at most the true k-th
nearest distance plus a small epsilon (1e-3), so ties at the k-th place and float noise do not
count against an index.  True distances are computed here, in float64, from the vectors: an
approximate index's own distance estimates (e.g. PQ) are never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from coversearch import metrics
from coversearch.index.threads import all_threads

EPSILON = 1e-3


@dataclass(frozen=True)
class GroundTruth:
    rows: np.ndarray  # (nq, k) int64 rows of the base vectors, nearest first
    distances: np.ndarray  # (nq, k) float64 true distances in the metric


def ground_truth(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> GroundTruth:
    """The true k nearest base rows of each query (exact FAISS scan, distances recomputed in float64)."""
    x = metrics.prepare(base, metric)
    q = metrics.prepare(queries, metric)
    flat = faiss.IndexFlatL2(x.shape[1])
    flat.add(x)
    # A few extra candidates, re-ranked in float64, so float32 rounding cannot reorder the k-th place.
    extra = min(len(x), k + 10)
    with all_threads():
        _, rows = flat.search(q, extra)
    distances = true_distances(base, queries, rows, metric)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return GroundTruth(np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1))


def true_distances(base: np.ndarray, queries: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """(nq, m) float64 distances from each query to the base rows it names; row -1 gives inf."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full(rows.shape, np.inf, dtype=np.float64)
    nq, m = rows.shape
    found = rows >= 0
    q_index = np.repeat(np.arange(nq), m).reshape(nq, m)[found]
    out[found] = metrics.pair_distances(np.asarray(queries)[q_index], np.asarray(base)[rows[found]], metric)
    return out


def knn_recall(true_kth_distances: np.ndarray, returned_distances: np.ndarray, k: int, epsilon: float = EPSILON) -> np.ndarray:
    """Per-query recall@k: the share of the k returned items within the true k-th distance + epsilon.

    ``true_kth_distances`` (nq,) is the true k-th nearest distance of each query;
    ``returned_distances`` (nq, >=k) are the true distances of what the index returned (inf for
    missing items), in the order returned.
    """
    returned = np.asarray(returned_distances, dtype=np.float64)[:, :k]
    threshold = np.asarray(true_kth_distances, dtype=np.float64).reshape(-1, 1) + epsilon
    return (returned <= threshold).sum(axis=1) / float(k)


def recall_at_k(
    base: np.ndarray,
    queries: np.ndarray,
    returned_rows: np.ndarray,
    k: int,
    metric: str,
    truth: GroundTruth | None = None,
    epsilon: float = EPSILON,
) -> float:
    """Mean recall@k of ``returned_rows`` (nq, >=k; -1 for missing) against exact search on ``base``."""
    truth = truth or ground_truth(base, queries, k, metric)
    found = true_distances(base, queries, np.asarray(returned_rows)[:, :k], metric)
    return float(knn_recall(truth.distances[:, k - 1], found, k, epsilon).mean())


def ids_to_rows(base_ids: np.ndarray, returned_ids: np.ndarray) -> np.ndarray:
    """Map returned album ids back to rows of ``base_ids`` (-1 stays -1)."""
    base_ids = np.asarray(base_ids, dtype=np.int64)
    order = np.argsort(base_ids)
    returned = np.asarray(returned_ids, dtype=np.int64)
    positions = np.searchsorted(base_ids, returned, sorter=order)
    positions = np.clip(positions, 0, len(base_ids) - 1)
    rows = order[positions]
    ok = (returned >= 0) & (base_ids[rows] == returned)
    return np.where(ok, rows, -1)
