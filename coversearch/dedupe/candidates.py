"""Candidate near-duplicate pairs through an index: plain functions over arrays (and a store).

Pairs are found by k-nearest-neighbour search through any index of the index layer, a chunk of
queries at a time, never an N x N matrix: memory is the index plus one chunk.  A query whose k-th
neighbour is still within the threshold is searched again with 4k, so a large group is never cut
short.  Every candidate pair's distance is then recomputed exactly from the vectors, so an
approximate index can miss a pair but never invents one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from coversearch.dedupe.rules import Rule
from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.index.base import VectorIndex

CHUNK = 4096  # queries per batch search
PAIR_CHUNK = 65536  # candidate pairs per exact distance computation
CANDIDATE_K = 5  # a verified rule's band: pairs among each album's 5 nearest neighbours are verified
FIRST_K = 16  # neighbours asked for first (each query's own vector is one of them)
EXACT_PRODUCTS = 1 << 26  # products per block when a self-join row asks for more neighbours (256 MB of floats)

Advance = Callable[[int], None]


# -- pairs -----------------------------------------------------------------------------------------
def near_pairs(
    index: VectorIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    rule: Rule,
    *,
    allowed_ids: np.ndarray | None = None,
    chunk: int = CHUNK,
    first_k: int = FIRST_K,
    advance: Advance | None = None,
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, distance) for every pair of ``ids`` within the rule's threshold, a < b, each once.

    ``search(rows, k)`` (ids and distances of the k nearest of ``vectors[rows]``) replaces the index
    (None then): e.g. a self-join's precomputed neighbours (``self_join_search``).

    ``vectors[i]`` is the vector of ``ids[i]``; the index holds (at least) those vectors under the
    same ids.  ``allowed_ids`` limits the neighbours to a subset (e.g. one genre).  For a verified
    rule, pairs beyond ``rule.sure`` are candidates (for ``verify_pairs``) only among each album's
    CANDIDATE_K nearest neighbours: the band is wide, and every candidate costs a verification.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    position = positions_of(ids)
    found_a, found_b, found_d = [], [], []
    n_searchable = len(ids) if search is not None else len(index) if allowed_ids is None else len(allowed_ids)
    widen = rule.sure if rule.verified else rule.threshold  # a k-th neighbour this close asks for more
    for start in range(0, len(ids), chunk):
        rows = np.arange(start, min(start + chunk, len(ids)))
        k = min(first_k, n_searchable)
        while len(rows):
            nn_ids, nn_dist = search(rows, k) if search is not None else index.batch_search(vectors[rows], k, allowed_ids)
            # The index's distances pick candidates (with slack for rounding); exact ones decide below.
            close = (nn_ids >= 0) & (nn_dist <= rule.threshold + 1e-4)
            if rule.verified:
                sure = nn_dist <= rule.sure + 1e-4
                close &= sure | (np.arange(k) <= CANDIDATE_K)[None, :]  # column 0 is usually the album itself
            q_rows, cols = np.nonzero(close)
            a, b = ids[rows[q_rows]], nn_ids[q_rows, cols]
            keep = a != b
            # Ordered (smaller id first): an approximate index may find a pair from one side only.
            found_a.append(np.minimum(a, b)[keep])
            found_b.append(np.maximum(a, b)[keep])
            # A query whose k-th neighbour is still close may have more: ask again for more.  Close by
            # its exact distance: a compressed index (PCA, quantised codes) underestimates distances,
            # and would widen every query of a dense region up to the whole index.
            full = (nn_ids[:, -1] >= 0) & (nn_dist[:, -1] <= widen + 1e-4) if k < n_searchable else np.zeros(len(rows), dtype=bool)
            check = np.flatnonzero(full & np.isin(nn_ids[:, -1], ids))
            if len(check):
                exact = metrics.pair_distances(vectors[rows[check]], vectors[position(nn_ids[check, -1])], rule.metric)
                full[check[exact > widen + 1e-9]] = False
            rows, k = rows[full], min(k * 4, n_searchable)
        if advance is not None:
            advance(min(chunk, len(ids) - start))
    a = np.concatenate(found_a) if found_a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(found_b) if found_b else np.zeros(0, dtype=np.int64)
    pairs = np.unique(np.stack([a, b], axis=1), axis=0) if len(a) else np.zeros((0, 2), dtype=np.int64)
    pairs = pairs[np.isin(pairs, ids).all(axis=1)]  # a neighbour outside the given vectors has no exact check
    if len(pairs) == 0:
        return pairs[:, 0], pairs[:, 1], np.zeros(0)
    # A chunk of pairs at a time: both sides' vectors gathered for every pair at once would be
    # 2 x pairs x dim floats (gigabytes at 100k albums with a wide band).
    distances = np.concatenate([
        metrics.pair_distances(vectors[position(pairs[i : i + PAIR_CHUNK, 0])], vectors[position(pairs[i : i + PAIR_CHUNK, 1])], rule.metric)
        for i in range(0, len(pairs), PAIR_CHUNK)
    ])
    keep = distances <= rule.threshold + 1e-9
    return pairs[keep, 0], pairs[keep, 1], distances[keep]


def positions_of(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    return lambda wanted: order[np.searchsorted(sorted_ids, wanted)]


def open_dedupe_index(store, feature: str, metric: str, index_dir=None) -> tuple[VectorIndex, str]:
    """The newest current index built for the feature (and metric) in ``index_dir``, else an exact one built now."""
    from coversearch.index.catalog import StaleIndexError, indexes_for_feature, open_index
    from coversearch.index.exact import ExactIndex
    from coversearch.index.faiss_binary import BinaryIndex

    if index_dir is not None:
        for manifest in indexes_for_feature(index_dir, feature, metric):
            try:
                opened = open_index(store, index_dir, manifest.name)
            except StaleIndexError:
                continue  # dedupe never rewrites an index; a stale one is passed over for exact search
            if not opened.index.searches_store:  # one SQL scan per album would be far slower than exact search
                return opened.index, f"index {manifest.name!r} ({manifest.kind})"
    fs = store.feature_set(feature)
    ids, vectors = store.load_embeddings(fs)
    if len(ids) == 0:
        raise CoverSearchError(f"the store has no {fs.label} vectors; run `coversearch ingest --features {feature}`")
    index_class = BinaryIndex if metric == metrics.HAMMING else ExactIndex
    return index_class(metric, fs.dim).fit(vectors, ids), f"exact search ({index_class.kind})"


def album_candidates(
    index: VectorIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    rule: Rule,
    *,
    radius: float | None = None,
    chunk: int = CHUNK,
    first_k: int = FIRST_K,
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each album's own candidates (what ``near_pairs`` finds from its side), for keeping them stored.

    Returns (album, other, index distance) rows of its candidates (for a verified rule, with every
    neighbour of a candidate rank, also beyond the threshold); ``kth``, per album, the index
    distance of its last neighbour that can still be a verified candidate (inf when it has fewer
    neighbours): a newcomer closer than that changes its candidates; and (album, other, index
    distance) of every neighbour within ``radius`` (default: none beyond the candidates), which
    tells which albums a newcomer is that close to.  ``search`` as in ``near_pairs`` (with ``vectors``
    and ``ids`` then every album's: a self-join).
    """
    ids = np.asarray(ids, dtype=np.int64)
    n_searchable = len(index) if search is None else len(ids)
    widen = max(rule.sure if rule.verified else rule.threshold, radius if radius is not None else -1.0)
    out_q, out_o, out_d, near_q, near_o, near_d = [], [], [], [], [], []
    kth = np.full(len(ids), np.inf)
    for start in range(0, len(ids), chunk):
        rows = np.arange(start, min(start + chunk, len(ids)))
        k = min(first_k, n_searchable)
        while len(rows):
            nn_ids, nn_dist = search(rows, k) if search is not None else index.batch_search(vectors[rows], k)
            close = (nn_ids >= 0) & (nn_dist <= rule.threshold + 1e-4)
            if rule.verified:
                ranked = (np.arange(k) <= CANDIDATE_K)[None, :]
                # Every neighbour of a candidate rank is kept, even beyond the threshold: when one is
                # removed, a farther album moves up into the ranks and may become a candidate.
                close = (close & (nn_dist <= rule.sure + 1e-4)) | ((nn_ids >= 0) & ranked)
                if k > CANDIDATE_K:
                    last = nn_dist[:, CANDIDATE_K]
                    kth[rows] = np.where(nn_ids[:, CANDIDATE_K] >= 0, last, np.inf)
            close &= nn_ids != ids[rows][:, None]
            q_rows, cols = np.nonzero(close)
            out_q.append(ids[rows[q_rows]])
            out_o.append(nn_ids[q_rows, cols])
            out_d.append(nn_dist[q_rows, cols])
            if radius is not None:
                q_rows, cols = np.nonzero((nn_ids >= 0) & (nn_dist <= radius + 1e-4) & (nn_ids != ids[rows][:, None]))
                near_q.append(ids[rows[q_rows]])
                near_o.append(nn_ids[q_rows, cols])
                near_d.append(nn_dist[q_rows, cols])
            full = (nn_ids[:, -1] >= 0) & (nn_dist[:, -1] <= widen + 1e-4) if k < n_searchable else np.zeros(len(rows), dtype=bool)
            rows, k = rows[full], min(k * 4, n_searchable)
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    q, o, d = cat(out_q, np.int64), cat(out_o, np.int64), cat(out_d, np.float64)
    # A query searched again with more neighbours found its first ones twice.
    keep = _first_of_each(q, o)
    near = (cat(near_q, np.int64), cat(near_o, np.int64), cat(near_d, np.float64))
    keep_near = _first_of_each(near[0], near[1])
    return q[keep], o[keep], d[keep], kth, (near[0][keep_near], near[1][keep_near], near[2][keep_near])


