"""``faiss-ivfpq``: inverted lists holding product-quantised codes (IVF-PQ), optionally re-ranked.

Build: nlist, m (sub-quantizers: code bytes per vector at 8 bits; must divide the dimension, or
``reduce_to`` when the vectors are reduced), nbits ("auto" = 8, fewer when there are under 256
vectors to train on), refine (keep the full vectors too and re-rank the PQ candidates exactly:
IndexRefineFlat), seed, factory (an index_factory string instead of the generated one).
Query: nprobe, k_factor (with refine, k_factor * k PQ candidates are re-ranked), rerank (without
refine: the top ``rerank`` PQ candidates are re-ranked with the exact vectors fetched from the
store, see ``bind_exact_vectors``; the index then holds only codes, so it scales past RAM;
``auto``, the default, re-ranks k_factor * k whenever the store is bound, 0 turns it off).

Defaults by size (``defaults.toml``): nlist = 4 sqrt(n) (at most n / 39 and 65,536); an HNSW32
coarse quantizer from 16,384 lists; vectors wider than 1,024 dims (vgg16-layers, 2,560) are
rotated and reduced by OPQ to 256 dims first (``OPQ<m>_256,IVF...,PQ<m>``).  Without refine or
rerank (an index loaded without its store, or rerank=0), distances are PQ estimates; with either they are exact.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import faiss
import numpy as np

from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.index.faiss_ivf import IVFFlatIndex
from coversearch.index.faiss_base import quiet_clustering
from coversearch.index.params import AUTO, IndexParamError, check_range, kind_defaults

_FACTORY_M = re.compile(r"(?:^|,)PQ(\d+)")


class IVFPQIndex(IVFFlatIndex):
    kind = "faiss-ivfpq"
    ivf_type = faiss.IndexIVFPQ

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exact_vectors: Callable[[np.ndarray], np.ndarray] | None = None

    def bind_exact_vectors(self, fetch: Callable[[np.ndarray], np.ndarray] | None) -> None:
        """``fetch(album_ids) -> float32 (n, dim)``: where ``rerank`` reads the exact vectors (the store)."""
        self.exact_vectors = fetch

    def bind(self, store, feature_set) -> "IVFPQIndex":
        self.bind_exact_vectors(lambda album_ids: store.vectors_for(feature_set, album_ids))  # the rerank query parameter
        return self

    def code_dim(self) -> int:
        """The dimension the PQ codes are made in: reduced by OPQ for wide vectors."""
        rules = kind_defaults(self.kind).auto
        return int(rules["reduce_to"]) if self.dim > int(rules["reduce_above_dim"]) else self.dim
    supports_remove = False  # PQ codes cannot be read back exactly to check the vectors that stay: rebuild

    def _check_params(self) -> None:
        super()._check_params()
        check_range(self.kind, "rerank", self.query_params["rerank"], 0)
        check_range(self.kind, "k_factor", self.query_params["k_factor"], 1)
        if self.build_params["factory"]:
            return  # FAISS checks the string when it makes the index
        m = self.build_params["m"]
        check_range(self.kind, "m", m, 1, self.code_dim())
        if self.code_dim() % m:
            reduced = f" (reduced from {self.dim})" if self.code_dim() != self.dim else ""
            raise IndexParamError(f"{self.kind} parameter m={m} must divide the dimension {self.code_dim()}{reduced}")
        check_range(self.kind, "nbits", self.build_params["nbits"], 1, 16)

    def _resolve_auto_params(self, n: int) -> None:
        factory = self.build_params["factory"]
        if factory:
            match = _FACTORY_M.search(factory)
            if match is None:
                raise IndexParamError(f"factory string {factory!r} has no PQ<m> stage: a {self.kind} index needs one")
            self.build_params["m"] = int(match.group(1))
            self.build_params["refine"] = "RFlat" in factory or "Refine" in factory
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
        if factory and self.build_params["nbits"] == AUTO:
            self.build_params["nbits"] = 8

    def _factory_string(self) -> str:
        p = self.build_params
        if p["factory"]:
            return p["factory"]
        prefix = f"OPQ{p['m']}_{self.code_dim()}," if self.code_dim() != self.dim else ""
        text = f"{prefix}{self._coarse_quantizer()},PQ{p['m']}x{p['nbits']}"
        return text + ",RFlat" if p["refine"] else text

    def _new_faiss_index(self, n: int) -> faiss.Index:
        index = super()._new_faiss_index(n)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.pq.cp.seed = int(self.build_params["seed"])
        quiet_clustering(ivf.pq.cp)
        # index_factory turns on polysemous training (Hamming-ordering the codes by simulated
        # annealing); we never search in polysemous mode, and it costs seconds per build.
        ivf.do_polysemous_training = False
        if isinstance(index, faiss.IndexPreTransform):
            for i in range(index.chain.size()):
                transform = faiss.downcast_VectorTransform(index.chain.at(i))
                if isinstance(transform, faiss.OPQMatrix):
                    # OPQ trains its own PQ each iteration; give it one that does not warn on small stores.
                    pq = faiss.ProductQuantizer(transform.d_out, transform.M, 8)
                    quiet_clustering(pq.cp)
                    transform.pq = pq
                    index.referenced_objects = [pq]  # alive as long as the index object
        return index

    def _is_expected(self, index: faiss.Index) -> bool:
        refined = isinstance(index, faiss.IndexRefineFlat)
        return super()._is_expected(index) and refined == bool(self.build_params["refine"])

    def _search_parameters(self, k, selector, widen):
        ivf_params = super()._search_parameters(k, selector, widen)
        if not self.build_params["refine"]:
            return ivf_params
        params = faiss.IndexRefineSearchParameters(k_factor=float(self.query_params["k_factor"]), base_index_params=ivf_params)
        params.referenced_objects = [ivf_params]
        return params

    def rerank_depth(self, k: int) -> int:
        """PQ candidates re-ranked with the store's exact vectors for a top-``k`` query (0: none)."""
        rerank = self.query_params["rerank"]
        if self.build_params["refine"]:
            return 0  # the index re-ranks with its own copy of the vectors
        if rerank == AUTO:
            # PQ distances alone lose about a quarter of the true top 10 (covers5 hsv): re-rank
            # whenever the exact vectors are at hand.
            return int(self.query_params["k_factor"]) * k if self.exact_vectors is not None else 0
        return int(rerank)

    def _search_rows(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        depth = self.rerank_depth(k)
        if depth == 0:
            return super()._search_rows(q, k, allowed_rows)
        if self.exact_vectors is None:
            raise CoverSearchError(
                f"{self.kind} query parameter rerank={depth} needs the store's vectors: open the index through the "
                "catalog (open_index), or set rerank=0"
            )
        candidates, _ = super()._search_rows(q, max(k, depth), allowed_rows)
        return rerank_rows(q, candidates, lambda rows: metrics.prepare(self.exact_vectors(self.ids[rows]), self.metric),
                           k, self.metric)


def rerank_rows(
    q: np.ndarray, candidates: np.ndarray, fetch_rows: Callable[[np.ndarray], np.ndarray], k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Order each query's candidate rows by exact distance and keep k: (rows, distances in ``metric``),
    padded with -1 / inf.  ``fetch_rows(rows)`` gives the prepared vectors of those rows."""
    found = np.unique(candidates[candidates >= 0])
    rows = np.full((len(q), k), -1, dtype=np.int64)
    squared = np.full((len(q), k), np.inf, dtype=np.float32)
    if len(found) == 0:
        return rows, squared
    vectors = fetch_rows(found)
    for i, row_candidates in enumerate(candidates):
        mine = row_candidates[row_candidates >= 0]
        diff = vectors[np.searchsorted(found, mine)] - q[i]
        exact = np.einsum("ij,ij->i", diff, diff)
        order = np.argsort(exact, kind="stable")[:k]
        rows[i, : len(order)] = mine[order]
        squared[i, : len(order)] = exact[order]
    return rows, metrics.from_squared_l2(squared, metric)
