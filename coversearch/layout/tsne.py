"""t-SNE layouts for the catalogue map (openTSNE's FFT-accelerated t-SNE), and placement of new
albums into an existing layout without moving the albums already on it.

Why t-SNE: on covers5's vgg16 vectors 29% of each album's 10 nearest neighbours are among its 10
nearest on the map, against 2.4% with PCA and 15% with UMAP (benchmarks/bench_map.py).  Why
openTSNE: its FFT gradient is linear in the albums, and it can optimise new points against a
fixed reference layout (Poličar et al., "openTSNE", JSS 2024), which is what keeps the map stable
as the catalogue grows.

Nearest neighbours come from the project's exact FAISS scan (``ExactIndex``) rather than
openTSNE's Annoy: exact and the same on every run, so one seed gives one map.  Vectors are
"prepared" first (``metrics.prepare``: unit rows for cosine), after which Euclidean distance ranks
as the feature's metric does.  Above ``FIT_SAMPLE`` albums, t-SNE lays out a seeded sample and the
rest are placed into it, which bounds time and memory (100k albums in minutes on 2 cores).
"""

from __future__ import annotations

import numpy as np

from coversearch import metrics

PERPLEXITY = 30.0
FIT_SAMPLE = 25_000  # albums t-SNE lays out itself; the rest are placed into that layout
PLACE_PERPLEXITY = 5.0  # openTSNE's default for new points: a new album follows its closest few


def _threads() -> int:
    from coversearch.index.threads import available_cores

    return max(1, available_cores())


def _exact_index(x: np.ndarray):
    from coversearch.index.exact import ExactIndex

    return ExactIndex(metrics.EUCLIDEAN, x.shape[1]).fit(x, np.arange(len(x), dtype=np.int64))


def _knn_class():
    from openTSNE.nearest_neighbors import KNNIndex

    class ExactKNN(KNNIndex):
        """openTSNE's neighbour interface over an exact FAISS scan (Euclidean in prepared space)."""

        def __init__(self, data: np.ndarray, k: int):  # noqa: D107 (KNNIndex's own checks do not apply)
            self.data = data
            self.n_samples = len(data)
            self.k = int(k)
            self.index = _exact_index(data)

        def build(self):
            found, dist = self.index.batch_search(self.data, min(self.k + 1, self.n_samples))
            return _without_self(found, dist, self.k)

        def query(self, query, k):
            found, dist = self.index.batch_search(np.ascontiguousarray(query, dtype=np.float32), min(int(k), self.n_samples))
            return found.astype(np.int64), dist.astype(np.float64)

    return ExactKNN


def _without_self(found: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's neighbours without the row itself (an identical twin may rank before it)."""
    n = len(found)
    own = found == np.arange(n)[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), found.shape[1] - 1)
    keep = np.ones_like(found, dtype=bool)
    keep[np.arange(n), drop] = False
    return found[keep].reshape(n, -1)[:, :k].astype(np.int64), dist[keep].reshape(n, -1)[:, :k].astype(np.float64)


def prepared(vectors: np.ndarray, metric: str) -> np.ndarray:
    """The vectors in the space where Euclidean distance ranks as ``metric`` does (float32, C order)."""
    return metrics.prepare(vectors, metric)


def fit(x: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) float64 t-SNE coordinates of prepared vectors ``x`` (n >= 2)."""
    import openTSNE
    from openTSNE.affinity import PerplexityBasedNN

    n = len(x)
    if n < 4:  # too few for any perplexity: a line in the data's own order
        return np.stack([np.arange(n, dtype=np.float64), np.zeros(n)], axis=1)
    perplexity = min(PERPLEXITY, (n - 1) / 3)
    k = min(n - 1, int(3 * perplexity))
    affinities = PerplexityBasedNN(knn_index=_knn_class()(x, k), perplexity=perplexity, n_jobs=_threads())
    tsne = openTSNE.TSNE(perplexity=perplexity, initialization="pca", negative_gradient_method="fft",
                         n_jobs=_threads(), random_state=seed, verbose=False)
    return np.asarray(tsne.fit(x, affinities=affinities), dtype=np.float64)


def place(reference_xy: np.ndarray, reference_x: np.ndarray, new_x: np.ndarray, seed: int) -> np.ndarray:
    """(m, 2) coordinates for new prepared vectors in the layout ``reference_xy`` of ``reference_x``:
    each starts at the median of its 25 nearest reference albums and is optimised against the
    fixed reference (openTSNE's ``transform``); no reference album moves."""
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import Affinities, joint_probabilities_nn
    import scipy.sparse as sp

    if len(new_x) == 0:
        return np.zeros((0, 2))
    index = _exact_index(reference_x)
    n_ref = len(reference_x)

    class Reference(Affinities):
        """Affinities of new albums to the fixed reference (the reference's own are not needed)."""

        def __init__(self):
            super().__init__()
            self.P = sp.csr_matrix((n_ref, n_ref))

        def to_new(self, data, perplexity=PLACE_PERPLEXITY, return_distances=False):
            k = min(n_ref, int(3 * perplexity))
            found, dist = index.batch_search(np.ascontiguousarray(data, dtype=np.float32), k)
            found, dist = found.astype(np.int64), dist.astype(np.float64)
            P = joint_probabilities_nn(found, dist, [min(perplexity, k / 3)], symmetrize=False,
                                       normalization="point-wise", n_reference_samples=n_ref, n_jobs=_threads())
            return (P, found, dist) if return_distances else P

    reference = np.asarray(reference_xy, dtype=np.float64)
    centre = (reference.max(axis=0) + reference.min(axis=0)) / 2  # transform centres the reference in place
    embedding = TSNEEmbedding(reference - centre, Reference(), negative_gradient_method="fft", n_jobs=_threads(),
                              random_state=seed)
    placed = embedding.transform(np.ascontiguousarray(new_x, dtype=np.float32), perplexity=PLACE_PERPLEXITY)
    return np.asarray(placed, dtype=np.float64) + centre


def neighbour_distances(x: np.ndarray, reference_x: np.ndarray, in_reference: np.ndarray | None, k: int = 10) -> np.ndarray:
    """Each row's mean distance to its ``k`` nearest reference rows (itself excluded where
    ``in_reference[i]`` gives its reference row, else -1): the inverse of its neighbourhood density."""
    n = len(x)
    if n == 0 or len(reference_x) < 2:
        return np.zeros(n, dtype=np.float32)
    index = _exact_index(reference_x)
    k = min(k, len(reference_x) - 1)
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, 8192):  # bounded memory at 100k rows
        part = x[start : start + 8192]
        found, dist = index.batch_search(part, k + 1)
        own = in_reference[start : start + 8192] if in_reference is not None else np.full(len(part), -1)
        mine = found == own[:, None]
        drop = np.where(mine.any(axis=1), mine.argmax(axis=1), k)
        keep = np.ones_like(found, dtype=bool)
        keep[np.arange(len(part)), drop] = False
        out[start : start + len(part)] = dist[keep].reshape(len(part), -1)[:, :k].mean(axis=1)
    return out
