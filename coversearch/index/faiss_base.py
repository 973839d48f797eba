"""What the FAISS kinds share: squared-L2 indexes over prepared vectors, filters, save and load.

Every FAISS kind indexes prepared vectors (unit rows for cosine) under ``METRIC_L2`` and labels
them with their row number, so the id filter is an ``IDSelectorBatch`` of rows passed through the
kind's ``SearchParameters``.  Approximate kinds may return fewer than k hits under a tight filter
(the graph or the probed lists run out of allowed vectors); the search is then repeated for those
queries with a wider setting (``_search_parameters(..., widen)``) and, as a last resort, answered
exactly from the vectors the index can reconstruct.

An IVF index may keep its inverted lists in a file beside ``index.faiss`` (``index.ivfdata``,
FAISS ``OnDiskInvertedLists``, memory-mapped: see ``sharded.py``).  It is read with
``IO_FLAG_ONDISK_SAME_DIR`` so the folder can be renamed into place; adding vectors to such an
index first copies it into a private folder, so the published one is never changed in place.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
from abc import abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from coversearch import metrics
from coversearch.index.base import IndexFileError, VectorIndex

IVFDATA_FILE = "index.ivfdata"  # on-disk inverted lists, beside index.faiss


def on_disk_lists(index: faiss.Index) -> faiss.OnDiskInvertedLists | None:
    """The index's inverted lists when they live in a file, else None."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


