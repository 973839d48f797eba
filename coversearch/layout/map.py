"""The catalogue map: every album of a feature set laid out in 2-D, cached in the store.

The layout is PCA (the two directions of largest variance), computed here with numpy: no new
dependency, deterministic, and linear in the albums (one pass for the d x d covariance, one
eigendecomposition of it): seconds at 100k albums (benchmarks/README.md).  t-SNE or UMAP separate genres
and clusters far better on a 2-D screen, but would bring scikit-learn or umap-learn (with numba
and pynndescent) into the product for one view; see README.md, "The catalogue map".

For a cosine feature (vgg16) rows are L2-normalised first, so the map shows the same directions
that search compares.  Coordinates are scaled into [0, 1] (the 0.1th-99.9th percentiles; the few
outliers beyond are clamped to the edge) keeping the aspect of the two components.

A layout is cached per (feature set, method) with the store's embedding fingerprint; an ingest or
remove changes that fingerprint, so the cached layout is stale and the next ``catalogue_map``
recomputes it (and stores it again when the store is open for writing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.features.registry import metric_for

METHOD = "pca"


@dataclass
class MapLayout:
    feature: str  # feature set label, e.g. "vgg16 v1"
    method: str
    album_ids: np.ndarray  # int64 (n,)
    xy: np.ndarray  # float32 (n, 2) in [0, 1]
    seconds: float  # what computing the layout took (when it was computed)
    cache: str  # "hit", "computed" (nothing cached) or "recomputed" (the cached one was stale, or asked to)
    saved: bool  # stored in the store for the next time
    fingerprint: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"feature": self.feature, "method": self.method, "albums": int(len(self.album_ids)), "cache": self.cache,
                "saved": self.saved, "layout_seconds": round(self.seconds, 3), "notes": self.notes}


def pca_2d(vectors: np.ndarray, metric: str | None = None, chunk: int = 65536) -> np.ndarray:
    """(n, 2) float32 coordinates in [0, 1]: the vectors projected on their two principal axes."""
    n, dim = vectors.shape
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if metric == metrics.COSINE:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
    mean = vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
    cov = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, n, chunk):  # bounded memory: the centred copy is made a chunk at a time
        part = np.asarray(vectors[start : start + chunk], dtype=np.float32) - mean
        cov += part.T @ part  # float32 products (twice as fast), summed per chunk in float64
    values, axes = np.linalg.eigh(cov)
    axes = axes[:, np.argsort(values)[::-1][:2]]
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((dim, 2 - axes.shape[1]))])
    # Fix each axis's sign (eigh may flip it between runs on other machines): largest loading positive.
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    xy = np.empty((n, 2), dtype=np.float64)
    for start in range(0, n, chunk):
        xy[start : start + chunk] = (np.asarray(vectors[start : start + chunk], dtype=np.float32) - mean) @ axes.astype(np.float32)
    return scale_unit(xy)


def scale_unit(xy: np.ndarray) -> np.ndarray:
    low = np.percentile(xy, 0.1, axis=0) if len(xy) > 100 else xy.min(axis=0)
    high = np.percentile(xy, 99.9, axis=0) if len(xy) > 100 else xy.max(axis=0)
    span = float(max((high - low).max(), 1e-12))  # one scale for both axes: distances keep their meaning
    out = (np.clip(xy, low, high) - low) / span
    out += (1 - (high - low) / span) / 2  # centre the shorter axis
    return out.astype(np.float32)


def catalogue_map(store, feature: str, *, recompute: bool = False, save: bool = True) -> MapLayout:
    """The cached layout of ``feature`` when it is current, else a new one (saved when the store is writable)."""
    fs = store.feature_set(feature)
    fingerprint = store.embedding_fingerprint(fs)
    cached = store.map_layout(fs.id, METHOD)
    if cached is not None and not recompute and cached[0]["embedding_fingerprint"] == fingerprint:
        record, ids, xy = cached
        return MapLayout(fs.label, METHOD, ids, xy, record["seconds"], "hit", True, fingerprint)
    ids, vectors = store.load_embeddings(fs)
    if len(ids) == 0:
        raise CoverSearchError(f"the store has no {fs.label} vectors to lay out; run `coversearch ingest --features {feature}`")
    started = time.perf_counter()
    xy = pca_2d(vectors, metric_for(fs))
    seconds = time.perf_counter() - started
    del vectors
    notes = []
    saved = False
    if save and not store.read_only:
        store.save_map_layout(fs.id, METHOD, fingerprint, ids, xy, seconds)
        saved = True
    elif save:
        notes.append("the store is open read-only: this layout was not cached")
    return MapLayout(fs.label, METHOD, ids, xy, seconds, "computed" if cached is None else "recomputed", saved, fingerprint, notes)


def layout_state(store, feature: str) -> str:
    """"none", "current" or "stale": what a cached layout of ``feature`` is worth now."""
    fs = store.feature_set(feature)
    cached = store.map_layout(fs.id, METHOD)
    if cached is None:
        return "none"
    return "current" if cached[0]["embedding_fingerprint"] == store.embedding_fingerprint(fs) else "stale"
