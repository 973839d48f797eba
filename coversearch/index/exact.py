"""``exact``: brute force over every vector (FAISS IndexFlatL2): the ground truth for the others."""

from __future__ import annotations

import faiss

from coversearch.index.faiss_base import FaissIndex


class ExactIndex(FaissIndex):
    kind = "exact"
    exact = True
    supports_remove = True
    can_map = True

    def _new_faiss_index(self, n: int) -> faiss.Index:
        return faiss.IndexFlatL2(self.dim)

    def _expected_type(self) -> type:
        return faiss.IndexFlat

    def _search_parameters(self, k, selector, widen):
        # A flat scan with a selector always finds min(k, allowed) vectors: nothing to widen.
        return faiss.SearchParameters(sel=selector) if selector is not None else None
