"""Near-duplicate covers: the store's duplicate groups (`dedupe`) and "is this cover already here?".

Rules (a feature and its threshold; see ``coversearch.index.duplicates``) decide what counts as a
near-duplicate.  By default a pair counts when its pHash is within the calibrated Hamming distance
*or* its vgg16 vectors are within the calibrated cosine distance (each rule only when the store
holds that feature).  ``find_groups`` returns each group with its members, each member's distance
to the group's representative (its largest image; the lowest album id among equals) and the
pairs that joined it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from coversearch.errors import CoverSearchError, FeatureError, ImageError
from coversearch.features.base import FeatureExtractor, extract_images
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import FEATURE_NAMES
from coversearch import metrics
from coversearch.index.duplicates import (
    CANDIDATE_K,
    DEFAULT_RULE_FEATURES,
    KeypointCache,
    Rule,
    confirmed,
    connected_components,
    make_rule,
    same_pictures,
    store_near_pairs,
    uninformative,
    uninformative_ids,
)
from coversearch.store import Store

CHECK_K = 10  # stored neighbours looked at per rule when checking one image


# -- rules -----------------------------------------------------------------------------------------
def parse_rules(store: Store, features: Sequence[str] | None, thresholds: Sequence[str] | None) -> list[Rule]:
    """Rules from ``--feature`` names and ``--threshold`` values (``T`` for one feature, or ``F=T`` each).

    With no feature named: the default rule's features the store holds (at least one is needed).
    """
    held = {fs.name: fs for fs in store.feature_sets()}
    if not held and not store.album_count():
        raise CoverSearchError(f"the store {store.path} is empty; run `coversearch ingest` first")
    if features:
        for name in features:
            if name not in FEATURE_NAMES:
                raise FeatureError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
        names = list(dict.fromkeys(features))
    else:
        names = [name for name in DEFAULT_RULE_FEATURES if name in held]
        if not names:
            raise FeatureError(
                f"the store has none of the near-duplicate features ({', '.join(DEFAULT_RULE_FEATURES)}); "
                "run `coversearch ingest ROOT --features phash` (it computes only what is missing)"
            )
    given = _parse_thresholds(thresholds or [], names)
    rules = []
    for name in names:
        fs = store.feature_set(name)  # a clear error when the store lacks it
        rules.append(make_rule(name, given.get(name), fs.dim))
    return rules


def _parse_thresholds(values: Sequence[str], names: list[str]) -> dict[str, float]:
    given: dict[str, float] = {}
    for value in values:
        feature, _, number = str(value).rpartition("=")
        if not feature:
            if len(names) != 1:
                raise CoverSearchError(
                    f"with several features ({', '.join(names)}) give thresholds as FEATURE=T, e.g. --threshold phash=8"
                )
            feature = names[0]
        if feature not in names:
            raise CoverSearchError(f"threshold for {feature!r}, which is not among the features used ({', '.join(names)})")
        try:
            given[feature] = float(number)
        except ValueError:
            raise CoverSearchError(f"threshold {number!r} for {feature} is not a number") from None
    return given


# -- groups ----------------------------------------------------------------------------------------
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
    a = np.concatenate([found.a for _, found in pair_lists])
    b = np.concatenate([found.b for _, found in pair_lists])
    components = connected_components(np.fromiter(searched, dtype=np.int64), a, b)
    grouped = np.concatenate(components) if components else np.zeros(0, dtype=np.int64)
    albums = store.albums(grouped.tolist()) if len(grouped) else {}
    group_of = {int(album): g for g, members in enumerate(components) for album in members}
    pairs_by_group: dict[int, list[tuple[int, int, str, float]]] = {}
    for rule, found in pair_lists:
        for x, y, d in zip(found.a.tolist(), found.b.tolist(), found.distances.tolist()):
            pairs_by_group.setdefault(group_of[x], []).append((x, y, rule.feature, _rounded(d, rule)))
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
    )


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
            out[m][rule.feature] = _rounded(value, rule)
    return out


# -- "is this cover already here?" -----------------------------------------------------------------
EXACT, NEAR, NEW = "exact-duplicate", "near-duplicate", "new"


@dataclass
class DuplicateMatch:
    album_id: int
    distances: dict[str, float]  # feature -> distance, for the rules it met
    genres: list[str]
    path: str | None
    exact: bool = False  # the same bytes


@dataclass
class DuplicateCheck:
    query: str
    verdict: str  # EXACT, NEAR or NEW
    rules: list[str]
    matches: list[DuplicateMatch]  # exact match first, then by distance under the first rule
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        if self.verdict == NEW:
            return f"new: no stored album within {' or '.join(self.rules)}"
        first = self.matches[0]
        what = "the same bytes as" if self.verdict == EXACT else "a near-duplicate of"
        more = f" (and {len(self.matches) - 1} more)" if len(self.matches) > 1 else ""
        return f"{self.verdict}: {what} album {first.album_id} ({first.path}){more}"


def check_image(
    store: Store,
    image: str | os.PathLike,
    rules: Sequence[Rule],
    *,
    index_dir: str | os.PathLike | None = None,
    vgg16_weights: str | os.PathLike | None = None,
    extractors: dict[str, FeatureExtractor] | None = None,
    searchers: dict[str, Any] | None = None,
    vectors: dict[str, np.ndarray] | None = None,
    data: bytes | None = None,
    rgb: np.ndarray | None = None,
    label: str | None = None,
) -> DuplicateCheck:
    """Whether ``image`` (a file, or its ``data``) is already in the store: same bytes, or near copies.

    ``extractors`` lends already-loaded extractors (the web page's VGG16) and ``searchers``
    already-open ``SimilarSearcher`` objects, by feature name; ``vectors`` the image's vectors
    already computed (the web page's query vector), which are then used as they are; ``rgb`` the
    image already decoded from ``data`` (the web page's upload), so it is not decoded again.
    """
    from coversearch.query.similar import SimilarSearcher

    if data is None:
        if not Path(image).is_file():
            raise CoverSearchError(f"cannot check {image}: no such file")
        data = read_bytes(image)
    if rgb is None:
        try:
            rgb = decode_image(data).rgb
        except ImageError as exc:
            raise CoverSearchError(f"cannot check {label or image}: {exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    found: dict[int, DuplicateMatch] = {}
    exact_id = store.album_id_for_sha256(sha)
    notes: list[str] = []
    cache, query_keypoints = None, None
    for rule in rules:
        searcher = (searchers or {}).get(rule.feature)
        if searcher is None or searcher.index.metric != rule.metric:
            searcher = SimilarSearcher.open(store, feature=rule.feature, index_dir=index_dir, metric=rule.metric)
        notes.extend(n for n in searcher.notes if "exact search" not in n)  # exact search is the norm here
        if extractors and rule.feature in extractors:
            searcher.use_extractor(extractors[rule.feature])
        if vectors is not None and rule.feature in vectors:
            vector = vectors[rule.feature]
        else:
            vector = extract_images(searcher.extractor(vgg16_weights=vgg16_weights), [rgb])[0]
        result = searcher.search_vector(vector, min(CHECK_K, len(searcher.index)), label=str(image))
        close = [hit for hit in result.hits if hit.distance <= rule.threshold + 1e-9]
        plain = uninformative_ids(store, rule, [hit.album_id for hit in close])
        if uninformative(rule, np.asarray(vector).reshape(1, -1))[0]:
            plain |= {hit.album_id for hit in close}
        for rank, hit in enumerate(result.hits):
            if hit.distance > rule.threshold + 1e-9:
                continue
            if hit.album_id in plain:  # a hash that says nothing: the pictures themselves decide
                if cache is None:
                    from coversearch.features.keypoints import keypoints

                    cache, query_keypoints = KeypointCache(store), keypoints(rgb, mirrored=True)
                if not same_pictures(query_keypoints, cache.get(hit.album_id)):
                    continue
            elif not rule.accepts(hit.distance):
                if rank >= CANDIDATE_K or hit.album_id == exact_id:
                    continue
                if cache is None:
                    from coversearch.features.keypoints import keypoints

                    cache, query_keypoints = KeypointCache(store), keypoints(rgb, mirrored=True)
                if not confirmed(query_keypoints, cache.get(hit.album_id)):
                    continue
            match = found.setdefault(hit.album_id, DuplicateMatch(hit.album_id, {}, hit.genres, hit.path))
            match.distances[rule.feature] = _rounded(hit.distance, rule)
    if exact_id is not None:
        album = store.albums([exact_id]).get(exact_id, {})
        match = found.setdefault(exact_id, DuplicateMatch(exact_id, {}, list(album.get("genres") or []), album.get("path")))
        match.exact = True
    first = rules[0].feature if rules else ""
    matches = sorted(found.values(), key=lambda m: (not m.exact, m.distances.get(first, float("inf")), m.album_id))
    verdict = EXACT if exact_id is not None else NEAR if matches else NEW
    return DuplicateCheck(label or str(image), verdict, [r.label for r in rules], matches, notes)


@dataclass
class NewDuplicate:
    album_id: int  # the newly added album
    path: str | None
    duplicate_of: int  # the album already stored
    duplicate_path: str | None
    feature: str
    distance: float


def duplicates_of_new_albums(
    store: Store, rules: Sequence[Rule], new_ids: np.ndarray, *, index_dir=None
) -> list[NewDuplicate]:
    """Albums in ``new_ids`` that nearly duplicate an album stored before them (not another new one)."""
    from coversearch.index.duplicates import open_dedupe_index

    new_ids = np.asarray(new_ids, dtype=np.int64)
    is_new = set(new_ids.tolist())
    best: dict[tuple[int, int], tuple[str, float]] = {}
    cache = KeypointCache(store)
    for rule in rules:
        ids, vecs = store.load_embeddings(store.feature_set(rule.feature), new_ids)
        if len(ids) == 0:
            continue
        index, _ = open_dedupe_index(store, rule.feature, rule.metric, index_dir)
        k = min(CHECK_K + 1, len(index))
        nn_ids, nn_dist = index.batch_search(vecs, k)
        plain = uninformative_ids(store, rule, np.concatenate([ids, nn_ids[nn_ids >= 0]]))
        for row, album_id in enumerate(ids.tolist()):
            for rank, (other, d) in enumerate(zip(nn_ids[row].tolist(), nn_dist[row].tolist())):
                if other < 0 or other == album_id or d > rule.threshold + 1e-9 or other in is_new or (album_id, other) in best:
                    continue
                if album_id in plain or other in plain:  # a hash that says nothing: the pictures themselves decide
                    if not same_pictures(cache.get(album_id), cache.get(other)):
                        continue
                elif not rule.accepts(d) and (rank > CANDIDATE_K or not confirmed(cache.get(album_id), cache.get(other))):
                    continue
                best[(album_id, other)] = (rule.feature, _rounded(d, rule))
    albums = store.albums(sorted({x for pair in best for x in pair})) if best else {}
    return [
        NewDuplicate(a, albums.get(a, {}).get("path"), b, albums.get(b, {}).get("path"), feature, d)
        for (a, b), (feature, d) in sorted(best.items())
    ]
