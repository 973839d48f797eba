"""How well a map keeps neighbourhoods: kNN preservation.

For a seeded sample of albums, the share of each one's ``k`` nearest albums in feature space
(under the feature's metric: cosine for vgg16) that are also among its ``k`` nearest on the map,
averaged.  1.0: the map keeps every neighbourhood; about k / n: it keeps none.
"""

from __future__ import annotations

import numpy as np

from coversearch import metrics


def sample_rows(n: int, count: int = 500, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, min(count, n), replace=False))


def feature_neighbours(vectors: np.ndarray, metric: str, rows: np.ndarray, k: int = 10) -> np.ndarray:
    """(len(rows), k) row indices of each sampled row's nearest other rows in feature space (exact)."""
    from coversearch.index.exact import ExactIndex

    index = ExactIndex(metric, vectors.shape[1]).fit(vectors, np.arange(len(vectors), dtype=np.int64))
    found, _ = index.batch_search(vectors[rows], k + 1)
    return _drop_self(found, rows, k)


def map_neighbours(xy: np.ndarray, rows: np.ndarray, k: int = 10) -> np.ndarray:
    """(len(rows), k) row indices of each sampled row's nearest other rows on the map."""
    xy = np.asarray(xy, dtype=np.float64)
    out = np.empty((len(rows), k + 1), dtype=np.int64)
    for j, r in enumerate(rows):
        d = ((xy - xy[r]) ** 2).sum(axis=1)
        part = np.argpartition(d, k)[: k + 1]
        out[j] = part[np.lexsort((part, d[part]))]
    return _drop_self(out, rows, k)


def _drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(rows), k), dtype=np.int64)
    for j, r in enumerate(rows):
        others = [int(a) for a in found[j] if a != r and a >= 0]
        out[j] = others[:k]
    return out


def preservation(high: np.ndarray, low: np.ndarray) -> float:
    """Mean share of each row's feature neighbours (``high``) found among its map neighbours (``low``)."""
    k = high.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(high, low)]))


def knn_preservation(vectors: np.ndarray, metric: str, xy: np.ndarray, *, k: int = 10, count: int = 500,
                     seed: int = 0, rows: np.ndarray | None = None) -> float:
    """kNN preservation@k of the map ``xy`` of ``vectors`` over ``count`` seeded albums (or ``rows``)."""
    rows = sample_rows(len(vectors), count, seed) if rows is None else np.asarray(rows)
    return preservation(feature_neighbours(vectors, metric, rows, k), map_neighbours(xy, rows, k))
