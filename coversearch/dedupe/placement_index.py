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
DELTA_SHARE of it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coversearch import metrics
from coversearch.fsutil import staged_folder, write_atomic
from coversearch.index.base import VectorIndex

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
    index: VectorIndex
    added: int  # albums added to the saved index now
    removed: int
    rebuilt: str | None  # why it was built from the store's vectors (None: read from disk)


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
        index = cls(metric, fs.dim).fit(vectors, ids) if len(ids) else cls(metric, fs.dim)
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
    index = _index_class(metric)(metric, fs.dim).fit(vectors, ids)
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
    index = cls.load(home / "base", metric=metric, dim=fs.dim, build_params={}, query_params={})
    if len(index.ids) != state["base_count"]:
        return None, "saved index incomplete"
    if (home / DELTA).is_file():
        with np.load(home / DELTA, allow_pickle=False) as delta:
            removed, added, vectors = delta["removed"], delta["added"], delta["vectors"]
        if len(removed):
            index.remove(removed)
        if len(added):
            index.add(vectors, added)
    return index, None


def _write_whole(home: Path, index: VectorIndex, fs, metric: str) -> None:
    with staged_folder(home.parent, home.name) as staging:
        (staging / "base").mkdir()
        index.save(staging / "base")
        (staging / STATE).write_text(json.dumps(_state(fs, metric, len(index.ids))))


def _record_changes(home: Path, index: VectorIndex, fs, metric: str, new: np.ndarray, new_vectors: np.ndarray, gone: np.ndarray) -> None:
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

