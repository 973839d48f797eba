"""Near-duplicate groups kept in the store, current after every ingest and remove.

Under each default rule (``rules.default_rules``) every *placed* album keeps its own candidates (what
its neighbour search finds: the pairs within the sure distance, and those within the rule's
threshold among its CANDIDATE_K nearest) and every verified pair keeps its verdict (inliers,
share of differing cells).  The groups are then the connected components of the stored pairs that
hold, the same as a whole `dedupe` over the same albums would find: a pair's candidates come
from either side, so placing a newcomer recomputes its own candidates and those of every album it
comes closer to than that album's last candidate rank (``kth``); a removal unplaces every album
whose candidates named a removed one, and they are placed again among those that remain.

Verification reads the stored keypoints (``features.keypoints``), so placing a cover decodes none.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from coversearch.dedupe.candidates import CANDIDATE_K, PAIR_CHUNK, album_candidates, exact_index, positions_of, self_join_search
from coversearch.dedupe.groups import DedupeResult, describe_groups
from coversearch.dedupe import text_veto
from coversearch.dedupe.rules import Rule, default_rules
from coversearch.dedupe.verify import CELL_DIFFERS, MAX_DIFFERING, MIN_INLIERS, KeypointCache, uninformative, uninformative_ids
from coversearch.dedupe.verify import verdicts as verdicts_of
from coversearch.errors import CoverSearchError
from coversearch import metrics

_LOG = logging.getLogger(__name__)

# Placing this share of the placed albums or more at once is a whole self-join instead.
WHOLE_SHARE = 0.25
# From this many albums a whole placement searches vectors by the clustered self-join
# (index/selfjoin.py: approximate, minutes at 1M) instead of exact products of every pair.  Hashes
# stay exact (popcounts): at 1M the self-join found only 97.5% of planted pHash pairs, whose
# 16-bit band is wide for clusters of 64-bit codes.
SELF_JOIN_ROWS = 200_000


def rule_key(rule: Rule, feature_version: int, text_version: int | None = None) -> str:
    """What the stored rows depend on: a change of any of it makes them stale."""
    key = {
        "threshold": rule.threshold, "sure": rule.sure, "metric": rule.metric, "version": feature_version,
        "candidate_k": CANDIDATE_K, "min_inliers": MIN_INLIERS, "cell_differs": CELL_DIFFERS, "max_differing": MAX_DIFFERING,
    }
    if text_version is not None:  # the verdicts of a store with text depend on the veto too
        key["text_veto"] = text_veto.settings(text_version)
    return json.dumps(key, sort_keys=True)


@dataclass
class Placement:
    placed: dict[str, int] = field(default_factory=dict)  # feature -> albums placed now (own search)
    revisited: dict[str, int] = field(default_factory=dict)  # feature -> placed albums a newcomer came close to
    whole: dict[str, bool] = field(default_factory=dict)  # feature -> placed by a whole self-join
    verified: int = 0  # pairs verified now (the others' verdicts were stored)
    decoded: int = 0  # albums whose keypoints came from their file (no stored record)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # load, index, candidates, verify, write: seconds
    index_rebuilt: dict[str, str | None] = field(default_factory=dict)  # feature -> why its placement index was built anew

    def to_dict(self) -> dict:
        return {"placed": self.placed, "revisited": self.revisited, "whole": self.whole, "verified": self.verified,
                "decoded": self.decoded, "seconds": round(self.seconds, 3), "stages": {k: round(v, 3) for k, v in self.stages.items()},
                "index_rebuilt": self.index_rebuilt}

    def _stage(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.stages[name] = self.stages.get(name, 0.0) + now - since
        return now


def is_current(store, rules: Sequence[Rule] | None = None) -> bool:
    """Whether the stored groups cover every album with vectors, under today's rules."""
    rules = default_rules(store) if rules is None else rules
    if not rules:
        return False
    stored = store.dedupe_rules()
    for rule in rules:
        fs = store.feature_set(rule.feature)
        if stored.get(rule.feature) != rule_key(rule, fs.version, text_veto.text_version(store)):
            return False
        placed, _ = store.dedupe_placed(rule.feature)
        if len(placed) != store.embedding_count(fs) or not np.array_equal(placed, store.embedding_album_ids(fs)):
            return False
    return True


