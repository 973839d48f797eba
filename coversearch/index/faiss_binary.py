"""``faiss-binary``: bit codes under Hamming distance (FAISS binary indexes), for hash features.

Vectors are 0/1 values (the ``hamming`` metric, e.g. the ``phash`` feature), packed into bytes:
64 bits take 8 bytes, so a million hashes fit in 8 MB.

Build: ``nhash`` = 0 gives ``IndexBinaryFlat`` (exact, a popcount scan over every code);
``nhash`` > 0 gives ``IndexBinaryMultiHash``: the code is cut into ``nhash`` substrings of
``hash_bits`` bits, each a hash table.  Query: ``nflip``, how many bits of each substring are
flipped when probing.  By the pigeonhole principle a code within Hamming distance
``nhash * (nflip + 1) - 1`` agrees with the query, up to ``nflip`` bits, on at least one substring,
so every such neighbour is a candidate: within that radius the multi-hash is exact, at a small
fraction of the flat scan's cost on large stores.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from coversearch.index import metrics
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
        self.faiss_index: faiss.IndexBinary | None = None

    @property
    def exact_radius(self) -> int:
        """Hamming radius within which every neighbour is found (all of them for the flat scan)."""
        nhash = int(self.build_params["nhash"])
        return self.dim if nhash == 0 else nhash * (int(self.query_params["nflip"]) + 1) - 1

    def _check_params(self) -> None:
        if self.dim % 8:
            raise IndexParamError(f"the {self.kind} kind needs a dimension that is a multiple of 8, not {self.dim}")
        nhash, bits = int(self.build_params["nhash"]), int(self.build_params["hash_bits"])
        if nhash < 0 or (nhash and (bits < 1 or nhash * bits > self.dim)):
            raise IndexParamError(f"nhash * hash_bits must be at most the {self.dim} bits of a code (nhash={nhash}, hash_bits={bits})")
        if int(self.query_params["nflip"]) < 0:
            raise IndexParamError("nflip must be >= 0")

    def _new(self) -> faiss.IndexBinary:
        nhash = int(self.build_params["nhash"])
        if nhash == 0:
            return faiss.IndexBinaryFlat(self.dim)
        return faiss.IndexBinaryMultiHash(self.dim, nhash, int(self.build_params["hash_bits"]))

    def _fit(self, x: np.ndarray) -> None:
        index = self._new()
        index.add(pack(x))
        self.faiss_index = index

    def _add(self, x: np.ndarray) -> None:
        self._built().add(pack(x))

    def _search_rows(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        index = self._built()
        codes = pack(q)
        if isinstance(index, faiss.IndexBinaryMultiHash):
            index.nflip = int(self.query_params["nflip"])
        if allowed_rows is not None:
            # A filtered search scans the allowed codes exactly (a genre's share of the store).
            flat = faiss.IndexBinaryFlat(self.dim)
            flat.add(self._codes(allowed_rows))
            distances, positions = flat.search(codes, k)
            rows = np.where(positions >= 0, allowed_rows[np.clip(positions, 0, None)], -1)
        else:
            distances, rows = index.search(codes, k)
        return rows.astype(np.int64), np.where(rows >= 0, distances, np.inf).astype(np.float32)

    def _codes(self, rows: np.ndarray) -> np.ndarray:
        index = self._built()
        storage = index if isinstance(index, faiss.IndexBinaryFlat) else index.storage
        all_codes = faiss.vector_to_array(storage.xb).reshape(-1, self.dim // 8)
        return np.ascontiguousarray(all_codes[rows])

    def _save_native(self, path: Path) -> None:
        faiss.write_index_binary(self._built(), str(path))

    def _load_native(self, path: Path) -> None:
        try:
            index = faiss.read_index_binary(str(path))
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise IndexFileError(f"index file {path} is corrupt or truncated ({first[:160]})") from None
        if index.d != self.dim:
            raise IndexFileError(f"index file {path} holds codes of {index.d} bits, not {self.dim}")
        self.faiss_index = index

    def _native_count(self) -> int:
        return int(self._built().ntotal)

    def memory_bytes(self) -> int:
        return int(faiss.serialize_index_binary(self._built()).nbytes) if self.faiss_index is not None else 0

    def _built(self) -> faiss.IndexBinary:
        if self.faiss_index is None:
            raise RuntimeError(f"the {self.kind} index is not built yet; call fit() first")
        return self.faiss_index
