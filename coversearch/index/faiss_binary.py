"""``faiss-binary``: bit codes under Hamming distance (FAISS binary indexes), for hash features.

Vectors are 0/1 values (the ``hamming`` metric, e.g. the ``phash`` feature), packed into bytes:
64 bits take 8 bytes, so a million hashes fit in 8 MB.

Build: ``nhash`` = 0 is an exact popcount scan over every code (``IndexBinaryFlat``).
``nhash`` > 0 is multi-index hashing: the code is cut into ``nhash`` substrings of ``hash_bits``
bits and each is the key of one hash table (an ``IndexBinaryHash`` over the codes rotated so that
the substring comes first).  Query: ``nflip``, how many bits of each key are flipped when probing.
By the pigeonhole principle a code within Hamming distance ``nhash * (nflip + 1) - 1`` differs
from the query in at most ``nflip`` bits of at least one substring, so it is a candidate of that
table: within that radius the search is exact, at a fraction of the flat scan's cost on large
stores.  (FAISS's own ``IndexBinaryMultiHash`` does the same but probed ~10x slower here.)

The file holds the flat codes; the hash tables are rebuilt when an index is loaded (about a
second per million codes).
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from coversearch import metrics
from coversearch.index.base import IndexFileError, VectorIndex
from coversearch.index.params import IndexParamError


def pack(x: np.ndarray) -> np.ndarray:
    """(n, d) 0/1 floats -> (n, d / 8) uint8 codes."""
    return np.ascontiguousarray(np.packbits(np.asarray(x) > 0.5, axis=1))


class BinaryIndex(VectorIndex):
    kind = "faiss-binary"
    native_file = "index.faissbin"
    supported_metrics = (metrics.HAMMING,)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.faiss_index: faiss.IndexBinaryFlat | None = None  # every code, in row order
        self._tables: list[faiss.IndexBinaryHash] = []

    @property
    def exact_radius(self) -> int:
        """Hamming radius within which every neighbour is found (all of them for the flat scan)."""
        nhash = int(self.build_params["nhash"])
        return self.dim if nhash == 0 else nhash * (int(self.query_params["nflip"]) + 1) - 1

    def _check_params(self) -> None:
        if self.dim % 8:
            raise IndexParamError(f"the {self.kind} kind needs a dimension that is a multiple of 8, not {self.dim}")
        nhash, bits = int(self.build_params["nhash"]), int(self.build_params["hash_bits"])
        if nhash < 0 or (nhash and (bits < 8 or bits % 8 or nhash * bits > self.dim)):
            raise IndexParamError(
                f"hash_bits must be a multiple of 8 and nhash * hash_bits at most the {self.dim} bits of a code "
                f"(nhash={nhash}, hash_bits={bits})"
            )
        if int(self.query_params["nflip"]) < 0:
            raise IndexParamError("nflip must be >= 0")

    def _rotated(self, codes: np.ndarray, table: int) -> np.ndarray:
        """Codes with table ``table``'s substring moved to the front (IndexBinaryHash keys on the first bits)."""
        return np.ascontiguousarray(np.roll(codes, -table * int(self.build_params["hash_bits"]) // 8, axis=1))

    def _build_tables(self) -> None:
        codes = self._codes(np.arange(self._built().ntotal))
        self._tables = []
        for table in range(int(self.build_params["nhash"])):
            index = faiss.IndexBinaryHash(self.dim, int(self.build_params["hash_bits"]))
            if len(codes):
                index.add(self._rotated(codes, table))
            self._tables.append(index)

    def _fit(self, x: np.ndarray) -> None:
        self.faiss_index = faiss.IndexBinaryFlat(self.dim)
        self.faiss_index.add(pack(x))
        self._build_tables()

    def _add(self, x: np.ndarray) -> None:
        codes = pack(x)
        self._built().add(codes)
        for table, index in enumerate(self._tables):
            index.add(self._rotated(codes, table))

    def _search_rows(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        codes = pack(q)
        if allowed_rows is not None:
            # A filtered search scans the allowed codes exactly (a genre's share of the store).
            flat = faiss.IndexBinaryFlat(self.dim)
            flat.add(self._codes(allowed_rows))
            distances, positions = flat.search(codes, k)
            rows = np.where(positions >= 0, allowed_rows[np.clip(positions, 0, None)], -1)
        elif not self._tables:
            distances, rows = self._built().search(codes, k)
        else:
            distances, rows = self._search_tables(codes, k)
        rows = rows.astype(np.int64)
        return rows, np.where(rows >= 0, distances, np.inf).astype(np.float32)

    def _search_tables(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each table's k nearest candidates, merged: the k nearest distinct rows of their union."""
        nflip = int(self.query_params["nflip"])
        found_d, found_rows = [], []
        for table, index in enumerate(self._tables):
            index.nflip = nflip
            d, rows = index.search(self._rotated(codes, table), k)
            found_d.append(d.astype(np.int64))
            found_rows.append(rows.astype(np.int64))
        d, rows = np.concatenate(found_d, axis=1), np.concatenate(found_rows, axis=1)
        # One sortable key per (distance, row): the same row from two tables has the same key.
        missing = rows < 0
        keys = np.where(missing, np.iinfo(np.int64).max, (d << 32) | np.where(missing, 0, rows))
        keys.sort(axis=1)
        repeated = np.zeros_like(missing)
        repeated[:, 1:] = keys[:, 1:] == keys[:, :-1]
        keys[repeated] = np.iinfo(np.int64).max
        keys.sort(axis=1)
        keys = keys[:, :k]
        empty = keys == np.iinfo(np.int64).max
        rows = np.where(empty, -1, keys & 0xFFFFFFFF)
        return np.where(empty, np.iinfo(np.int32).max, keys >> 32).astype(np.int32), rows

    def _codes(self, rows: np.ndarray) -> np.ndarray:
        all_codes = faiss.vector_to_array(self._built().xb).reshape(-1, self.dim // 8)
        return np.ascontiguousarray(all_codes[rows])

    def _save_native(self, path: Path) -> None:
        faiss.write_index_binary(self._built(), str(path))

    def _load_native(self, path: Path) -> None:
        try:
            index = faiss.read_index_binary(str(path))
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise IndexFileError(f"index file {path} is corrupt or truncated ({first[:160]})") from None
        if not isinstance(index, faiss.IndexBinaryFlat) or index.d != self.dim:
            raise IndexFileError(f"index file {path} holds a {type(index).__name__} of {index.d} bits, not flat codes of {self.dim}")
        self.faiss_index = index
        self._build_tables()

    def _native_count(self) -> int:
        return int(self._built().ntotal)

    def memory_bytes(self) -> int:
        if self.faiss_index is None:
            return 0
        # The codes, plus per table a copy of them and its bucket lists (about 16 bytes per code).
        per_table = self.faiss_index.ntotal * (self.dim // 8 + 16)
        return int(self.faiss_index.ntotal * self.dim // 8 + len(self._tables) * per_table)

    def _built(self) -> faiss.IndexBinaryFlat:
        if self.faiss_index is None:
            raise RuntimeError(f"the {self.kind} index is not built yet; call fit() first")
        return self.faiss_index
