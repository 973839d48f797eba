"""Data sets for search benchmarks: a store's real embeddings, and larger synthetic sets made from them.

Synthetic construction (shared with ``benchmarks/bench_similar.py``): the real vectors, scaled to
unit length, are tiled to ``n`` rows and each row gets Gaussian noise whose expected norm is
``noise_scale`` times the median nearest-neighbour distance between the real vectors; queries are
fresh noisy copies of random real vectors, so none of them is in the index.  On the real sets a
seeded sample of the stored vectors is held out of the index as the queries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coversearch import metrics
from coversearch.features.registry import default_metric
from coversearch.index.recall import GroundTruth, ground_truth


def median_nn_distance(real: np.ndarray) -> float:
    """Median L2 distance from each real vector (unit length) to its nearest other real vector."""
    unit = metrics.prepare(real, metrics.COSINE)
    truth = ground_truth(unit, unit, 2, metrics.EUCLIDEAN)
    nn = np.where(truth.distances[:, 0] < 1e-6, truth.distances[:, 1], truth.distances[:, 0])
    return float(np.median(nn))


def synthetic_vectors(
    real: np.ndarray, n: int, n_queries: int, noise_norm: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(base (n, dim), queries, each query's source row in ``real``, noise sigma per dimension).

    Row i of base is real vector i mod len(real) (unit length) plus Gaussian noise of expected
    norm ``noise_norm``; queries are fresh noisy copies of random real vectors.
    """
    unit = metrics.prepare(real, metrics.COSINE)
    dim = unit.shape[1]
    sigma = noise_norm / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    base = unit[np.arange(n) % len(unit)] + rng.normal(0.0, sigma, size=(n, dim)).astype(np.float32)
    sources = rng.integers(0, len(unit), size=n_queries)
    queries = unit[sources] + rng.normal(0.0, sigma, size=(n_queries, dim)).astype(np.float32)
    return base.astype(np.float32), queries.astype(np.float32), sources, sigma


@dataclass
class Dataset:
    """Base vectors (with album ids), held-out queries, and how they were made."""

    key: str  # stable name: results.json, cache files and plot names use it
    title: str
    description: str
    feature: str
    metric: str
    base: np.ndarray
    base_ids: np.ndarray
    queries: np.ndarray
    real: bool  # the store's own vectors (genre accuracy and the duckdb kind apply)
    params: dict[str, Any] = field(default_factory=dict)
    query_sources: np.ndarray | None = None  # synthetic: the real row each query was made from
    tiled_from: int = 0  # synthetic: base row i is a noisy copy of real row i mod tiled_from

    @property
    def n(self) -> int:
        return len(self.base)

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    def info(self) -> dict[str, Any]:
        return {
            "key": self.key, "title": self.title, "description": self.description, "feature": self.feature,
            "metric": self.metric, "n": self.n, "dim": self.dim, "queries": len(self.queries), "real": self.real,
            "params": self.params,
        }


def _key(prefix: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"


def real_dataset(
    store_name: str, feature: str, ids: np.ndarray, vectors: np.ndarray, fingerprint: str, n_queries: int, seed: int,
    metric: str | None = None,
) -> Dataset:
    """The store's vectors of one feature set, with ``n_queries`` of them held out as queries."""
    metric = metric or default_metric(feature)
    n_queries = max(1, min(n_queries, len(ids) // 10))
    rng = np.random.default_rng(seed)
    held = np.zeros(len(ids), dtype=bool)
    held[rng.choice(len(ids), size=n_queries, replace=False)] = True
    params = {"store": store_name, "feature": feature, "fingerprint": fingerprint, "metric": metric,
              "queries": n_queries, "seed": seed}
    n_base = int((~held).sum())
    return Dataset(
        key=_key(f"{store_name}-{feature}-{n_base}", params),
        title=f"{store_name} store, {feature} ({n_base:,} x {vectors.shape[1]}, {metric})",
        description=(
            f"The store's {len(ids):,} real {feature} vectors; {n_queries:,} of them (seed {seed}) are held out as "
            f"queries and the other {n_base:,} are indexed ({metric} distance)."
        ),
        feature=feature, metric=metric, base=np.ascontiguousarray(vectors[~held], dtype=np.float32),
        base_ids=np.asarray(ids, dtype=np.int64)[~held], queries=np.ascontiguousarray(vectors[held], dtype=np.float32),
        real=True, params=params,
    )


def synthetic_dataset(
    store_name: str, feature: str, real: np.ndarray, fingerprint: str, n: int, n_queries: int, seed: int,
    noise_scale: float = 1.0,
) -> Dataset:
    """``n`` tiled-plus-noise vectors made from a store's real vectors (cosine), with held-out queries."""
    median_nn = median_nn_distance(real)
    base, queries, sources, sigma = synthetic_vectors(real, n, n_queries, noise_scale * median_nn, seed)
    params = {"store": store_name, "feature": feature, "fingerprint": fingerprint, "n": n, "queries": n_queries,
              "seed": seed, "noise_scale": noise_scale, "metric": metrics.COSINE}
    return Dataset(
        key=_key(f"synthetic-{feature}-{n}", params),
        title=f"synthetic {n:,} x {real.shape[1]} from {store_name} {feature}, noise scale {noise_scale:g} (cosine)",
        description=(
            f"{n:,} synthetic vectors: the store's {len(real):,} real {feature} vectors (unit length) tiled, each row "
            f"plus Gaussian noise of expected norm {noise_scale:g} x the median nearest-neighbour distance between "
            f"real covers ({median_nn:.4f}; sigma {sigma:.5f} per dimension); {n_queries:,} held-out queries are fresh "
            f"noisy copies of random real vectors, not in the index (seed {seed}, cosine distance)."
        ),
        feature=feature, metric=metrics.COSINE, base=base, base_ids=np.arange(n, dtype=np.int64), queries=queries,
        real=False, params=params, query_sources=sources, tiled_from=len(real),
    )


def own_copies_share(dataset: Dataset, truth: GroundTruth) -> float | None:
    """Synthetic sets: the share of each query's true neighbours that are noisy copies of its own cover
    (near 1 means the task is easy: the copies cluster far from everything else)."""
    if dataset.query_sources is None or not dataset.tiled_from:
        return None
    return float(np.mean(truth.rows % dataset.tiled_from == dataset.query_sources[:, None]))


def cached_ground_truth(dataset: Dataset, k: int, cache_dir: Path | None) -> GroundTruth:
    """Exact k nearest neighbours of the queries, computed once per data set and kept as an .npz."""
    path = Path(cache_dir) / f"truth-{dataset.key}-k{k}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                truth = GroundTruth(data["rows"], data["distances"])
            if truth.rows.shape == (len(dataset.queries), k):
                return truth
        except (OSError, ValueError, KeyError):
            pass  # recompute a damaged cache file
    truth = ground_truth(dataset.base, dataset.queries, k, dataset.metric)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, rows=truth.rows, distances=truth.distances)
        tmp.replace(path)
    return truth
