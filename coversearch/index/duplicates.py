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
from coversearch import metrics
from coversearch.features.registry import default_metric
from coversearch.index.base import VectorIndex

# The default rule, calibrated by benchmarks/bench_dedupe.py on half of its originals (figures on
# the other half in benchmarks/README.md).  Per feature (in its metric; phash: differing bits of
# 64; vgg16: 1 - cos): pairs within DEFAULT_THRESHOLDS are near-duplicates as they are; pairs
# beyond that but within DEFAULT_VERIFY_UP_TO, among each album's CANDIDATE_K nearest, are
# near-duplicates when their keypoints match (``verify_pairs``).
DEFAULT_THRESHOLDS: dict[str, float] = {"phash": 6, "vgg16": 0.075}
DEFAULT_VERIFY_UP_TO: dict[str, float] = {"phash": 16, "vgg16": 0.3}
# The rule `dedupe` and the duplicate check use when none is given: a pair is a near-duplicate
# when either feature says so (see benchmarks/README.md for why both).
DEFAULT_RULE_FEATURES = ("phash", "vgg16")

CHUNK = 4096  # queries per batch search
PAIR_CHUNK = 65536  # candidate pairs per exact distance computation
CANDIDATE_K = 5  # a verified rule's band: pairs among each album's 5 nearest neighbours are verified
MIN_INLIERS = 20  # keypoint pairs agreeing on one transform for a candidate to be confirmed
# ... and, laid over each other by that transform, at most MAX_DIFFERING of the cells they share
# may differ by more than CELL_DIFFERS grey levels: a sticker, not another release's lettering.
CELL_DIFFERS = 40
MAX_DIFFERING = 0.2
FIRST_K = 16  # neighbours asked for first (each query's own vector is one of them)
# A pHash sets exactly half its bits (the DCT coefficients above their median) unless coefficients
# tie, which in a picture happens only where they are exactly zero: a flat colour, a 1-pixel cover,
# two flat halves.  Such a hash says almost nothing (every flat cover hashes to 0 or 1 bit set,
# black 1 bit from white), so a pair with one is a near-duplicate only when the pictures' mean
# colours, cell by cell, differ by at most SAME_COLOURS grey levels on average (whatever the distance).
SAME_COLOURS = 10

Advance = Callable[[int], None]


@dataclass(frozen=True)
class Rule:
    """Pairs within ``threshold`` under ``feature`` are near-duplicates; with ``sure`` set, only those
    within ``sure`` are taken as they are, and those beyond it (up to ``threshold``, and among each
    album's CANDIDATE_K nearest) only when keypoint verification confirms them."""

    feature: str
    threshold: float
    metric: str
    sure: float | None = None

    @property
    def verified(self) -> bool:
        return self.sure is not None and self.sure < self.threshold

    def _value(self, x: float):
        return int(x) if self.metric == metrics.HAMMING else x

    @property
    def label(self) -> str:
        if self.verified:
            return f"{self.feature} <= {self._value(self.sure)}, or <= {self._value(self.threshold)} with matching keypoints"
        return f"{self.feature} <= {self._value(self.threshold)}"

    def accepts(self, distance: float) -> bool:
        """Whether a pair at ``distance`` needs no verification."""
        return distance <= (self.sure if self.verified else self.threshold) + 1e-9


def make_rule(feature: str, threshold: float | None, dim: int, metric: str | None = None) -> Rule:
    """A rule with a checked threshold: the feature's calibrated default (keypoint-verified beyond
    its sure distance) when None, else a plain rule at the given threshold."""
    metric = metric or default_metric(feature)
    sure = None
    if threshold is None:
        if feature not in DEFAULT_THRESHOLDS:
            raise CoverSearchError(
                f"no calibrated near-duplicate threshold for {feature}; give one with --threshold "
                f"(calibrated: {', '.join(f'{f}={t:g}' for f, t in DEFAULT_THRESHOLDS.items())})"
            )
        sure = DEFAULT_THRESHOLDS[feature]
        threshold = DEFAULT_VERIFY_UP_TO.get(feature, sure)
    limit = metrics.definition(metric).max_threshold or dim
    if not (0 <= float(threshold) < limit) or (metric == metrics.HAMMING and float(threshold) != int(threshold)):
        kind = f"a whole number of bits from 0 to {limit - 1}" if metric == metrics.HAMMING else f"from 0 to below {limit:g}"
        raise CoverSearchError(f"threshold {float(threshold):g} is out of range for {feature} ({metric} distance): use {kind}")
    return Rule(feature, float(threshold), metric, None if sure is None else float(sure))


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
    position = _positions(ids)
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


# -- verification ----------------------------------------------------------------------------------
class KeypointCache:
    """ORB keypoints of stored albums (``coversearch.features.keypoints``), each read from its file once.

    An album whose file cannot be found or decoded, or that has too few keypoints (a flat cover),
    cannot be verified: pairs that need it are not confirmed (``unverifiable`` counts them).
    """

    def __init__(self, store):
        self.store = store
        self._keypoints: dict[int, object] = {}
        self.unreadable = 0

    def load(self, album_ids) -> None:
        from coversearch.errors import ImageError
        from coversearch.imaging.images import decode_image, read_bytes
        from coversearch.features.keypoints import SIDE, keypoints
        from coversearch.imaging.thumbs import candidate_paths

        wanted = sorted({int(a) for a in album_ids} - set(self._keypoints))
        if not wanted:
            return
        for album_id, album in self.store.albums(wanted).items():
            found = None
            for path in candidate_paths(self.store, album):
                try:
                    found = keypoints(decode_image(read_bytes(path), draft=(SIDE, SIDE)).rgb)
                    break
                except (OSError, ImageError):
                    continue
            self.unreadable += found is None
            self._keypoints[album_id] = found
        for album_id in wanted:
            self._keypoints.setdefault(album_id, None)

    def get(self, album_id: int):
        self.load([album_id])
        return self._keypoints[int(album_id)]