def place(store, *, rebuild: bool = False, advance: Callable[[int], None] | None = None) -> Placement:
    """Bring the stored groups up to date: place every album not yet placed (all with ``rebuild``)."""
    started = time.perf_counter()
    out = Placement()
    rules = default_rules(store)
    text_version = text_veto.text_version(store)
    stored = store.dedupe_rules()
    # Verdicts are kept per pair whatever the rule: when what they depend on changed (a rule's key:
    # the verification's settings, text added to the store), none of them stands.
    if rebuild or any(stored.get(r.feature) not in (None, rule_key(r, store.feature_set(r.feature).version, text_version)) for r in rules):
        store.dedupe_clear()
        stored = {}
    verdicts = store.dedupe_verdicts()
    cache = KeypointCache(store)
    for rule in rules:
        fs = store.feature_set(rule.feature)
        key = rule_key(rule, fs.version, text_version)
        clock = time.perf_counter()
        ids = store.embedding_album_ids(fs)
        placed, kth_placed = store.dedupe_placed(rule.feature)
        clock = out._stage("load", clock)
        reset = stored.get(rule.feature) != key
        if reset:
            placed, kth_placed = np.zeros(0, np.int64), np.zeros(0)
        new = np.setdiff1d(ids, placed, assume_unique=True)
        if len(new) == 0 and not reset:
            continue
        whole = reset or len(new) >= WHOLE_SHARE * max(len(placed), 1)
        if whole:
            ids, vectors = store.load_embeddings(fs)
            out._stage("load", clock)
            todo, kth, sides, fresh = place_all(rule, ids, vectors, verdicts, cache, out)
            del vectors
        else:
            todo, kth, sides, fresh = _place_new(store, fs, rule, new, placed, kth_placed, verdicts, cache, out)
        clock = time.perf_counter()
        store.dedupe_write(rule.feature, key, todo, kth, sides, fresh, reset=whole)
        out._stage("write", clock)
        out.placed[rule.feature] = int(len(ids) if whole else len(new))
        out.whole[rule.feature] = bool(whole)
        if advance is not None:
            advance(int(len(todo)))
    out.decoded = cache.decoded
    out.seconds = time.perf_counter() - started
    return out


def place_all(rule: Rule, ids: np.ndarray, vectors: np.ndarray, verdicts: dict, cache: KeypointCache, out: Placement):
    """One rule's whole placement: every album (``ids``, ``vectors``, by id) from nothing, by exact
    search, or, for vectors, by the clustered self-join from SELF_JOIN_ROWS albums.  Returns what
    ``Store.dedupe_write`` stores: the albums placed, their kth distances, their candidate rows
    (album, other, exact distance) and the fresh verdicts (also added to ``verdicts``); stage times
    and counts go to ``out``."""
    clock = time.perf_counter()
    position = positions_of(ids)
    joined = len(ids) >= SELF_JOIN_ROWS and rule.metric != metrics.HAMMING
    # The vectors are place()'s own: cosine ones may be normalised where they are (the exact
    # distances below are the same on unit rows), so 1M x 512 floats are held once, not twice.
    search = self_join_search(vectors, ids, rule.metric, in_place=True) if joined else None
    index = None if joined else exact_index(rule.metric, vectors.shape[1], vectors, ids)
    clock = out._stage("index", clock)
    q, o, d, kth, _ = album_candidates(index, vectors, ids, rule, search=search)
    del search, index
    # Exact distances decide, as in near_pairs (an index's own may be rounded or compressed); rows
    # beyond the threshold are kept for removals (``album_candidates``) and are no pair.  A chunk at
    # a time: both sides' vectors for millions of rows would not fit in memory.
    exact = np.concatenate([np.zeros(0)] + [
        metrics.pair_distances(vectors[position(q[i : i + PAIR_CHUNK])], vectors[position(o[i : i + PAIR_CHUNK])], rule.metric)
        for i in range(0, len(q), PAIR_CHUNK)
    ])
    clock = out._stage("candidates", clock)
    _LOG.info("%s: %d albums, %d candidate rows, stages %s", rule.feature, len(ids), len(q), {k: round(v, 1) for k, v in out.stages.items()})
    fresh = _verify(rule, q, o, exact, verdicts, cache, set(ids[uninformative(rule, vectors)].tolist()))
    out.verified += len(fresh)
    out._stage("verify", clock)
    out.revisited[rule.feature] = 0
    return ids, kth, (q, o, exact), fresh


