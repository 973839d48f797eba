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
from coversearch.index import metrics
from coversearch.index.base import VectorIndex

CHUNK = 4096  # queries per batch search
PAIR_CHUNK = 65536  # candidate pairs per exact distance computation
CANDIDATE_K = 5  # a verified rule's band: pairs among each album's 5 nearest neighbours are verified
FIRST_K = 16  # neighbours asked for first (each query's own vector is one of them)

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, distance) for every pair of ``ids`` within the rule's threshold, a < b, each once.

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
    n_searchable = len(index) if allowed_ids is None else len(allowed_ids)
    widen = rule.sure if rule.verified else rule.threshold  # a k-th neighbour this close asks for more
    for start in range(0, len(ids), chunk):
        rows = np.arange(start, min(start + chunk, len(ids)))
        k = min(first_k, n_searchable)
        while len(rows):
            nn_ids, nn_dist = index.batch_search(vectors[rows], k, allowed_ids)
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
