"""Is this cover already in the store?  Same bytes, or near copies under the rules: one uploaded or
given image (`check`, the page).  What an ingest run added is reported from the stored groups
(`stored.new_album_duplicates`, `--report-duplicates`)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coversearch.dedupe import text_veto
from coversearch.dedupe.candidates import CANDIDATE_K
from coversearch.dedupe.rules import Rule
from coversearch.dedupe.verify import KeypointCache, confirmed, same_pictures, uninformative, uninformative_ids
from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.base import FeatureExtractor, extract_images
from coversearch.features.keypoints import keypoints
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.store import Store

CHECK_K = 10  # stored neighbours looked at per rule when checking one image


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
                    cache, query_keypoints = KeypointCache(store), _described(store, rgb)
                if not same_pictures(query_keypoints, cache.get(hit.album_id)):
                    continue
            elif not rule.accepts(hit.distance):
                if rank >= CANDIDATE_K or hit.album_id == exact_id:
                    continue
                if cache is None:
                    cache, query_keypoints = KeypointCache(store), _described(store, rgb)
                if not confirmed(query_keypoints, cache.get(hit.album_id)):
                    continue
            match = found.setdefault(hit.album_id, DuplicateMatch(hit.album_id, {}, hit.genres, hit.path))
            match.distances[rule.feature] = rule.rounded(hit.distance)
    if exact_id is not None:
        album = store.albums([exact_id]).get(exact_id, {})
        match = found.setdefault(exact_id, DuplicateMatch(exact_id, {}, list(album.get("genres") or []), album.get("path")))
        match.exact = True
    first = rules[0].feature if rules else ""
    matches = sorted(found.values(), key=lambda m: (not m.exact, m.distances.get(first, float("inf")), m.album_id))
    verdict = EXACT if exact_id is not None else NEAR if matches else NEW
    return DuplicateCheck(label or str(image), verdict, [r.label for r in rules], matches, notes)


def _described(store: Store, rgb: np.ndarray):
    """The query's keypoints (mirrored too) and, when the store holds text, its text (for the text veto)."""
    found = keypoints(rgb, mirrored=True)
    found.text = text_veto.read_text(store, rgb)
    return found
