"""Feature matrices and genre labels from the store, for training, evaluation and queries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.features.text import TEXT_VECTOR_DIM, record_plain, text_ngram_counts
from coversearch.store import FeatureSet, Store
from coversearch.store.rows import TEXT_KIND


@dataclass
class LabelledAlbums:
    album_ids: np.ndarray  # (n,)
    X: np.ndarray  # (n, sum of dims): features concatenated in the model's order
    genres: list[tuple[str, ...]]  # every genre of each album

    def expanded(self) -> tuple[np.ndarray, np.ndarray]:
        """One training row per (album, genre): an album filed under two genres teaches both."""
        rows = [i for i, gs in enumerate(self.genres) for _ in gs]
        labels = [g for gs in self.genres for g in gs]
        return self.X[rows], np.array(labels)

    def primary(self) -> np.ndarray:
        """The first genre (alphabetically) of each album: for stratification and confusion rows."""
        return np.array([gs[0] for gs in self.genres])


def feature_sets_for(store: Store, names: list[str]) -> list[FeatureSet]:
    held = {fs.name for fs in store.feature_sets(kind=None)}
    if "text" in names and "text" not in held:  # the text member asked for on a store that never read its covers
        others = [n for n in names if n not in held and n != "text"]
        raise CoverSearchError(
            "this model reads the words printed on the covers, and the store has no text: run "
            f"`coversearch ingest ROOT --features {','.join([*others, 'text'])}` first "
            "(`coversearch train` with no options trains the default without its text member)"
        )
    return [store.feature_set(name) for name in names]


def is_text(fs) -> bool:
    """A text feature set, or a model's reference to one (both have ``kind``)."""
    return fs.kind == TEXT_KIND


def feature_width(fs) -> int:
    """The columns a feature set takes in a model's matrix: a text set's are its hashed n-gram counts."""
    return TEXT_VECTOR_DIM if is_text(fs) else fs.dim


def stored_matrix(store: Store, fs: FeatureSet, album_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """(album ids (n,), rows (n, feature_width)) of the albums among ``album_ids`` that have the set,
    ordered by album id: a vector set's vectors, a text set's n-gram counts (all zero: no text read)."""
    if not is_text(fs):
        return store.load_embeddings(fs, album_ids=album_ids)
    rows = store.text_rows(fs, album_ids)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, text_ngram_counts([r[2] for r in rows])


def query_matrix(fs, outputs) -> np.ndarray:
    """What a feature's extractor gave for query images, as the model's matrix rows (see ``stored_matrix``)."""
    if is_text(fs):
        return text_ngram_counts([record_plain(r) for r in outputs])
    return np.atleast_2d(outputs)


def load_labelled(store: Store, feature_sets: list[FeatureSet], album_ids: np.ndarray) -> LabelledAlbums:
    """Albums among ``album_ids`` that have every feature set, their concatenated vectors and genres."""
    blocks = []
    keep = np.asarray(album_ids, dtype=np.int64)
    for fs in feature_sets:
        ids, vectors = stored_matrix(store, fs, keep)
        keep = np.intersect1d(keep, ids)
        blocks.append((ids, vectors))
    if len(keep) == 0:
        return LabelledAlbums(keep, np.zeros((0, sum(feature_width(fs) for fs in feature_sets)), np.float32), [])
    columns = [vectors[np.searchsorted(ids, keep)] for ids, vectors in blocks]
    genres = store.genres_by_album(keep)
    return LabelledAlbums(keep, np.hstack(columns).astype(np.float32), [tuple(genres.get(int(a), ())) for a in keep])


def require_rows(data: LabelledAlbums, side: str) -> None:
    if len(data.album_ids) == 0:
        raise CoverSearchError(f"the {side} split is empty: ingest more covers (with the model's features) first")