@contextmanager
def faiss_notes_to_stderr() -> Iterator[None]:
    """FAISS's on-disk lists printf notes ("resizing ...", "updating ondisk filename ...") to C's
    stdout, which would corrupt a command's --json output: send them to stderr."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


class FaissIndex(VectorIndex):
    native_file = "index.faiss"
    max_widen: int = 0  # how many times a short answer may be retried with a wider search

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.faiss_index: faiss.Index | None = None
        # On-disk lists only: the folder their file is in, and whether this object owns that
        # folder (a build or add work folder, moved into the index folder by save) or not (a
        # published index, copied before any change).
        self.lists_folder: Path | None = None
        self.lists_private = False

    # -- for subclasses --------------------------------------------------------------------------
    @abstractmethod
    def _new_faiss_index(self, n: int) -> faiss.Index:
        """An empty (untrained) FAISS index for n vectors with the build parameters."""

    @abstractmethod
    def _search_parameters(self, k: int, selector: faiss.IDSelector | None, widen: int) -> faiss.SearchParameters:
        """Query parameters; ``widen`` > 0 asks for a wider (slower, more complete) search."""

    def _expected_type(self) -> type:
        return faiss.Index

    # -- VectorIndex -----------------------------------------------------------------------------
    def _fit(self, x: np.ndarray) -> None:
        index = self._new_faiss_index(len(x))
        if not index.is_trained:
            index.train(x)
        index.add(x)
        self.faiss_index, self.mapped = index, False

    def _owned(self) -> faiss.Index:
        """The FAISS index, first copied into memory when it is mapped from its file."""
        if self.mapped:
            self.faiss_index = faiss.deserialize_index(faiss.serialize_index(self._built()))
            self.mapped = False
        return self._built()

    def _add(self, x: np.ndarray) -> None:
        self._owned()
        if on_disk_lists(self._built()) is None:
            self._built().add(x)
            return
        if not self.lists_private:
            self._private_lists_copy()
        with faiss_notes_to_stderr():
            self._built().add(x)

    def _private_lists_copy(self) -> None:
        """Re-open the index from a private copy of its files (a hidden staging folder beside the
        index, removed by the next build if this process dies), so adding leaves the original alone."""
        source = self.lists_folder
        work = Path(tempfile.mkdtemp(prefix=f".{source.name}.staging-{os.getpid()}-", dir=source.parent))
        shutil.copyfile(source / IVFDATA_FILE, work / IVFDATA_FILE)
        faiss.write_index(self._built(), str(work / self.native_file))
        with faiss_notes_to_stderr():
            self.faiss_index = faiss.read_index(str(work / self.native_file), faiss.IO_FLAG_ONDISK_SAME_DIR)
        self.lists_folder, self.lists_private = work, True

    def save(self, folder: Path) -> list[str]:
        written = super().save(folder)
        if self.lists_folder is not None:
            written.append(IVFDATA_FILE)
        return written

    def _remove_rows(self, rows: np.ndarray) -> None:
        index = self._owned()
        n = index.ntotal
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # remove_ids refuses an array direct map
        index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))
        if ivf is not None:
            # A flat index closes the gaps itself; IVF lists keep their labels (row numbers), so
            # the rows after a removed one are renumbered to match the ids array.
            new_row = np.full(n, -1, dtype=np.int64)
            kept = np.delete(np.arange(n, dtype=np.int64), rows)
            new_row[kept] = np.arange(len(kept), dtype=np.int64)
            lists = ivf.invlists
            for list_no in range(ivf.nlist):
                size = lists.list_size(list_no)
                if size:
                    labels = faiss.rev_swig_ptr(lists.get_ids(list_no), size)
                    labels[:] = new_row[labels]

    def _reconstruct_rows(self, rows: np.ndarray) -> np.ndarray:
        index = self._built()
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        return index.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def _search_rows(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        index = self._built()
        selector = faiss.IDSelectorBatch(allowed_rows) if allowed_rows is not None else None
        want = min(k, index.ntotal if allowed_rows is None else len(allowed_rows))
        squared, rows = index.search(q, k, params=self._search_parameters(k, selector, 0))
        for widen in range(1, self.max_widen + 1):
            short = np.flatnonzero((rows >= 0).sum(axis=1) < want)
            if len(short) == 0:
                break
            squared[short], rows[short] = index.search(q[short], k, params=self._search_parameters(k, selector, widen))
        short = np.flatnonzero((rows >= 0).sum(axis=1) < want)
        if len(short):
            squared[short], rows[short] = self._exhaustive(q[short], k, allowed_rows)
        return rows, metrics.from_squared_l2(squared, self.metric)

    def _exhaustive(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the vectors the index holds (the filter's rows, or all)."""
        index = self._built()
        rows = np.arange(index.ntotal, dtype=np.int64) if allowed_rows is None else allowed_rows
        try:
            vectors = index.reconstruct_batch(rows)
        except RuntimeError:  # an IVF index needs its id -> list map to give vectors back
            faiss.extract_index_ivf(index).make_direct_map()
            vectors = index.reconstruct_batch(rows)
        flat = faiss.IndexFlatL2(self.dim)
        flat.add(vectors)
        squared, positions = flat.search(q, min(k, len(rows)))
        found = np.full((len(q), k), -1, dtype=np.int64)
        distances = np.full((len(q), k), np.inf, dtype=np.float32)
        found[:, : positions.shape[1]] = np.where(positions >= 0, rows[np.clip(positions, 0, None)], -1)
        distances[:, : positions.shape[1]] = squared
        return distances, found

    def _save_native(self, path: Path) -> None:
        index = self._built()
        lists = on_disk_lists(index)
        if lists is not None:
            source = self.lists_folder / IVFDATA_FILE
            target = path.with_name(IVFDATA_FILE)
            if self.lists_private:
                os.replace(source, target)  # the work folder was ours; the mapping follows the inode
                if not any(self.lists_folder.iterdir()) or self.lists_folder.name.startswith("."):
                    shutil.rmtree(self.lists_folder, ignore_errors=True)
            else:
                shutil.copyfile(source, target)
            self.lists_folder, self.lists_private = path.parent, False
            lists.filename = str(target)
        faiss.write_index(index, str(path))

    def _load_native(self, path: Path) -> None:
        on_disk = path.with_name(IVFDATA_FILE).is_file()
        try:
            # ONDISK_SAME_DIR: the lists file is the one beside index.faiss, wherever the folder moved.
            if on_disk:
                with faiss_notes_to_stderr():
                    index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
            elif self.mapped:
                # MMAP_IFC maps the codes in place (IO_FLAG_MMAP still reads them all in this FAISS).
                # FAISS cannot change a mapped index (an add aborts the process): _owned() copies it first.
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            else:
                index = faiss.read_index(str(path))
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()
            detail = next((line for line in reason if "Error" in line or "error" in line), reason[0] if reason else "")
            raise IndexFileError(f"index file {path} is corrupt or truncated ({detail.strip()[:160]})") from None
        if not self._is_expected(index) or index.d != self.dim:
            raise IndexFileError(
                f"index file {path} holds a {type(index).__name__} of dimension {index.d}, "
                f"not a {self.kind} index of dimension {self.dim}"
            )
        self.faiss_index = index
        if on_disk_lists(index) is not None:
            self.lists_folder, self.lists_private = path.parent, False

    def _is_expected(self, index: faiss.Index) -> bool:
        return isinstance(index, self._expected_type())

    def _native_count(self) -> int:
        return int(self._built().ntotal)

    def memory_bytes(self) -> int:
        return int(faiss.serialize_index(self._built()).nbytes) if self.faiss_index is not None else 0

    def _built(self) -> faiss.Index:
        if self.faiss_index is None:
            raise RuntimeError(f"the {self.kind} index is not built yet; call fit() first")
        return self.faiss_index


def resolve_nlist(n: int, rules: dict) -> int:
    """nlist = nlist_per_sqrt_n * sqrt(n), at most nlist_max and n / min_points_per_list."""
    by_sqrt = int(round(rules["nlist_per_sqrt_n"] * np.sqrt(n)))
    cap = min(int(rules["nlist_max"]), n // int(rules["min_points_per_list"]))
    return max(1, min(by_sqrt, cap))


def resolve_nprobe(nlist: int, rules: dict) -> int:
    """nprobe = nprobe_fraction * nlist, at least nprobe_min, at most nlist."""
    return max(1, min(nlist, max(int(rules["nprobe_min"]), int(np.ceil(nlist * rules["nprobe_fraction"])))))


def quiet_clustering(clustering_parameters) -> None:
    """We size nlist and nbits to the data ourselves; FAISS's 'please provide at least N training
    points' warning (printed straight to stderr) would only repeat that on every small store."""
    clustering_parameters.min_points_per_centroid = 1
