"""The candidate index that placing newcomers searches, kept on disk beside the store.

Placing one new cover needs its nearest stored albums under each rule's feature.  Building an exact
index over every stored vector for that (loading them all from DuckDB first) costs time and memory
in proportion to the store, for every ingest.  So each feature's exact index (the index layer's
``exact`` / ``faiss-binary`` kinds, the same search a whole placement makes) is saved in
``STORE.dedupe-index/FEATURE/`` and brought up to date when opened: the albums that gained a vector
since are added (their vectors read by id), those that lost theirs are removed.  What it holds is
checked against the store each time (the feature's version and metric, and the vectors of a few
albums), so an index left by another store or another extractor version is rebuilt, never trusted.

Small changes are appended (``delta.npz``: added vectors, removed ids) so that placing one cover
writes kilobytes, not the whole index; the index is written whole again once the changes reach
DELTA_SHARE of it.  In memory too the saved base is never changed for a placement (appending one
vector to a flat FAISS index copies all of it: seconds at a million 512-d vectors): it is opened
memory-mapped where the kind allows, and the albums added since sit in a small index of their own
(``PlacementIndex``), searched with it as one exact index.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coversearch import metrics
from coversearch.errors import CoverSearchError
from coversearch.fsutil import staged_folder, write_atomic
from coversearch.index.base import Neighbours, VectorIndex

DELTA_SHARE = 0.1  # changes held beside the saved index before it is written whole again
PROBES = 32  # albums whose stored vectors are compared with the index's on opening
STATE = "state.json"
DELTA = "delta.npz"


def folder_of(store) -> Path | None:
    """Where the store's placement indexes live (None for a store without a file)."""
    path = getattr(store, "path", None)
    if path is None or str(path) == ":memory:":
        return None
    return Path(str(path) + ".dedupe-index")


@dataclass
class Opened:
    index: "PlacementIndex"
    added: int  # albums added to the saved index now
    removed: int
    rebuilt: str | None  # why it was built from the store's vectors (None: read from disk)


