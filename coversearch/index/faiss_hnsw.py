"""``faiss-hnsw``: a hierarchical navigable small-world graph over the full vectors (IndexHNSWFlat).

Build: M (graph degree), efConstruction.  Query: efSearch.  Vectors can be added in place.
Under a tight id filter the graph walk may find fewer than k allowed vectors; the search is then
repeated with efSearch x4, x16, ... and finally answered exactly (the flat storage gives the
vectors back).
"""

from __future__ import annotations

import faiss

from coversearch.index.faiss_base import FaissIndex
from coversearch.index.params import check_range


class HNSWIndex(FaissIndex):
    kind = "faiss-hnsw"
    max_widen = 4

    def _check_params(self) -> None:
        check_range(self.kind, "M", self.build_params["M"], 2, 512)
        check_range(self.kind, "efConstruction", self.build_params["efConstruction"], 1)
        check_range(self.kind, "efSearch", self.query_params["efSearch"], 1)

    def _new_faiss_index(self, n: int) -> faiss.Index:
        index = faiss.IndexHNSWFlat(self.dim, int(self.build_params["M"]), faiss.METRIC_L2)
        index.hnsw.efConstruction = int(self.build_params["efConstruction"])
        return index

    def _expected_type(self) -> type:
        return faiss.IndexHNSWFlat

    def _search_parameters(self, k, selector, widen):
        ef = max(int(self.query_params["efSearch"]), k) * 4**widen
        params = faiss.SearchParametersHNSW(efSearch=ef)
        if selector is not None:
            params.sel = selector
        return params
