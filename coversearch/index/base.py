"""The one interface every index kind implements.

Shaped after ann-benchmarks' small algorithm interface: ``fit`` (build), ``search`` (one query),
``batch_search``, ``set_query_arguments`` and ``memory_bytes``, plus what a stored index needs:
``add``, ``save`` and ``load``.  An index returns album ids, not row numbers: it keeps the
row -> album id mapping (``ids``) itself, and every kind reports distances the same way for the
same metric (see ``metrics.py``).

A kind is one module with one subclass, registered with one line in ``registry.py``.  Subclasses work on rows
(0..n-1, in insertion order) and prepared vectors; this class does the id mapping, the id filter,
input checks, thread counts and the ids file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.index.params import IndexParamError, kind_defaults, split_params
from coversearch.index.threads import all_threads, single_query_threads

IDS_FILE = "ids.npy"


class IndexFileError(CoverSearchError):
    """An index on disk is missing, corrupt, truncated, or does not match its manifest."""


@dataclass(frozen=True)
class Neighbours:
    """One query's answer, nearest first (at most k; fewer when fewer vectors pass the filter)."""

    ids: np.ndarray  # int64 album ids
    distances: np.ndarray  # float32, in the index's metric (see metrics.py)

    def __len__(self) -> int:
        return len(self.ids)