def confirmed(query, stored) -> bool:
    """Whether two covers (``features.keypoints.Keypoints``) show one picture: their keypoints agree
    on one transform, and laid over each other by it they differ only in a few cells."""
    from coversearch.features.keypoints import match

    if query is None or stored is None:
        return False
    found = match(query, stored)
    return found.inliers >= MIN_INLIERS and found.differing(CELL_DIFFERS) <= MAX_DIFFERING


def uninformative(rule: Rule, vectors: np.ndarray) -> np.ndarray:
    """Which ``vectors`` say too little for ``rule`` to judge a pair by its distance: hashes with
    fewer than half their bits set (tied coefficients, see SAME_COLOURS).  Other metrics: none."""
    vectors = np.asarray(vectors)
    if rule.metric != metrics.HAMMING or len(vectors) == 0:
        return np.zeros(len(vectors), dtype=bool)
    return np.count_nonzero(vectors > 0.5, axis=1) < vectors.shape[1] // 2


def uninformative_ids(store, rule: Rule, album_ids) -> set[int]:
    """Those of the stored ``album_ids`` whose ``rule`` vector is ``uninformative``."""
    if rule.metric != metrics.HAMMING:
        return set()
    ids, vectors = store.load_embeddings(store.feature_set(rule.feature), sorted({int(a) for a in album_ids}))
    return set(ids[uninformative(rule, vectors)].tolist())


def same_pictures(a, b) -> bool:
    """Whether two pictures too plain to verify by keypoints (``features.keypoints.Keypoints``) show
    the same colours in the same places."""
    from coversearch.features.keypoints import colour_difference

    return a is not None and b is not None and colour_difference(a, b) <= SAME_COLOURS


def verify_pairs(rule: Rule, a: np.ndarray, b: np.ndarray, d: np.ndarray, cache: KeypointCache,
                 plain: np.ndarray | None = None) -> np.ndarray:
    """Which pairs (a[i], b[i]) at distances d[i] hold: within ``rule.sure`` as they are, beyond it
    only when keypoint verification confirms them; a pair where ``plain[i]`` (one side's vector is
    ``uninformative``) only when ``same_pictures``, at any distance."""
    keep = np.asarray([rule.accepts(x) for x in d.tolist()], dtype=bool)
    if plain is not None and plain.any():
        todo = np.flatnonzero(plain)
        cache.load(np.concatenate([a[todo], b[todo]]))
        for i in todo.tolist():
            keep[i] = same_pictures(cache.get(int(a[i])), cache.get(int(b[i])))
    todo = np.flatnonzero(~keep & (True if plain is None else ~plain))
    if len(todo):
        cache.load(np.concatenate([a[todo], b[todo]]))
        for i in todo.tolist():
            keep[i] = confirmed(cache.get(int(a[i])), cache.get(int(b[i])))
    return keep


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
    verified: int = 0  # candidate pairs checked by their keypoints


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
    cache: KeypointCache | None = None,
) -> RulePairs:
    """Near-duplicate pairs among the store's albums (or ``album_ids`` of them) under one rule
    (a verified rule's candidates beyond its sure distance checked by their keypoints)."""
    fs = store.feature_set(rule.feature)
    ids, vectors = store.load_embeddings(fs, album_ids)
    if len(ids) == 0:
        return RulePairs(rule, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), "nothing to search", ids, vectors)
    index, label = open_dedupe_index(store, rule.feature, rule.metric, index_dir)
    allowed = None if album_ids is None else ids
    a, b, d = near_pairs(index, vectors, ids, rule, allowed_ids=allowed, advance=advance)
    verified = 0
    flat = set(ids[uninformative(rule, vectors)].tolist())
    plain = np.fromiter((x in flat or y in flat for x, y in zip(a.tolist(), b.tolist())), dtype=bool, count=len(a))
    if rule.verified or plain.any():
        keep = verify_pairs(rule, a, b, d, cache if cache is not None else KeypointCache(store), plain)
        verified = int(sum(p or not rule.accepts(x) for x, p in zip(d.tolist(), plain.tolist())))
        a, b, d = a[keep], b[keep], d[keep]
    return RulePairs(rule, a, b, d, label, ids, vectors, verified)


def default_rules(store) -> list[Rule]:
    """The default rule's features that the store holds, at their calibrated thresholds."""
    held = {fs.name: fs for fs in store.feature_sets()}
    return [make_rule(name, None, held[name].dim) for name in DEFAULT_RULE_FEATURES if name in held]


def store_groups(store, rules: Sequence[Rule], *, album_ids: np.ndarray | None = None, index_dir=None) -> list[np.ndarray]:
    """Near-duplicate groups (album id arrays, largest first) of the store under ``rules`` (any one holding)."""
    a, b, ids = [], [], []
    cache = KeypointCache(store)
    for rule in rules:
        found = store_near_pairs(store, rule, album_ids=album_ids, index_dir=index_dir, cache=cache)
        a.append(found.a)
        b.append(found.b)
        ids.append(found.ids)
    if not ids:
        return []
    return connected_components(np.concatenate(ids), np.concatenate(a), np.concatenate(b))
