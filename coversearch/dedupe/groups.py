"""Near-duplicate groups of the store (`dedupe`): pairs under the rules, joined into groups.

Rules (a feature and its threshold; ``coversearch.dedupe.rules``) decide what counts as a
near-duplicate.  By default a pair counts when its pHash is within the calibrated Hamming distance
*or* its vgg16 vectors are within the calibrated cosine distance (each rule only when the store
holds that feature).  Groups are the connected components of that relation (union-find), so "A is
a copy of B and B of C" puts A, B and C in one group.  ``find_groups`` returns each group with its
members, each member's distance to the group's representative (its largest image; the lowest album
id among equals) and the pairs that joined it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from coversearch.dedupe.candidates import Advance, positions_of, near_pairs, open_dedupe_index
from coversearch.dedupe.rules import Rule
from coversearch.dedupe.verify import KeypointCache, uninformative, verify_pairs
from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.store import Store


# -- groups ----------------------------------------------------------------------------------------
def connected_components(ids: Sequence[int], a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Groups of two or more ids joined by the pairs (a[i], b[i]), largest first (then by smallest id)."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    position = positions_of(ids)
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


# -- groups described -----------------------------------------------------------------------------
@dataclass
class GroupMember:
    album_id: int
    distances: dict[str, float]  # feature -> distance to the representative
    width: int | None
    height: int | None
    genres: list[str]
    path: str | None
    sha256: str | None = None


@dataclass
class DuplicateGroup:
    group: int  # 1 = largest
    representative: int  # album id
    members: list[GroupMember]  # the representative first
    pairs: list[tuple[int, int, str, float]]  # (a, b, feature, distance) that joined the group


@dataclass
class DedupeResult:
    rules: list[str]
    genre: str | None
    albums: int  # albums searched
    pairs: int
    searched_with: dict[str, str]
    seconds: float
    groups: list[DuplicateGroup] = field(default_factory=list)
    verified_pairs: int = 0  # candidate pairs checked by their keypoints (confirmed or not)
    unverifiable_albums: int = 0  # albums whose file could not be read for that
    decoded_albums: int = 0  # albums verified from their file: the store holds no keypoints for them

    @property
    def albums_in_groups(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups_found"] = len(self.groups)
        data["albums_in_groups"] = self.albums_in_groups
        for group in data["groups"]:
            group["pairs"] = [{"a": a, "b": b, "feature": f, "distance": d} for a, b, f, d in group["pairs"]]
        return data


def genre_album_ids(store: Store, genre: str) -> np.ndarray:
    return store.album_ids_of_known_genre(genre)


def find_groups(
    store: Store,
    rules: Sequence[Rule],
    *,
    genre: str | None = None,
    index_dir: str | os.PathLike | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> DedupeResult:
    """Near-duplicate groups among the store's albums (of ``genre``), with members and distances.

    ``progress(description, total)`` returns an ``advance(n)`` callback (one bar per rule).
    """
    started = time.perf_counter()
    verified = 0
    album_ids = genre_album_ids(store, genre) if genre is not None else None
    pair_lists, searched_with, searched = [], {}, set()
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cache = KeypointCache(store)
    for rule in rules:
        total = len(album_ids) if album_ids is not None else store.embedding_count(store.feature_set(rule.feature))
        advance = progress(f"dedupe {rule.feature}", total) if progress is not None else None
        found = store_near_pairs(store, rule, album_ids=album_ids, index_dir=index_dir, advance=advance, cache=cache)
        verified += found.verified
        vectors[rule.feature] = (found.ids, found.vectors)
        searched.update(found.ids.tolist())
        searched_with[rule.feature] = found.searched_with
        pair_lists.append((rule, found))
    if not searched:
        raise CoverSearchError(
            "no album to compare: the store has no "
            + " or ".join(r.feature for r in rules)
            + " vectors" + (f" for genre {genre!r}" if genre else "")
        )
    pairs = [(rule, found.a, found.b, found.distances) for rule, found in pair_lists]
    groups = describe_groups(store, rules, pairs, np.fromiter(searched, dtype=np.int64), vectors)
    a = np.concatenate([found.a for _, found in pair_lists])
    return DedupeResult(
        rules=[r.label for r in rules],
        genre=genre,
        albums=len(searched),
        pairs=int(len(a)),
        searched_with=searched_with,
        seconds=round(time.perf_counter() - started, 3),
        groups=groups,
        verified_pairs=verified,
        unverifiable_albums=cache.unreadable,
        decoded_albums=cache.decoded,
    )


def describe_groups(
    store: Store,
    rules: Sequence[Rule],
    pairs: Sequence[tuple[Rule, np.ndarray, np.ndarray, np.ndarray]],
    searched: np.ndarray,
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[DuplicateGroup]:
    """The groups that ``pairs`` (per rule: a, b, distance) make among ``searched``, largest first,
    each with its representative, members and joining pairs.  ``vectors`` (feature -> ids, vectors)
    gives the distances to each representative; without it they are read for the members."""
    a = np.concatenate([x for _, x, _, _ in pairs]) if pairs else np.zeros(0, np.int64)
    b = np.concatenate([y for _, _, y, _ in pairs]) if pairs else np.zeros(0, np.int64)
    components = connected_components(searched, a, b)
    grouped = np.concatenate(components) if components else np.zeros(0, dtype=np.int64)
    albums = store.albums(grouped.tolist()) if len(grouped) else {}
    if vectors is None:
        vectors = {r.feature: store.load_embeddings(store.feature_set(r.feature), grouped) for r in rules}
    group_of = {int(album): g for g, members in enumerate(components) for album in members}
    pairs_by_group: dict[int, list[tuple[int, int, str, float]]] = {}
    for rule, xs, ys, ds in pairs:
        for x, y, d in zip(xs.tolist(), ys.tolist(), ds.tolist()):
            pairs_by_group.setdefault(group_of[x], []).append((x, y, rule.feature, rule.rounded(d)))
    groups = []
    for g, members in enumerate(components):
        representative = max(members.tolist(), key=lambda m: (_pixels(albums.get(m)), -m))
        ordered = [representative] + sorted(m for m in members.tolist() if m != representative)
        distances = _distances_to(representative, ordered, rules, vectors)
        groups.append(
            DuplicateGroup(
                group=g + 1,
                representative=representative,
                members=[
                    GroupMember(
                        album_id=m,
                        distances=distances[m],
                        width=albums.get(m, {}).get("width"),
                        height=albums.get(m, {}).get("height"),
                        genres=list(albums.get(m, {}).get("genres") or []),
                        path=albums.get(m, {}).get("path"),
                        sha256=albums.get(m, {}).get("sha256"),
                    )
                    for m in ordered
                ],
                pairs=sorted(pairs_by_group.get(g, [])),
            )
        )
    return groups


def _pixels(album: dict | None) -> int:
    if not album or album.get("width") is None or album.get("height") is None:
        return 0
    return int(album["width"]) * int(album["height"])


def _rounded(distance: float, rule: Rule) -> float:
    return int(distance) if rule.metric == metrics.HAMMING else round(float(distance), 5)


def _distances_to(representative: int, members: list[int], rules, vectors) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {m: {} for m in members}
    for rule in rules:
        ids, vecs = vectors[rule.feature]
        rows = np.flatnonzero(np.isin(ids, members))
        lookup = {int(ids[r]): r for r in rows}
        if representative not in lookup:
            continue
        present = [m for m in members if m in lookup]
        d = metrics.pair_distances(
            np.repeat(vecs[[lookup[representative]]], len(present), axis=0), vecs[[lookup[m] for m in present]], rule.metric
        )
        for m, value in zip(present, d.tolist()):
            out[m][rule.feature] = rule.rounded(value)
    return out


