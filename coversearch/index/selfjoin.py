"""k nearest neighbours of every vector among the same vectors (a self-join), approximately, by
blocks of matrix products instead of one search per query.

An IVF index answers a million queries one by one, each scanning its nprobe lists with scalar-ish
loops; the self-join knows every query in advance, so it clusters the vectors once (k-means on a
sample), and for each cluster multiplies the block of queries that probe it by the block of its
members (one BLAS call), keeping each query's k best so far.  The same pairs are compared as by
IVF with the same nprobe, at matrix-multiply speed.  Memory: the vectors, one block of products
and the (n, k) result.
"""

from __future__ import annotations

import numpy as np

from coversearch import metrics

BLOCK_ROWS = 8192  # queries per matrix product at most ...
BLOCK_FLOATS = 1 << 24  # ... and at most this many products in one block (64 MB): clusters can be large


def clustered_self_knn(
    vectors: np.ndarray, metric: str, k: int, *, nlist: int | None = None, nprobe: int = 8, seed: int = 1234,
    train_rows: int = 131072, threads: int | None = None, in_place: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions (n, k), distances (n, k)) of each row's k nearest rows (itself included), nearest
    first, -1 / inf where fewer were compared.  Cosine, euclidean, or Hamming over 0/1 vectors (whose
    squared euclidean distance it is).  ``in_place``: ``vectors`` (float32, C order) may be
    normalised where they are instead of copied (cosine: half the memory at 1M x 512)."""
    import faiss

    if metric not in (metrics.COSINE, metrics.EUCLIDEAN, metrics.HAMMING):
        raise ValueError(f"the clustered self-join compares float or bit vectors, not {metric}")
    if threads:
        faiss.omp_set_num_threads(threads)
    owned = in_place and vectors.dtype == np.float32 and vectors.flags.c_contiguous and vectors.ndim == 2
    if owned and metric == metrics.COSINE:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        x = vectors
    else:
        x = vectors if owned else metrics.prepare(vectors, metric)
    n, dim = x.shape
    # sqrt(n) lists: k-means stays cheap (its sample is 64 rows a list), and a query compares with
    # nprobe / sqrt(n) of the rows, which the products make cheap.
    nlist = nlist or max(1, min(n // 64, int(np.sqrt(n))))
    nprobe = min(nprobe, nlist)
    rng = np.random.default_rng(seed)
    train_rows = min(train_rows, 64 * nlist)
    sample = x[rng.choice(n, train_rows, replace=False)] if n > train_rows else x
    kmeans = faiss.Kmeans(dim, nlist, niter=10, seed=seed, spherical=metric == metrics.COSINE, verbose=False)
    kmeans.train(sample)
    # Each query compares with the members of its nprobe nearest clusters; each vector is a member
    # of its nearest one (the first of them: one search over the centroids, not two).
    _, probes = kmeans.index.search(x, nprobe)
    home = np.ascontiguousarray(probes[:, 0])
    members = np.argsort(home, kind="stable")
    member_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    flat = probes.ravel()
    asking = np.argsort(flat, kind="stable")  # (query, probe) pairs by cluster
    ask_bounds = np.searchsorted(flat[asking], np.arange(nlist + 1))
    best_d = np.full((n, k), np.inf, dtype=np.float32)
    best_i = np.full((n, k), -1, dtype=np.int64)
    sq = (x * x).sum(axis=1) if metric != metrics.COSINE else None
    for c in range(nlist):
        m = members[member_bounds[c] : member_bounds[c + 1]]
        if len(m) == 0:
            continue
        queries_all = asking[ask_bounds[c] : ask_bounds[c + 1]] // nprobe
        block = x[m].T
        rows = max(64, min(BLOCK_ROWS, BLOCK_FLOATS // len(m)))
        for start in range(0, len(queries_all), rows):
            q = queries_all[start : start + rows]
            dots = x[q] @ block
            if metric == metrics.COSINE:
                d = np.subtract(1.0, dots, out=dots)
            elif metric == metrics.HAMMING:
                d = np.rint(sq[q][:, None] + sq[m][None, :] - 2 * dots)  # bits that differ, exactly
            else:
                d = np.sqrt(np.maximum(sq[q][:, None] + sq[m][None, :] - 2 * dots, 0))
            take = min(k, len(m))
            part = np.argpartition(d, take - 1, axis=1)[:, :take] if take < len(m) else np.broadcast_to(np.arange(len(m)), (len(q), len(m)))
            cand_d = np.take_along_axis(d, part, axis=1)
            merged_d = np.concatenate([best_d[q], cand_d], axis=1)
            merged_i = np.concatenate([best_i[q], m[part]], axis=1)
            keep = np.argpartition(merged_d, k - 1, axis=1)[:, :k]
            best_d[q] = np.take_along_axis(merged_d, keep, axis=1)
            best_i[q] = np.take_along_axis(merged_i, keep, axis=1)
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1), np.take_along_axis(best_d, order, axis=1).astype(np.float64)
