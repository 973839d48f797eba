"""Find the covers nearest to a query image (or to a stored album) in one feature space.

``SimilarSearcher.open`` picks the index (the one named, else the newest built for the feature,
else an exact FAISS scan built on the fly) and checks it against the store; its ``search_*``
methods answer queries with plain ``SimilarResult`` objects.  ``find_similar`` does both for one
query.

A query image is embedded by the same extractor as the store's feature set, and refused when the
extractor would differ from the one that made the stored vectors (another model fingerprint,
version or parameters): distances between vectors of different models mean nothing.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coversearch.errors import CoverSearchError, FeatureError, ImageError
from coversearch.features.base import FeatureExtractor, extract_images, extractor_mismatch
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import FEATURE_NAMES, get_extractor
from coversearch import metrics
from coversearch.features.registry import metric_for
from coversearch.index.base import IndexFileError, VectorIndex
from coversearch.index.catalog import indexes_for_feature, list_manifests, open_index
from coversearch.index.registry import create_index
from coversearch.index.manifest import IndexManifest
from coversearch.store import FeatureSet, Store
from coversearch.store.parquet import check_known_feature

DEFAULT_FEATURE = "vgg16"
DEFAULT_K = 10
# Collapsing near-duplicates asks the index for k plus one more per grouped album beyond the first
# of its group, which always holds k groups; but never more than this many times k (a catalogue of
# many copies asks again, four times as many, in the rare query whose neighbours are all copies).
COLLAPSE_FETCH_TIMES = 4


@dataclass(frozen=True)
class SimilarHit:
    rank: int  # 1 = nearest
    album_id: int
    distance: float  # in the result's metric: 1 - cos for cosine, L2 for euclidean
    genres: list[str]
    path: str | None
    artist: str | None = None
    title: str | None = None


@dataclass
class SimilarResult:
    query: str  # the image path, or "album <id>"
    feature: str  # feature set label, e.g. "vgg16 v1"
    metric: str
    kind: str  # the index kind that answered
    index_name: str | None  # None: exact search built on the fly
    k: int
    genre: str | None
    hits: list[SimilarHit]
    notes: list[str] = field(default_factory=list)  # things the user should know (stderr in the CLI)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["results"] = data.pop("hits")
        return data


class SimilarSearcher:
    """One feature set of one store and the index that searches it, ready for many queries."""

    def __init__(
        self,
        store: Store,
        feature_set: FeatureSet,
        index: VectorIndex,
        manifest: IndexManifest | None = None,
        notes: list[str] | None = None,
    ):
        self.store = store
        self.feature_set = feature_set
        self.index = index
        self.manifest = manifest
        self.notes = list(notes or [])
        self._extractor: FeatureExtractor | None = None
        self._held: dict[tuple[bytes, str | None], tuple[int, np.ndarray, np.ndarray]] | None = None
        self._prefetch = 0

    def for_one_request(self, prefetch: int = 0) -> "SimilarSearcher":
        """This searcher for one request: each (vector, genre) reaches the index once, for the most
        neighbours any of the request's searches needs (at least ``prefetch`` when no genre filters
        it), and a search that needs fewer takes the first of those."""
        searcher = copy.copy(self)
        searcher.notes = list(self.notes)
        searcher._held, searcher._prefetch = {}, prefetch
        return searcher

    # -- choosing the index ----------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        store: Store,
        *,
        feature: str | None = None,
        index_dir: str | os.PathLike | None = None,
        index_name: str | None = None,
        metric: str | None = None,
        refresh: bool = False,
    ) -> "SimilarSearcher":
        """Use ``index_name``, else the newest index built for ``feature`` (and ``metric``), else exact search."""
        if feature is not None:
            check_known_feature(store, feature, FEATURE_NAMES)  # imported feature sets have names of their own
        if metric is not None:
            metrics.check_metric(metric)
        index_dir = Path(index_dir) if index_dir is not None else None
        unreadable: list[str] = []
        if index_name is None and index_dir is not None:
            wanted = feature or DEFAULT_FEATURE
            candidates = indexes_for_feature(index_dir, wanted, metric)
            problems = list_manifests(index_dir)[1]
            if candidates:
                index_name = candidates[0].name
            else:
                # An unreadable folder named like this feature's indexes is most likely the one meant.
                for name, problem in problems:
                    if name.startswith(f"{wanted}-"):
                        raise IndexFileError(
                            f"index {name!r} in {index_dir} exists but is unreadable ({problem}); rebuild it with "
                            f"`coversearch index build --feature {wanted} --kind KIND --name {name}`, or remove the folder"
                        )
            unreadable = [f"index folder {name!r} in {index_dir} is unreadable and was not used: {problem}" for name, problem in problems]
        if index_name is not None:
            if index_dir is None:
                raise CoverSearchError(f"no index folder given to look for index {index_name!r} in")
            opened = open_index(store, index_dir, index_name, refresh=refresh)
            manifest = opened.manifest
            if feature is not None and feature != manifest.feature:
                raise CoverSearchError(f"index {manifest.name!r} is over {manifest.feature} vectors, not {feature}")
            if metric is not None and metric != manifest.metric:
                raise CoverSearchError(f"index {manifest.name!r} uses the {manifest.metric} metric, not {metric}")
            return cls(store, opened.feature_set, opened.index, manifest, [*opened.notes, *unreadable])
        searcher = cls.exact(store, feature or DEFAULT_FEATURE, metric, index_dir)
        searcher.notes.extend(unreadable)
        return searcher

    @classmethod
    def exact(
        cls, store: Store, feature: str, metric: str | None = None, index_dir: Path | None = None
    ) -> "SimilarSearcher":
        """Brute force over the store's vectors with a FAISS flat index built in memory now."""
        fs = store.feature_set(feature)
        metric = metric or metric_for(fs)
        ids, vectors = store.load_embeddings(fs)
        if len(ids) == 0:
            raise CoverSearchError(f"the store has no {fs.label} vectors to search; run `coversearch ingest --features {feature}`")
        index = create_index("exact", metric, fs.dim).fit(vectors, ids)
        where = f" in {index_dir}" if index_dir is not None else ""
        note = (
            f"no readable {feature} index{where}: exact search over {len(ids)} vectors "
            f"(build one with `coversearch index build --feature {feature} --kind faiss-hnsw`)"
        )
        return cls(store, fs, index, None, [note])

    # -- queries ---------------------------------------------------------------------------------
    def extractor(self, *, vgg16_weights: str | os.PathLike | None = None) -> FeatureExtractor:
        """The extractor for query images, checked against the one that made the stored vectors."""
        if self._extractor is None:
            if self.feature_set.imported:
                raise FeatureError(
                    f"the store's {self.feature_set.name!r} vectors were imported (computed outside coversearch), so a "
                    "query image cannot be embedded for them: query with a stored album instead (--album ID)"
                )
            self._extractor = get_extractor(self.feature_set.name, vgg16_weights=vgg16_weights)
            check_extractor_matches(self._extractor, self.feature_set)
        return self._extractor

    def use_extractor(self, extractor: FeatureExtractor) -> None:
        """Reuse an already-loaded extractor (e.g. a VGG16 model) for query images."""
        check_extractor_matches(extractor, self.feature_set)
        self._extractor = extractor

    def vector_for_image(self, image: str | os.PathLike, *, vgg16_weights: str | os.PathLike | None = None) -> np.ndarray:
        extractor = self.extractor(vgg16_weights=vgg16_weights)  # checked before the image is even read
        try:
            rgb = decode_image(read_bytes(image)).rgb
        except ImageError as exc:
            raise CoverSearchError(f"cannot use query image {image}: {exc}") from None
        return extract_images(extractor, [rgb])[0]

    def vector_for_pixels(self, rgb: np.ndarray, *, vgg16_weights: str | os.PathLike | None = None) -> np.ndarray:
        """The query vector of an already-decoded image (H x W x 3 uint8 RGB)."""
        return extract_images(self.extractor(vgg16_weights=vgg16_weights), [rgb])[0]

    def vector_for_album(self, album_id: int) -> np.ndarray:
        ids, vectors = self.store.load_embeddings(self.feature_set, [int(album_id)])
        if len(ids) == 0:
            if not self.store.albums([int(album_id)]):
                raise CoverSearchError(f"no album with id {album_id} in the store")
            raise CoverSearchError(f"album {album_id} has no {self.feature_set.label} vector")
        return vectors[0]

    def search_image(
        self, image: str | os.PathLike, k: int = DEFAULT_K, genre: str | None = None, *, vgg16_weights=None,
        group_of: dict[int, int] | None = None,
    ) -> SimilarResult:
        allowed = self._allowed_ids(genre, k)
        return self._search(self.vector_for_image(image, vgg16_weights=vgg16_weights), k, genre, allowed, str(image), group_of)

    def search_pixels(self, rgb: np.ndarray, k: int = DEFAULT_K, genre: str | None = None, label: str = "image", *,
                      vgg16_weights=None) -> SimilarResult:
        """Search with an image already decoded (an upload): no file, no second decode."""
        allowed = self._allowed_ids(genre, k)
        return self._search(self.vector_for_pixels(rgb, vgg16_weights=vgg16_weights), k, genre, allowed, label)

    def search_album(self, album_id: int, k: int = DEFAULT_K, genre: str | None = None, *,
                     group_of: dict[int, int] | None = None) -> SimilarResult:
        allowed = self._allowed_ids(genre, k)
        # The album itself is not excluded: its own vector is at distance 0, so it comes first.
        return self._search(self.vector_for_album(album_id), k, genre, allowed, f"album {album_id}", group_of)

    def search_vector(self, vector: np.ndarray, k: int = DEFAULT_K, genre: str | None = None, label: str = "vector", *,
                      group_of: dict[int, int] | None = None) -> SimilarResult:
        """``group_of`` (album id -> its near-duplicate group's key; ``dedupe.stored.group_map``)
        collapses the results: one cover per group, so k results are k different covers."""
        return self._search(vector, k, genre, self._allowed_ids(genre, k), label, group_of)

    # -- plumbing --------------------------------------------------------------------------------
    def _index_label(self) -> str:
        return f"index {self.manifest.name!r}" if self.manifest else "the store"

    def _allowed_ids(self, genre: str | None, k: int) -> np.ndarray | None:
        """Album ids of ``genre`` in the index (None: no filter); checks k against what is there."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise CoverSearchError(f"k must be at least 1, not {k}")
        if genre is None:
            if k > len(self.index):
                raise CoverSearchError(
                    f"k={k} is more than the {len(self.index)} {self.feature_set.name} vectors in {self._index_label()}"
                )
            return None
        of_genre = self.store.album_ids_of_known_genre(genre)
        allowed = of_genre[np.isin(of_genre, self.index.ids)]
        if k > len(allowed):
            raise CoverSearchError(
                f"k={k} is more than the {len(allowed)} albums of genre {genre!r} with {self.feature_set.name} "
                f"vectors in {self._index_label()}"
            )
        return allowed

    def _index_search(self, vector: np.ndarray, n: int, allowed: np.ndarray | None, genre: str | None):
        """(ids, distances) of the n nearest, from the index, or from this request's earlier search."""
        if self._held is None:
            found = self.index.search(vector, n, allowed)
            return found.ids, found.distances
        key = (np.asarray(vector, dtype=np.float32).tobytes(), genre)
        if key not in self._held or self._held[key][0] < n:
            asked = max(n, self._prefetch) if genre is None else n
            found = self.index.search(vector, asked, allowed)
            self._held[key] = (asked, found.ids, found.distances)
        _, ids, distances = self._held[key]
        return ids[:n], distances[:n]

    def _nearest(self, vector: np.ndarray, k: int, allowed: np.ndarray | None, genre: str | None,
                 group_of: dict[int, int] | None):
        """(ids, distances) of the k nearest; with ``group_of``, of the nearest member of each of k groups,
        from one search that over-fetches (COLLAPSE_FETCH_TIMES)."""
        if group_of is None:
            return self._index_search(vector, k, allowed, genre)
        available = len(self.index) if allowed is None else len(allowed)
        beyond_first = len(group_of) - len(set(group_of.values()))
        wanted = min(available, k + min(beyond_first, (COLLAPSE_FETCH_TIMES - 1) * k))
        while True:
            ids, distances = self._index_search(vector, wanted, allowed, genre)
            _, first = np.unique([group_of.get(int(a), int(a)) for a in ids.tolist()], return_index=True)
            first = np.sort(first)[:k]
            if len(first) == k or wanted >= available:
                return ids[first], distances[first]
            wanted = min(wanted * 4, available)

    def _search(self, vector: np.ndarray, k: int, genre: str | None, allowed: np.ndarray | None, label: str,
                group_of: dict[int, int] | None = None) -> SimilarResult:
        ids, distances = self._nearest(vector, k, allowed, genre, group_of)
        albums = self.store.albums(ids.tolist()) if len(ids) else {}
        hits = []
        for rank, (album_id, distance) in enumerate(zip(ids.tolist(), distances.tolist()), start=1):
            album = albums.get(album_id, {})
            hits.append(
                SimilarHit(
                    rank=rank,
                    album_id=album_id,
                    distance=float(distance),
                    genres=list(album.get("genres") or []),
                    path=album.get("path"),
                    artist=album.get("artist"),
                    title=album.get("title"),
                )
            )
        return SimilarResult(
            query=label,
            feature=self.feature_set.label,
            metric=self.index.metric,
            kind=self.index.kind,
            index_name=self.manifest.name if self.manifest else None,
            k=k,
            genre=genre,
            hits=hits,
            notes=list(self.notes),
        )