def _first_of_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
    return np.sort(first)


def exact_index(metric: str, dim: int, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
    """An exact index over the vectors: bit codes by Hamming distance, others brute force."""
    from coversearch.index.exact import ExactIndex
    from coversearch.index.faiss_binary import BinaryIndex

    index_class = BinaryIndex if metric == metrics.HAMMING else ExactIndex
    return index_class(metric, dim).fit(vectors, ids)


def self_join_search(vectors: np.ndarray, ids: np.ndarray, metric: str, *, nlist: int | None = None, nprobe: int = 8,
                     first_k: int = FIRST_K, in_place: bool = False) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """A ``near_pairs`` search over the vectors' own clustered self-join (``index.selfjoin``): the
    first ``first_k`` neighbours of every row computed at once by blocks of matrix products; a row
    asking for more (a group larger than that) is answered exactly, by one product with all rows.
    ``in_place``: cosine vectors are normalised where they are (see ``clustered_self_knn``)."""
    from coversearch.index.selfjoin import clustered_self_knn

    ids = np.asarray(ids, dtype=np.int64)
    knn_pos, knn_dist = clustered_self_knn(vectors, metric, first_k, nlist=nlist, nprobe=nprobe, in_place=in_place)
    prepared = vectors if in_place and metric == metrics.COSINE and vectors.dtype == np.float32 and vectors.flags.c_contiguous else None

    def search(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nonlocal prepared
        if k <= first_k:
            pos = knn_pos[rows, :k]
            return np.where(pos >= 0, ids[np.maximum(pos, 0)], -1), knn_dist[rows, :k]
        if prepared is None:
            prepared = metrics.prepare(vectors, metric)
        q = prepared[rows]
        out_i = np.empty((len(rows), k), np.int64)
        out_d = np.empty((len(rows), k), np.float64)
        norms = None if metric == metrics.COSINE else (prepared ** 2).sum(1)
        step = max(1, EXACT_PRODUCTS // max(len(prepared), 1))  # queries per block: 1M rows x 512 floats make 256 MB blocks at 64
        for start in range(0, len(rows), step):
            block = q[start : start + step] @ prepared.T
            if metric == metrics.COSINE:
                d = np.subtract(1.0, block, out=block)
            else:
                squared = np.maximum((q[start : start + step] ** 2).sum(1)[:, None] + norms[None, :] - 2 * block, 0)
                d = np.rint(squared) if metric == metrics.HAMMING else np.sqrt(squared)
            top = np.argpartition(d, k - 1, axis=1)[:, :k]
            top_d = np.take_along_axis(d, top, axis=1)
            order = np.argsort(top_d, axis=1, kind="stable")
            out_i[start : start + step] = ids[np.take_along_axis(top, order, axis=1)]
            out_d[start : start + step] = np.take_along_axis(top_d, order, axis=1)
        return out_i, out_d

    return search
