"""Feature matrices and genre labels from the store, for training, evaluation and queries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.store import FeatureSet, Store


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
    return [store.feature_set(name) for name in names]


def load_labelled(store: Store, feature_sets: list[FeatureSet], album_ids: np.ndarray) -> LabelledAlbums:
    """Albums among ``album_ids`` that have every feature set, their concatenated vectors and genres."""
    blocks = []
    keep = np.asarray(album_ids, dtype=np.int64)
    for fs in feature_sets:
        ids, vectors = store.load_embeddings(fs, album_ids=keep)
        keep = np.intersect1d(keep, ids)
        blocks.append((ids, vectors))
    if len(keep) == 0:
        return LabelledAlbums(keep, np.zeros((0, sum(fs.dim for fs in feature_sets)), np.float32), [])
    columns = [vectors[np.searchsorted(ids, keep)] for ids, vectors in blocks]
    genres = store.genres_by_album(keep)
    return LabelledAlbums(keep, np.hstack(columns).astype(np.float32), [tuple(genres.get(int(a), ())) for a in keep])


def require_rows(data: LabelledAlbums, side: str) -> None:
    if len(data.album_ids) == 0:
        raise CoverSearchError(f"the {side} split is empty: ingest more covers (with the model's features) first")