def check_extractor_matches(extractor: FeatureExtractor, fs: FeatureSet) -> None:
    """Refuse to embed queries with another model than the store's vectors were made with."""
    reason = extractor_mismatch(extractor, fs.name, fs.version, fs.model_fingerprint, fs.params)
    if reason:
        raise FeatureError(reason)


def find_similar(
    store: Store,
    *,
    image: str | os.PathLike | None = None,
    album_id: int | None = None,
    feature: str | None = None,
    k: int = DEFAULT_K,
    genre: str | None = None,
    index_dir: str | os.PathLike | None = None,
    index_name: str | None = None,
    metric: str | None = None,
    refresh: bool = False,
    vgg16_weights: str | os.PathLike | None = None,
    extractor: FeatureExtractor | None = None,
    collapse_duplicates: bool = False,
) -> SimilarResult:
    """The k covers nearest to ``image`` (a file) or to stored album ``album_id``; with
    ``collapse_duplicates``, one cover per near-duplicate group (the nearest)."""
    if (image is None) == (album_id is None):
        raise CoverSearchError("give a query IMAGE or --album ID (exactly one)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise CoverSearchError(f"k must be at least 1, not {k}")
    if image is not None and not Path(image).is_file():
        raise CoverSearchError(f"cannot use query image {image}: no such file")
    searcher = SimilarSearcher.open(
        store, feature=feature, index_dir=index_dir, index_name=index_name, metric=metric, refresh=refresh
    )
    group_of = None
    if collapse_duplicates:
        from coversearch.dedupe.stored import group_map

        group_of = group_map(store)
    if album_id is not None:
        return searcher.search_album(album_id, k, genre, group_of=group_of)
    if extractor is not None:
        searcher.use_extractor(extractor)
    return searcher.search_image(image, k, genre, vgg16_weights=vgg16_weights, group_of=group_of)
