"""``faiss-ivfpq``: inverted lists holding product-quantised codes (IVF-PQ), optionally re-ranked.

Build: nlist, m (sub-quantizers: code bytes per vector at 8 bits; must divide the dimension),
nbits ("auto" = 8, fewer when there are under 256 vectors to train on), refine (keep the full
vectors too and re-rank the PQ candidates exactly: IndexRefineFlat), seed.  Query: nprobe,
k_factor (with refine, k_factor * k PQ candidates are re-ranked).  Without refine, distances are
PQ estimates; with it they are exact.
"""

from __future__ import annotations

import math

import faiss

from coversearch.index.faiss_ivf import IVFFlatIndex
from coversearch.index.faiss_base import quiet_clustering
from coversearch.index.params import AUTO, IndexParamError, check_range, kind_defaults


class IVFPQIndex(IVFFlatIndex):
    kind = "faiss-ivfpq"
    supports_remove = False  # PQ codes cannot be read back exactly to check the vectors that stay: rebuild

    def _check_params(self) -> None:
        super()._check_params()
        m = self.build_params["m"]
        check_range(self.kind, "m", m, 1, self.dim)
        if self.dim % m:
            raise IndexParamError(f"{self.kind} parameter m={m} must divide the dimension {self.dim}")
        check_range(self.kind, "nbits", self.build_params["nbits"], 1, 16)
        check_range(self.kind, "k_factor", self.query_params["k_factor"], 1)

    def _resolve_auto_params(self, n: int) -> None:
        super()._resolve_auto_params(n)
        nbits = self.build_params["nbits"]
        if n <= 1:
            fits = 1
        else:
            fits = int(math.floor(math.log2(n)))  # PQ training needs at least 2**nbits vectors
        if nbits == AUTO and n > 0:
            self.build_params["nbits"] = max(1, min(int(kind_defaults(self.kind).auto["nbits_max"]), fits))
        elif isinstance(nbits, int) and n > 0 and nbits > fits:
            raise IndexParamError(f"{self.kind} parameter nbits={nbits} needs at least {2**nbits} vectors to train on; there are {n}")

    def _factory_string(self) -> str:
        p = self.build_params
        text = f"IVF{p['nlist']},PQ{p['m']}x{p['nbits']}"
        return text + ",RFlat" if p["refine"] else text

    def _new_faiss_index(self, n: int) -> faiss.Index:
        index = super()._new_faiss_index(n)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.pq.cp.seed = int(self.build_params["seed"])
        quiet_clustering(ivf.pq.cp)
        # index_factory turns on polysemous training (Hamming-ordering the codes by simulated
        # annealing); we never search in polysemous mode, and it costs seconds per build.
        ivf.do_polysemous_training = False
        return index

    def _expected_type(self) -> type:
        return faiss.IndexRefineFlat if self.build_params["refine"] else faiss.IndexIVFPQ

    def _search_parameters(self, k, selector, widen):
        ivf_params = super()._search_parameters(k, selector, widen)
        if not self.build_params["refine"]:
            return ivf_params
        return faiss.IndexRefineSearchParameters(k_factor=float(self.query_params["k_factor"]), base_index_params=ivf_params)