class PlacementIndex:
    """A saved base index, never changed in memory, plus the albums added since (a small index of
    the same kind), less the albums removed since: searched as one exact index over them all.

    The answers are those of the base with the removals dropped and the additions appended: each
    part's exact hits, the removed ones filtered out (the base is asked for as many more hits as
    albums were removed from it), merged by distance with ties in that index's row order (the
    base's rows, then the added ones in turn).  Writing it (``save``) folds the changes into the
    base first.
    """

    def __init__(self, base: VectorIndex, removed: np.ndarray | None = None,
                 added_ids: np.ndarray | None = None, added_vectors: np.ndarray | None = None):
        self.base = base
        self.metric, self.dim, self.kind = base.metric, base.dim, base.kind
        self.supports_remove = base.supports_remove
        self._removed = np.zeros(0, np.int64)  # base albums no longer held (sorted)
        self._added_ids = np.zeros(0, np.int64)
        self._added_vectors = np.zeros((0, base.dim), np.float32)  # as the store gave them (folded into the base by save)
        self._added: VectorIndex | None = None
        self._ids: np.ndarray | None = None
        if removed is not None and len(removed):
            self.remove(removed)
        if added_ids is not None and len(added_ids):
            self.add(added_vectors, added_ids)

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            kept = self.base.ids if not len(self._removed) else self.base.ids[~np.isin(self.base.ids, self._removed)]
            self._ids = np.concatenate([kept, self._added_ids]) if len(self._added_ids) else kept
        return self._ids

    def __len__(self) -> int:
        return len(self.base) - len(self._removed) + len(self._added_ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32)
        if np.isin(ids, self.ids).any():
            raise ValueError("some ids are already in the index")
        if self._added is None:
            self._added = type(self.base)(self.metric, self.dim).fit(vectors, ids)
        else:
            self._added.add(vectors, ids)
        self._added_ids = np.concatenate([self._added_ids, ids])
        self._added_vectors = np.concatenate([self._added_vectors, vectors.reshape(len(ids), self.dim)])
        self._ids = None

    def remove(self, ids: np.ndarray) -> int:
        if not self.supports_remove:
            raise CoverSearchError(f"a {self.kind} index cannot remove vectors in place; rebuild it")
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        count = 0
        in_added = np.isin(self._added_ids, ids)
        if in_added.any():
            count += self._added.remove(self._added_ids[in_added])
            self._added_ids, self._added_vectors = self._added_ids[~in_added], self._added_vectors[~in_added]
            if not len(self._added_ids):
                self._added = None
        from_base = np.setdiff1d(ids[np.isin(ids, self.base.ids)], self._removed)
        if len(from_base):
            self._removed = np.union1d(self._removed, from_base)
            count += len(from_base)
        self._ids = None
        return count

    def holds_vectors(self, vectors: np.ndarray, ids: np.ndarray) -> bool:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32)
        in_added = np.isin(ids, self._added_ids)
        if np.isin(ids[~in_added], self._removed).any():
            return False
        if in_added.any() and not self._added.holds_vectors(vectors[in_added], ids[in_added]):
            return False
        return bool(in_added.all()) or self.base.holds_vectors(vectors[~in_added], ids[~in_added])

    def search(self, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> Neighbours:
        def one(index: VectorIndex, kk: int):
            found = index.search(vector, kk, allowed_ids)
            ids, dist = np.full((1, kk), -1, np.int64), np.full((1, kk), np.inf, np.float32)
            ids[0, : len(found)], dist[0, : len(found)] = found.ids, found.distances
            return ids, dist

        ids, dist = self._merged(one, k)
        found = ids[0] >= 0
        return Neighbours(ids[0][found], dist[0][found])

    def batch_search(self, vectors: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (nq, k), distances (nq, k)), padded with id -1 and distance inf where short."""
        return self._merged(lambda index, kk: index.batch_search(vectors, kk, allowed_ids), k)

    def _merged(self, search, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.base._check_k(k)
        ids, dist = search(self.base, max(1, min(k + len(self._removed), len(self.base))))
        if len(self._removed):
            gone = np.isin(ids, self._removed)
            ids, dist = np.where(gone, -1, ids), np.where(gone, np.float32(np.inf), dist)
        if self._added is not None:
            more_ids, more_dist = search(self._added, min(k, len(self._added)))
            ids, dist = np.concatenate([ids, more_ids], axis=1), np.concatenate([dist, more_dist], axis=1)
        # Stable: of equal distances the base's hits (in its order) come first, as appended rows would.
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        ids, dist = np.take_along_axis(ids, order, axis=1), np.take_along_axis(dist, order, axis=1).astype(np.float32)
        ids = np.where(np.isfinite(dist), ids, -1)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
        return ids, dist

    def save(self, folder: Path) -> list[str]:
        """Fold the changes into the base (copying it into memory once), then write it."""
        if len(self._removed):
            self.base.remove(self._removed)
        if len(self._added_ids):
            self.base.add(self._added_vectors, self._added_ids)
        self._removed, self._added_ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._added_vectors, self._added, self._ids = np.zeros((0, self.dim), np.float32), None, None
        return self.base.save(folder)


def _index_class(metric: str):
    from coversearch.index.exact import ExactIndex
    from coversearch.index.faiss_binary import BinaryIndex

    return BinaryIndex if metric == metrics.HAMMING else ExactIndex


def _probe_ids(ids: np.ndarray) -> np.ndarray:
    if len(ids) <= PROBES:
        return ids
    return ids[np.linspace(0, len(ids) - 1, PROBES).astype(np.int64)]


def open_placement_index(store, fs, metric: str) -> Opened:
    """The feature's placement index over every album with a vector now: the saved one brought up
    to date, or one built from the store's vectors (and saved) when there is none or it does not
    match the store (``rebuilt`` says why)."""
    cls = _index_class(metric)
    ids = store.embedding_album_ids(fs)
    folder = folder_of(store)
    home = None if folder is None else folder / fs.name
    index, why = None, "no saved index"
    if home is not None and (home / STATE).is_file():
        try:
            index, why = _read(home, cls, fs, metric)
        except (OSError, ValueError, KeyError) as exc:  # unreadable or half-written: rebuild
            index, why = None, f"saved index unreadable ({exc})"
    if index is None:
        _, vectors = store.load_embeddings(fs)
        index = PlacementIndex(cls(metric, fs.dim).fit(vectors, ids) if len(ids) else cls(metric, fs.dim))
        if home is not None and not store.read_only and len(ids):
            _write_whole(home, index, fs, metric)
        return Opened(index, int(len(ids)), 0, why)
    held = np.sort(index.ids)
    gone = np.setdiff1d(held, ids, assume_unique=True)
    new = np.setdiff1d(ids, held, assume_unique=True)
    # The saved vectors must be the store's: a few albums' compared (another store's index, or
    # vectors re-extracted under the same version, would differ).
    probe = np.setdiff1d(_probe_ids(held), gone, assume_unique=True)
    if len(probe):
        probe_ids, stored = store.load_embeddings(fs, probe)
        if not index.holds_vectors(stored, probe_ids) if index.supports_remove else not _codes_match(index, stored, probe_ids):
            return _rebuild(store, fs, metric, home, "saved vectors differ from the store's")
    if len(gone):
        if not index.supports_remove:
            return _rebuild(store, fs, metric, home, f"{len(gone)} albums removed and the {index.kind} index cannot drop them")
        index.remove(gone)
    new_vectors = np.zeros((0, fs.dim), np.float32)
    if len(new):
        new, new_vectors = store.load_embeddings(fs, new)
        index.add(new_vectors, new)
    if home is not None and not store.read_only and (len(gone) or len(new)):
        _record_changes(home, index, fs, metric, new, new_vectors, gone)
    return Opened(index, int(len(new)), int(len(gone)), None)


def _rebuild(store, fs, metric, home, why: str) -> Opened:
    ids, vectors = store.load_embeddings(fs)
    index = PlacementIndex(_index_class(metric)(metric, fs.dim).fit(vectors, ids))
    if home is not None and not store.read_only:
        _write_whole(home, index, fs, metric)
    return Opened(index, int(len(ids)), 0, why)


def _codes_match(index, vectors: np.ndarray, ids: np.ndarray) -> bool:
    """For a kind that cannot read its vectors back (binary codes): each probed album's own code is
    at distance 0 from it in the index."""
    found, distances = index.batch_search(vectors, min(8, len(index)), ids)  # equal codes (twins) share distance 0
    return all(bool(np.any((row == a) & (dist == 0))) for a, row, dist in zip(ids.tolist(), found, distances))


def _state(fs, metric: str, base_count: int) -> dict:
    return {"feature": fs.name, "version": int(fs.version), "metric": metric, "dim": int(fs.dim), "base_count": int(base_count)}


def _read(home: Path, cls, fs, metric: str):
    state = json.loads((home / STATE).read_text())
    expected = _state(fs, metric, state.get("base_count", -1))
    if state != expected:
        return None, f"saved for {state.get('feature')} version {state.get('version')} ({state.get('metric')}), not version {fs.version}"
    base = cls.load(home / "base", metric=metric, dim=fs.dim, build_params={}, query_params={}, mapped=True)
    if len(base.ids) != state["base_count"]:
        return None, "saved index incomplete"
    if not (home / DELTA).is_file():
        return PlacementIndex(base), None
    with np.load(home / DELTA, allow_pickle=False) as delta:
        removed, added, vectors = delta["removed"], delta["added"], delta["vectors"]
    return PlacementIndex(base, removed, added, vectors), None


def _write_whole(home: Path, index: PlacementIndex, fs, metric: str) -> None:
    with staged_folder(home.parent, home.name) as staging:
        (staging / "base").mkdir()
        index.save(staging / "base")
        (staging / STATE).write_text(json.dumps(_state(fs, metric, len(index.ids))))


def _record_changes(home: Path, index: PlacementIndex, fs, metric: str, new: np.ndarray, new_vectors: np.ndarray, gone: np.ndarray) -> None:
    """Append the changes (the store's vectors of the ``new`` albums, as a rebuild would read them)
    to the saved delta, or write the index whole once they are DELTA_SHARE of it."""
    state = json.loads((home / STATE).read_text())
    removed, added, vectors = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, fs.dim), np.float32)
    if (home / DELTA).is_file():
        with np.load(home / DELTA, allow_pickle=False) as delta:
            removed, added, vectors = delta["removed"], delta["added"], delta["vectors"]
    # An album added since the base and removed again leaves the delta; one of the base is listed removed.
    came_back = np.isin(added, gone)
    removed = np.union1d(removed, gone[~np.isin(gone, added)])
    added, vectors = added[~came_back], vectors[~came_back]
    if len(new):
        added = np.concatenate([added, new])
        vectors = np.concatenate([vectors, np.asarray(new_vectors, dtype=np.float32)])
    if len(added) + len(removed) > DELTA_SHARE * max(state["base_count"], 1) or not index.supports_remove:
        _write_whole(home, index, fs, metric)
        return
    buffer = io.BytesIO()
    np.savez(buffer, removed=removed.astype(np.int64), added=added.astype(np.int64), vectors=vectors.astype(np.float32))
    write_atomic(home / DELTA, buffer.getvalue())

