"""``faiss-ivf``: k-means inverted lists over the full vectors (IVF-Flat).

Build: nlist (lists; "auto" = 4 sqrt(n), capped), seed.  Query: nprobe (lists visited; "auto" =
nlist / 8, at least 8).  Vectors can be added in place (they join the nearest existing list; the
centroids are not retrained) and removed in place.  A short filtered answer is retried visiting 4x, 16x ... more lists,
up to all of them, which is exhaustive.
"""

from __future__ import annotations

import faiss

from coversearch.index.faiss_base import FaissIndex, quiet_clustering, resolve_nlist, resolve_nprobe
from coversearch.index.params import AUTO, IndexParamError, check_range, kind_defaults


class IVFFlatIndex(FaissIndex):
    kind = "faiss-ivf"
    max_widen = 8
    supports_remove = True  # IVF lists drop entries in place; the centroids stay as trained

    def _check_params(self) -> None:
        check_range(self.kind, "nlist", self.build_params["nlist"], 1)
        check_range(self.kind, "nprobe", self.query_params["nprobe"], 1)

    def _resolve_auto_params(self, n: int) -> None:
        rules = kind_defaults(self.kind).auto
        if self.build_params["nlist"] == AUTO and n > 0:
            self.build_params["nlist"] = resolve_nlist(n, rules)
        elif isinstance(self.build_params["nlist"], int) and 0 < n < self.build_params["nlist"]:
            raise IndexParamError(f"{self.kind} parameter nlist={self.build_params['nlist']} is more than the {n} vectors")
        if self.query_params["nprobe"] == AUTO and isinstance(self.build_params["nlist"], int):
            self.query_params["nprobe"] = resolve_nprobe(self.build_params["nlist"], rules)

    def _factory_string(self) -> str:
        return f"IVF{self.build_params['nlist']},Flat"

    def _new_faiss_index(self, n: int) -> faiss.Index:
        index = faiss.index_factory(self.dim, self._factory_string(), faiss.METRIC_L2)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = int(self.build_params["seed"])
        quiet_clustering(ivf.cp)
        return index

    def _expected_type(self) -> type:
        return faiss.IndexIVFFlat

    def _nprobe(self, widen: int) -> int:
        nlist = int(self.build_params["nlist"])
        return min(nlist, int(self.query_params["nprobe"]) * 4**widen)

    def _search_parameters(self, k, selector, widen):
        params = faiss.SearchParametersIVF(nprobe=self._nprobe(widen))
        if selector is not None:
            params.sel = selector
        return params