class VectorIndex(ABC):
    kind: ClassVar[str]
    exact: ClassVar[bool] = False  # True when results are the true nearest neighbours
    supports_add: ClassVar[bool] = True  # whether vectors can be added after the build
    supports_remove: ClassVar[bool] = False  # whether vectors can be removed in place (and read back to check the rest)
    native_file: ClassVar[str | None] = None  # the kind's own file inside the index folder
    # Whether ``load(..., mapped=True)`` can map the kind's file instead of reading it into memory.
    can_map: ClassVar[bool] = False
    supported_metrics: ClassVar[tuple[str, ...]] = metrics.METRICS
    # True for a kind that searches the store's own table (duckdb): it has no vectors of its own,
    # must be bound to an open store (``bind``) before searching, and cannot index other rows.
    searches_store: ClassVar[bool] = False
    # Parameters of a kind that has no section in defaults.toml (one registered from outside).
    build_defaults: ClassVar[Mapping[str, Any]] = {}
    query_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        metric: str,
        dim: int,
        build_params: Mapping[str, Any] | None = None,
        query_params: Mapping[str, Any] | None = None,
    ):
        self.metric = metrics.check_metric(metric)
        if self.metric not in self.supported_metrics:
            raise IndexParamError(f"the {self.kind} kind searches under {', '.join(self.supported_metrics)}, not {self.metric}")
        self.dim = int(dim)
        defaults = kind_defaults(self.kind)
        build, query = split_params(self.kind, {**(build_params or {}), **(query_params or {})})
        self.build_params: dict[str, Any] = {**defaults.build, **build}
        self.query_params: dict[str, Any] = {**defaults.query, **query}
        self.ids = np.zeros(0, dtype=np.int64)
        self.mapped = False  # the kind's file is memory-mapped (read on demand; copied into memory before a change)
        self._check_params()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metric={self.metric!r}, dim={self.dim}, n={len(self)}, {self.build_params}, {self.query_params})"

    def __len__(self) -> int:
        return len(self.ids)

    # -- the interface ---------------------------------------------------------------------------
    def fit(self, vectors: np.ndarray, ids: np.ndarray) -> "VectorIndex":
        """Build from scratch on ``vectors`` (n, dim) labelled by album ``ids`` (n,)."""
        x, ids = self._check_vectors(vectors, ids, existing=None)
        if len(x) == 0:
            raise CoverSearchError("cannot build an index on 0 vectors")
        self.resolve_params(len(x))
        with all_threads():
            self._fit(x)
        self.ids = ids
        return self

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Append vectors to a built index (kinds with ``supports_add``)."""
        if not self.supports_add:
            raise CoverSearchError(f"a {self.kind} index cannot add vectors after it is built; rebuild it")
        x, ids = self._check_vectors(vectors, ids, existing=self.ids)
        if len(x):
            with all_threads():
                self._add(x)
            self.ids = np.concatenate([self.ids, ids])

    def bind(self, store, feature_set) -> "VectorIndex":
        """Called when the index is opened over ``store``; kinds that read the store keep it here."""
        return self

    def resolve_params(self, n: int) -> None:
        """Turn "auto" parameters into numbers for a build on ``n`` vectors, and check them all."""
        self._resolve_auto_params(n)
        self._check_params()
    def remove(self, ids: np.ndarray) -> int:
        """Drop the vectors of album ``ids`` in place (kinds with ``supports_remove``); how many were there."""
        if not self.supports_remove:
            raise CoverSearchError(f"a {self.kind} index cannot remove vectors in place; rebuild it")
        rows = np.flatnonzero(np.isin(self.ids, np.asarray(ids, dtype=np.int64)))
        if len(rows):
            self._remove_rows(rows)
            self.ids = np.delete(self.ids, rows)
        return len(rows)

    def holds_vectors(self, vectors: np.ndarray, ids: np.ndarray) -> bool:
        """Whether the index's vectors for album ``ids`` are ``vectors`` (kinds with ``supports_remove``)."""
        x, ids = self._check_vectors(vectors, ids, existing=None)
        # By arrays, not a dict of every id: a placement index holds a million albums.
        held = np.flatnonzero(np.isin(self.ids, ids))
        if len(held) != len(ids):
            return False
        held = held[np.argsort(self.ids[held])]
        rows = held[np.searchsorted(self.ids[held], ids)]
        return bool(np.allclose(self._reconstruct_rows(rows), x, rtol=0, atol=1e-6))

    def set_query_arguments(self, **query_params: Any) -> None:
        """Change query-time parameters (e.g. efSearch, nprobe, search_k) for later searches."""
        _, query = split_params(self.kind, query_params)
        if set(query) != set(query_params):
            extra = sorted(set(query_params) - set(query))
            raise IndexParamError(f"{', '.join(extra)}: build parameters of {self.kind} cannot change after the build")
        self.query_params.update(query)
        self._resolve_auto_params(len(self))
        self._check_params()

    def search(self, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> Neighbours:
        """The k nearest stored vectors to one query, optionally only among ``allowed_ids``."""
        q = self._check_queries(vector)
        if len(q) != 1:
            raise ValueError("search takes one query vector; use batch_search for several")
        with single_query_threads():
            ids, distances = self._search_ids(q, self._check_k(k), allowed_ids)
        found = ids[0] >= 0
        return Neighbours(ids[0][found], distances[0][found])

    def batch_search(
        self, vectors: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids (nq, k), distances (nq, k)), padded with id -1 and distance inf where short."""
        q = self._check_queries(vectors)
        # A batch of one is a single query: one thread (a team costs more than it saves; see threads.py).
        with single_query_threads() if len(q) == 1 else all_threads():
            return self._search_ids(q, self._check_k(k), allowed_ids)

    def save(self, folder: Path) -> list[str]:
        """Write the kind's files and the ids into ``folder``; returns the file names written."""
        folder = Path(folder)
        with open(folder / IDS_FILE, "wb") as fh:
            np.save(fh, self.ids, allow_pickle=False)
        written = [IDS_FILE]
        if self.native_file is not None:
            self._save_native(folder / self.native_file)
            written.append(self.native_file)
        return written

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        metric: str,
        dim: int,
        build_params: Mapping[str, Any],
        query_params: Mapping[str, Any],
        mapped: bool = False,
    ) -> "VectorIndex":
        """Read an index written by ``save`` (parameters come from its manifest).  ``mapped``: map
        the kind's file rather than read it (kinds with ``can_map``), so opening costs no copy of
        it; the file must then stay as it is while the index is open (folders are replaced, never
        rewritten in place)."""
        folder = Path(folder)
        index = cls(metric, dim, build_params, query_params)
        index.mapped = bool(mapped and cls.can_map)
        index.ids = load_ids(folder / IDS_FILE)
        if cls.native_file is not None:
            path = folder / cls.native_file
            if not path.is_file():
                raise IndexFileError(f"index file {path} is missing")
            index._load_native(path)
            if index._native_count() != len(index.ids):
                raise IndexFileError(
                    f"index file {path} holds {index._native_count()} vectors but {IDS_FILE} lists {len(index.ids)}"
                )
        return index

    @abstractmethod
    def memory_bytes(self) -> int:
        """About how many bytes the index holds in memory (0 when it lives elsewhere)."""

    # -- for subclasses --------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, x: np.ndarray) -> None:
        """Build on prepared vectors; row i of ``x`` is row i of the index."""

    def _add(self, x: np.ndarray) -> None:
        raise NotImplementedError

    @abstractmethod
    def _search_rows(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows (nq, k) int64 padded with -1, distances (nq, k) in the metric, padded with inf)."""

    def _remove_rows(self, rows: np.ndarray) -> None:
        """Drop these rows; the rows after them move up, as ``np.delete`` moves ``ids``."""
        raise NotImplementedError

    def _reconstruct_rows(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _save_native(self, path: Path) -> None:
        raise NotImplementedError

    def _load_native(self, path: Path) -> None:
        raise NotImplementedError

    def _native_count(self) -> int:
        return len(self.ids)

    def _check_params(self) -> None:
        """Raise ``IndexParamError`` for values out of range."""

    def _resolve_auto_params(self, n: int) -> None:
        """Turn "auto" values into numbers for ``n`` vectors."""

    # -- shared plumbing -------------------------------------------------------------------------
    def _search_ids(self, q: np.ndarray, k: int, allowed_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        allowed_rows = None
        if allowed_ids is not None:
            allowed_rows = np.flatnonzero(np.isin(self.ids, np.asarray(allowed_ids, dtype=np.int64)))
        if len(self) == 0 or (allowed_rows is not None and len(allowed_rows) == 0):
            return np.full((len(q), k), -1, dtype=np.int64), np.full((len(q), k), np.inf, dtype=np.float32)
        rows, distances = self._search_rows(q, k, allowed_rows)
        ids = np.where(rows >= 0, self.ids[np.clip(rows, 0, None)], -1)
        distances = np.where(rows >= 0, distances, np.inf).astype(np.float32)
        return ids, distances

    def _check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise CoverSearchError(f"k must be a whole number of at least 1, not {k!r}")
        return int(k)

    def _check_queries(self, vectors: np.ndarray) -> np.ndarray:
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query vectors must have {self.dim} columns, got shape {np.shape(vectors)}")
        if not np.isfinite(q).all():
            raise ValueError("query vectors contain NaN or infinity")
        return metrics.prepare(q, self.metric)

    def _check_vectors(
        self, vectors: np.ndarray, ids: np.ndarray, existing: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"vectors must be (n, {self.dim}), got {x.shape}")
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if not np.isfinite(x).all():
            raise ValueError("vectors contain NaN or infinity")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        if existing is not None and np.isin(ids, existing).any():
            raise ValueError("some ids are already in the index")
        return metrics.prepare(x, self.metric), ids.copy()


def load_ids(path: Path) -> np.ndarray:
    if not path.is_file():
        raise IndexFileError(f"ids file {path} is missing")
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFileError(f"ids file {path} is unreadable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if ids.ndim != 1 or ids.dtype != np.int64:
        raise IndexFileError(f"ids file {path} is not a 1-d int64 array")
    return ids
