"""``faiss-ivf``: k-means inverted lists over the full vectors (IVF-Flat).

Build: nlist (lists; "auto" = 4 sqrt(n), capped), seed, factory (a FAISS index_factory string
that replaces the generated ``IVF<nlist>,Flat``, e.g. ``PCA256,IVF4096,Flat``; its nlist wins).
Query: nprobe (lists visited; "auto" = nlist / 8, at least 8).  Training needs at least
``min_points_per_list`` (39) vectors per list: fewer is one clear error naming the minimum.  From
``hnsw_quantizer_min_nlist`` lists up, the coarse quantizer is an HNSW graph (``IVF<nlist>_HNSW32``)
so assigning a vector to its list stays fast.  Vectors can be added in place (they join the
nearest existing list; the centroids are not retrained) and removed in place.  A short filtered
answer is retried visiting 4x, 16x ... more lists, up to all of them, which is exhaustive.
"""

from __future__ import annotations

import re

import faiss

from coversearch.index.faiss_base import FaissIndex, quiet_clustering, resolve_nlist, resolve_nprobe
from coversearch.index.params import AUTO, IndexParamError, check_range, kind_defaults

_FACTORY_NLIST = re.compile(r"(?:^|,)IVF(\d+)")


def factory_nlist(factory: str) -> int:
    """The number of lists in an index_factory string ("OPQ64_256,IVF4096_HNSW32,PQ64" -> 4096)."""
    match = _FACTORY_NLIST.search(factory)
    if match is None:
        raise IndexParamError(f"factory string {factory!r} has no IVF<nlist> stage: an IVF kind needs one")
    return int(match.group(1))


def min_training_vectors(nlist: int, rules: dict) -> int:
    return int(nlist) * int(rules["min_points_per_list"])


class IVFFlatIndex(FaissIndex):
    kind = "faiss-ivf"
    max_widen = 8
    ivf_type: type = faiss.IndexIVFFlat
    supports_remove = True  # IVF lists drop entries in place; the centroids stay as trained

    def _check_params(self) -> None:
        check_range(self.kind, "nlist", self.build_params["nlist"], 1)
        check_range(self.kind, "nprobe", self.query_params["nprobe"], 1)

    def _resolve_auto_params(self, n: int) -> None:
        rules = kind_defaults(self.kind).auto
        if self.build_params["factory"]:
            self.build_params["nlist"] = factory_nlist(self.build_params["factory"])
        if self.build_params["nlist"] == AUTO and n > 0:
            self.build_params["nlist"] = resolve_nlist(n, rules)
        elif (
            self.faiss_index is None  # a build; a built (or loaded) index keeps the lists it has
            and isinstance(self.build_params["nlist"], int)
            and 0 < n < min_training_vectors(self.build_params["nlist"], rules)
        ):
            nlist = self.build_params["nlist"]
            raise IndexParamError(
                f"{self.kind} parameter nlist={nlist} is more than the {n} vectors can train: {nlist} lists need at "
                f"least {min_training_vectors(nlist, rules):,} vectors ({rules['min_points_per_list']} per list); "
                f"use fewer lists (nlist=auto gives {resolve_nlist(n, rules)} here)"
            )
        if self.query_params["nprobe"] == AUTO and isinstance(self.build_params["nlist"], int):
            self.query_params["nprobe"] = resolve_nprobe(self.build_params["nlist"], rules)

    def _coarse_quantizer(self) -> str:
        nlist = int(self.build_params["nlist"])
        hnsw_from = int(kind_defaults(self.kind).auto["hnsw_quantizer_min_nlist"])
        return f"IVF{nlist}_HNSW32" if nlist >= hnsw_from else f"IVF{nlist}"

    def _factory_string(self) -> str:
        return self.build_params["factory"] or f"{self._coarse_quantizer()},Flat"

    def _new_faiss_index(self, n: int) -> faiss.Index:
        try:
            index = faiss.index_factory(self.dim, self._factory_string(), faiss.METRIC_L2)
        except RuntimeError as exc:
            raise IndexParamError(f"FAISS cannot make {self._factory_string()!r} for {self.dim}-d vectors: "
                                  f"{str(exc).strip().splitlines()[-1][:160]}") from None
        if not self._is_expected(index):
            raise IndexParamError(f"factory string {self._factory_string()!r} does not make a {self.kind} index")
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = int(self.build_params["seed"])
        quiet_clustering(ivf.cp)
        return index

    def _expected_type(self) -> type:
        return self.ivf_type

    def _is_expected(self, index: faiss.Index) -> bool:
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            return False
        return isinstance(faiss.downcast_index(ivf), self.ivf_type)

    def _nprobe(self, widen: int) -> int:
        nlist = int(self.build_params["nlist"])
        return min(nlist, int(self.query_params["nprobe"]) * 4**widen)

    def _search_parameters(self, k, selector, widen):
        nprobe = self._nprobe(widen)
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if selector is not None:
            params.sel = selector
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(self._built()).quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            # The graph must look at least nprobe candidates deep to return nprobe lists.
            hnsw_params = faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, 64))
            params.quantizer_params = hnsw_params
            params.referenced_objects = [hnsw_params]  # keep it alive as long as params
        return params
