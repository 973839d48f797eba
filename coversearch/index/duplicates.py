"""Near-duplicate pairs and groups through an index: plain functions over arrays (and a store).

Two albums are near-duplicates under a *rule* (a feature and a distance threshold) when their
vectors are at most the threshold apart; groups are the connected components of that relation
(union-find), so "A is a copy of B and B of C" puts A, B and C in one group.  With several rules
(e.g. phash and vgg16) a pair counts when any rule holds.

Pairs are found by k-nearest-neighbour search through any index of the index layer, a chunk of
queries at a time, never an N x N matrix: memory is the index plus one chunk.  A query whose k-th
neighbour is still within the threshold is searched again with 4k, so a large group is never cut
short.  Every candidate pair's distance is then recomputed exactly from the vectors, so an
approximate index can miss a pair but never invents one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.index import metrics
from coversearch.index.base import VectorIndex

# Default thresholds per feature, in the feature's metric (phash: differing bits of 64; vgg16 and
# vgg16-layers: 1 - cos), calibrated by benchmarks/bench_dedupe.py on half of its originals:
# the loosest threshold whose precision against all of covers5 stays >= 0.99.
DEFAULT_THRESHOLDS: dict[str, float] = {"phash": 10, "vgg16": 0.125}
# The rule `dedupe` and the duplicate check use when none is given: a pair is a near-duplicate
# when either feature says so (see benchmarks/README.md for why both).
DEFAULT_RULE_FEATURES = ("phash", "vgg16")
# The largest meaningful threshold of each metric.
MAX_THRESHOLD = {metrics.COSINE: 2.0, metrics.EUCLIDEAN: 2.0}

CHUNK = 4096  # queries per batch search
FIRST_K = 16  # neighbours asked for first (each query's own vector is one of them)

Advance = Callable[[int], None]


@dataclass(frozen=True)
class Rule:
    feature: str
    threshold: float
    metric: str

    @property
    def label(self) -> str:
        value = int(self.threshold) if self.metric == metrics.HAMMING else self.threshold
        return f"{self.feature} <= {value}"


def make_rule(feature: str, threshold: float | None, dim: int, metric: str | None = None) -> Rule:
    """A rule with a checked threshold (the feature's calibrated default when None)."""
    metric = metric or metrics.default_metric(feature)
    if threshold is None:
        if feature not in DEFAULT_THRESHOLDS:
            raise CoverSearchError(
                f"no calibrated near-duplicate threshold for {feature}; give one with --threshold "
                f"(calibrated: {', '.join(f'{f}={t}' for f, t in DEFAULT_THRESHOLDS.items())})"
            )
        threshold = DEFAULT_THRESHOLDS[feature]
    limit = dim if metric == metrics.HAMMING else MAX_THRESHOLD[metric]
    if not (0 <= float(threshold) < limit) or (metric == metrics.HAMMING and float(threshold) != int(threshold)):
        kind = f"a whole number of bits from 0 to {limit - 1}" if metric == metrics.HAMMING else f"from 0 to below {limit:g}"
        raise CoverSearchError(f"threshold {float(threshold):g} is out of range for {feature} ({metric} distance): use {kind}")
    return Rule(feature, float(threshold), metric)


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
    same ids.  ``allowed_ids`` limits the neighbours to a subset (e.g. one genre).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    position = _positions(ids)
    found_a, found_b, found_d = [], [], []
    n_searchable = len(index) if allowed_ids is None else len(allowed_ids)
    for start in range(0, len(ids), chunk):
        rows = np.arange(start, min(start + chunk, len(ids)))
        k = min(first_k, n_searchable)
        while len(rows):
            nn_ids, nn_dist = index.batch_search(vectors[rows], k, allowed_ids)
            # The index's distances pick candidates (with slack for rounding); exact ones decide below.
            close = (nn_ids >= 0) & (nn_dist <= rule.threshold + 1e-4)
            q_rows, cols = np.nonzero(close)
            a, b = ids[rows[q_rows]], nn_ids[q_rows, cols]
            keep = a != b
            # Ordered (smaller id first): an approximate index may find a pair from one side only.
            found_a.append(np.minimum(a, b)[keep])
            found_b.append(np.maximum(a, b)[keep])
            # A query whose k-th neighbour is still close may have more: ask again for more.
            full = close[:, -1] if k < n_searchable else np.zeros(len(rows), dtype=bool)
            rows, k = rows[full], min(k * 4, n_searchable)
        if advance is not None:
            advance(min(chunk, len(ids) - start))
    a = np.concatenate(found_a) if found_a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(found_b) if found_b else np.zeros(0, dtype=np.int64)
    pairs = np.unique(np.stack([a, b], axis=1), axis=0) if len(a) else np.zeros((0, 2), dtype=np.int64)
    pairs = pairs[np.isin(pairs, ids).all(axis=1)]  # a neighbour outside the given vectors has no exact check
    if len(pairs) == 0:
        return pairs[:, 0], pairs[:, 1], np.zeros(0)
    distances = metrics.pair_distances(vectors[position(pairs[:, 0])], vectors[position(pairs[:, 1])], rule.metric)
    keep = distances <= rule.threshold + 1e-9
    return pairs[keep, 0], pairs[keep, 1], distances[keep]


def _positions(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    return lambda wanted: order[np.searchsorted(sorted_ids, wanted)]


# -- groups ----------------------------------------------------------------------------------------
def connected_components(ids: Sequence[int], a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Groups of two or more ids joined by the pairs (a[i], b[i]), largest first (then by smallest id)."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    position = _positions(ids)
    parent = np.arange(len(ids))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    for x, y in zip(position(np.asarray(a, dtype=np.int64)).tolist(), position(np.asarray(b, dtype=np.int64)).tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = np.fromiter((root(i) for i in range(len(ids))), dtype=np.int64, count=len(ids))
    order = np.argsort(roots, kind="stable")
    bounds = np.flatnonzero(np.diff(roots[order])) + 1
    groups = [ids[members] for members in np.split(order, bounds) if len(members) > 1]
    groups.sort(key=lambda g: (-len(g), int(g.min())))
    return groups


# -- over a store ----------------------------------------------------------------------------------
@dataclass
class RulePairs:
    rule: Rule
    a: np.ndarray
    b: np.ndarray
    distances: np.ndarray
    searched_with: str  # which index answered, for the user
    ids: np.ndarray  # the albums compared, and their vectors
    vectors: np.ndarray


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


def store_near_pairs(
    store,
    rule: Rule,
    *,
    album_ids: np.ndarray | None = None,
    index_dir=None,
    advance: Advance | None = None,
) -> RulePairs:
    """Near-duplicate pairs among the store's albums (or ``album_ids`` of them) under one rule."""
    fs = store.feature_set(rule.feature)
    ids, vectors = store.load_embeddings(fs, album_ids)
    if len(ids) == 0:
        return RulePairs(rule, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), "nothing to search", ids, vectors)
    index, label = open_dedupe_index(store, rule.feature, rule.metric, index_dir)
    allowed = None if album_ids is None else ids
    a, b, d = near_pairs(index, vectors, ids, rule, allowed_ids=allowed, advance=advance)
    return RulePairs(rule, a, b, d, label, ids, vectors)


def default_rules(store) -> list[Rule]:
    """The default rule's features that the store holds, at their calibrated thresholds."""
    held = {fs.name: fs for fs in store.feature_sets()}
    return [make_rule(name, None, held[name].dim) for name in DEFAULT_RULE_FEATURES if name in held]


def store_groups(store, rules: Sequence[Rule], *, album_ids: np.ndarray | None = None, index_dir=None) -> list[np.ndarray]:
    """Near-duplicate groups (album id arrays, largest first) of the store under ``rules`` (any one holding)."""
    a, b, ids = [], [], []
    for rule in rules:
        found = store_near_pairs(store, rule, album_ids=album_ids, index_dir=index_dir)
        a.append(found.a)
        b.append(found.b)
        ids.append(found.ids)
    if not ids:
        return []
    return connected_components(np.concatenate(ids), np.concatenate(a), np.concatenate(b))