def _place_new(store, fs, rule: Rule, new: np.ndarray, placed: np.ndarray, kth_placed: np.ndarray, verdicts: dict,
               cache: KeypointCache, out: Placement):
    """``place_all`` for a few newcomers among many placed albums, through the feature's placement
    index kept beside the store (``placement_index``): only the vectors of the albums involved are
    read, never every stored one."""
    from coversearch.dedupe.placement_index import open_placement_index

    clock = time.perf_counter()
    opened = open_placement_index(store, fs, rule.metric)
    index = opened.index
    out.index_rebuilt[rule.feature] = opened.rebuilt
    clock = out._stage("index", clock)
    new, vectors = store.load_embeddings(fs, new)
    q, o, d, kth, near = album_candidates(index, vectors, new, rule, radius=rule.threshold if rule.verified else None)
    todo = new
    revisit = np.zeros(0, np.int64)
    if rule.verified and len(near[0]):
        is_placed = np.isin(near[1], placed)
        others, dist = near[1][is_placed], near[2][is_placed]
        limit = kth_placed[np.searchsorted(placed, others)]
        revisit = np.unique(others[dist <= limit + 1e-4])
    if len(revisit):
        revisit, again = store.load_embeddings(fs, revisit)
        q2, o2, d2, kth2, _ = album_candidates(index, again, revisit, rule)
        q, o, d = np.concatenate([q, q2]), np.concatenate([o, o2]), np.concatenate([d, d2])
        kth = np.concatenate([kth, kth2])
        todo = np.concatenate([new, revisit])
    # Exact distances decide (see place_all), from the vectors of the albums in the rows.
    involved, held = store.load_embeddings(fs, np.union1d(q, o)) if len(q) else (np.zeros(0, np.int64), np.zeros((0, fs.dim), np.float32))
    position = positions_of(involved)
    exact = metrics.pair_distances(held[position(q)], held[position(o)], rule.metric) if len(q) else np.zeros(0)
    clock = out._stage("candidates", clock)
    fresh = _verify(rule, q, o, exact, verdicts, cache, set(involved[uninformative(rule, held)].tolist()))
    out.verified += len(fresh)
    out._stage("verify", clock)
    out.revisited[rule.feature] = int(len(revisit))
    return todo, kth, (q, o, exact), fresh


def _verify(rule: Rule, q, o, d, verdicts: dict, cache: KeypointCache, flat: set[int]) -> list[tuple[int, int, int, float, bool]]:
    """Verdicts for the candidate pairs beyond the sure distance, or with a ``flat`` side
    (``verify.uninformative``), that have none yet (added to ``verdicts``), verified in batches
    (``verify.verdicts``).  Selected with arrays: a whole placement at 1M has millions of rows."""
    q, o, d = np.asarray(q, dtype=np.int64), np.asarray(o, dtype=np.int64), np.asarray(d, dtype=np.float64)
    flat_ids = np.fromiter(flat, dtype=np.int64, count=len(flat))
    plain = (np.isin(q, flat_ids) | np.isin(o, flat_ids)) if len(flat_ids) else np.zeros(len(q), dtype=bool)
    sure = d <= (rule.sure if rule.verified else rule.threshold) + 1e-9  # rule.accepts, row by row
    need = ~((sure & ~plain) | (d > rule.threshold + 1e-9))
    a, b, plain = np.minimum(q, o)[need], np.maximum(q, o)[need], plain[need]
    # By album: a batch of pairs then shares albums, each read and decoded once for it.
    order = np.lexsort((b, a))
    a, b, plain = a[order], b[order], plain[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, plain = a[first], b[first], plain[first]
    if verdicts and len(a):
        fresh_rows = np.fromiter(((x, y) not in verdicts for x, y in zip(a.tolist(), b.tolist())), dtype=bool, count=len(a))
        a, b, plain = a[fresh_rows], b[fresh_rows], plain[fresh_rows]
    pairs = list(zip(a.tolist(), b.tolist()))
    _LOG.info("%s: %d pairs to verify", rule.feature, len(pairs))
    found = verdicts_of(pairs, cache, plain)
    fresh = []
    for pair, result in zip(pairs, found):
        verdicts[pair] = result
        fresh.append((*pair, *result))
    return fresh


def stored_pairs(store, rules: Sequence[Rule], album_ids=None) -> list[tuple[Rule, np.ndarray, np.ndarray, np.ndarray]]:
    """Per rule, the stored pairs that hold (a < b, exact distance): within the sure distance, or
    confirmed; only those with one of ``album_ids`` when given."""
    verdicts = store.dedupe_verdicts(album_ids)
    out = []
    for rule in rules:
        q, o, d = store.dedupe_sides(rule.feature) if album_ids is None else store.dedupe_sides_touching(rule.feature, album_ids)
        within = d <= rule.threshold + 1e-9
        q, o, d = q[within], o[within], d[within]
        a, b = np.minimum(q, o), np.maximum(q, o)
        if len(a):
            _, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
            a, b, d = a[first], b[first], d[first]
        flat = uninformative_ids(store, rule, np.concatenate([a, b])) if len(a) else set()
        holds = np.asarray(
            [(rule.accepts(x) and i not in flat and j not in flat) or verdicts.get((int(i), int(j)), (0, 1.0, False))[2]
             for i, j, x in zip(a.tolist(), b.tolist(), d.tolist())], dtype=bool
        )
        out.append((rule, a[holds] if len(a) else a, b[holds] if len(b) else b, d[holds] if len(d) else d))
    return out


@dataclass
class NewDuplicate:
    album_id: int  # the newly added album
    path: str | None
    duplicate_of: int  # the album it nearly duplicates
    duplicate_path: str | None
    feature: str
    distance: float
    same_run: bool = False  # the other album arrived in the same run (an earlier file of it)


def new_album_duplicates(store, rules: Sequence[Rule], new_ids) -> list:
    """What `ingest --report-duplicates` lists, read from the stored groups (placed first): every
    near-duplicate pair with a new album (``new_ids``) on one side, the new album as the copy of the
    other; a pair of two new albums (near-copies arriving in the same run) lists the later one as the
    copy of the earlier (``same_run``).  A pair holding under several rules is listed once, under
    the first."""
    new_ids = np.asarray(new_ids, dtype=np.int64)
    if len(new_ids) == 0:
        return []
    if not is_current(store, rules):
        place(store)
    is_new = set(new_ids.tolist())
    best: dict[tuple[int, int], tuple[str, float]] = {}
    for rule, a, b, d in stored_pairs(store, rules, new_ids):
        for x, y, dist in zip(a.tolist(), b.tolist(), d.tolist()):
            copy, of = (y, x) if y in is_new else (x, y)  # a < b: the later album is the copy
            best.setdefault((copy, of), (rule.feature, rule.rounded(dist)))
    albums = store.albums(sorted({x for pair in best for x in pair})) if best else {}
    return [
        NewDuplicate(a, albums.get(a, {}).get("path"), b, albums.get(b, {}).get("path"), feature, d, same_run=b in is_new)
        for (a, b), (feature, d) in sorted(best.items())
    ]


def stored_groups(store, rules: Sequence[Rule] | None = None) -> list[np.ndarray]:
    """The stored groups (album id arrays, largest first), as ``groups.store_groups`` would find them."""
    from coversearch.dedupe.groups import connected_components

    rules = default_rules(store) if rules is None else rules
    pairs = stored_pairs(store, rules)
    placed = np.unique(np.concatenate([store.dedupe_placed(r.feature)[0] for r in rules])) if rules else np.zeros(0, np.int64)
    a = np.concatenate([x for _, x, _, _ in pairs]) if pairs else np.zeros(0, np.int64)
    b = np.concatenate([y for _, _, y, _ in pairs]) if pairs else np.zeros(0, np.int64)
    return connected_components(placed, a, b)


def stored_result(store, rules: Sequence[Rule] | None = None) -> DedupeResult:
    """`dedupe`'s answer read from the stored groups (which must be current: ``is_current``)."""
    started = time.perf_counter()
    rules = default_rules(store) if rules is None else rules
    if not rules:
        raise CoverSearchError("the store has none of the near-duplicate features; run `coversearch ingest ROOT --features phash`")
    pairs = stored_pairs(store, rules)
    placed = np.unique(np.concatenate([store.dedupe_placed(r.feature)[0] for r in rules]))
    groups = describe_groups(store, rules, pairs, placed)
    verdicts = store.dedupe_verdicts()
    return DedupeResult(
        rules=[r.label for r in rules], genre=None, albums=int(len(placed)), pairs=int(sum(len(x) for _, x, _, _ in pairs)),
        searched_with={r.feature: "stored groups" for r in rules}, seconds=round(time.perf_counter() - started, 3),
        groups=groups, verified_pairs=len(verdicts),
    )


def current_groups(store) -> list[np.ndarray]:
    """The default rule's groups: read from the store, placing what is missing first when the store
    is writable; a read-only store with stale groups has them computed (not stored)."""
    from coversearch.dedupe.groups import store_groups

    rules = default_rules(store)
    if not rules:
        return []
    if not is_current(store, rules):
        if store.read_only:
            return store_groups(store, rules)
        place(store)
    return stored_groups(store, rules)


def read_texts(store) -> np.ndarray | None:
    """The albums whose text the store holds (None: no text set); for ``forget_newly_read``."""
    fs = text_veto.text_set(store)
    return None if fs is None else store.embedding_album_ids(fs)


def forget_newly_read(store, before: np.ndarray | None) -> int:
    """After an ingest that read text: placed albums whose text was read since ``before`` (``read_texts``)
    were judged without it, so they are unplaced (``place`` judges them again, with the text veto).
    A store that had no text set has every group redone anyway (the rule key names the text set)."""
    if before is None or not store.dedupe_rules():
        return 0
    now = read_texts(store)
    gained = np.setdiff1d(now if now is not None else np.zeros(0, np.int64), before)
    placed = np.unique(np.concatenate([store.dedupe_placed(f)[0] for f in store.dedupe_rules()] or [np.zeros(0, np.int64)]))
    stale = np.intersect1d(gained, placed)
    store.dedupe_forget(stale)
    return int(len(stale))


def keep_current(store) -> Placement | None:
    """After albums were added or removed: place what is missing, when the store keeps groups
    (every store ingested by this version does; an older one gets them at its first `dedupe`)."""
    if not store.dedupe_rules() or not default_rules(store):
        return None
    return place(store)


def stored_dedupe(db, *, rebuild: bool = False, progress=None) -> DedupeResult:
    """`dedupe` with the default rule: the stored groups, placed first where they are not current
    (``rebuild``: from nothing).  An unchanged store is only read."""
    from coversearch.dedupe.rules import parse_rules
    from coversearch.store import Store

    with Store.open(db, read_only=True) as store:
        rules = parse_rules(store, None, None)  # the clear errors of an empty store or one without the features
        if not rebuild and is_current(store, rules):
            return stored_result(store, rules)
        total = sum(store.embedding_count(store.feature_set(r.feature)) for r in rules)
    started = time.perf_counter()
    with Store.open(db) as store:
        advance = progress("dedupe (placing covers)", total) if progress is not None else None
        placement = place(store, rebuild=rebuild, advance=advance)
        result = stored_result(store, rules)
    result.seconds = round(time.perf_counter() - started, 3)
    result.decoded_albums = placement.decoded
    return result


def group_map(store) -> dict[int, int]:
    """album id -> its near-duplicate group's key (the smallest member id), for the grouped albums;
    from the stored groups (see ``current_groups``)."""
    return {int(a): int(members.min()) for members in current_groups(store) for a in members}


def read_result(store) -> DedupeResult:
    """The default rule's groups as `dedupe` reports them, from the stored groups when current, else
    computed now (a read-only store, e.g. the page's snapshot, is not written)."""
    from coversearch.dedupe.groups import find_groups

    rules = default_rules(store)
    if not rules:
        raise CoverSearchError("the store has none of the near-duplicate features; run `coversearch ingest ROOT --features phash`")
    if is_current(store, rules):
        return stored_result(store, rules)
    if not store.read_only:
        place(store)
        return stored_result(store, rules)
    return find_groups(store, rules)
