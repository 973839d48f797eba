"""Index kinds by name."""

from __future__ import annotations

from typing import Any, Mapping

from coversearch.errors import CoverSearchError
from coversearch.index.annoy_index import AnnoyIndex
from coversearch.index.base import VectorIndex
from coversearch.index.duckdb_index import DuckDBIndex
from coversearch.index.exact import ExactIndex
from coversearch.index.faiss_binary import BinaryIndex
from coversearch.index.faiss_hnsw import HNSWIndex
from coversearch.index.faiss_ivf import IVFFlatIndex
from coversearch.index.faiss_ivfpq import IVFPQIndex

INDEX_KINDS: dict[str, type[VectorIndex]] = {
    cls.kind: cls for cls in (ExactIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex, AnnoyIndex, DuckDBIndex, BinaryIndex)
}


class UnknownKindError(CoverSearchError):
    pass


def index_class(kind: str) -> type[VectorIndex]:
    try:
        return INDEX_KINDS[kind]
    except KeyError:
        raise UnknownKindError(f"unknown index kind {kind!r}; choose from {', '.join(INDEX_KINDS)}") from None


def create_index(
    kind: str,
    metric: str,
    dim: int,
    build_params: Mapping[str, Any] | None = None,
    query_params: Mapping[str, Any] | None = None,
) -> VectorIndex:
    """An unbuilt index of ``kind``: defaults from defaults.toml, overridden by the given params."""
    return index_class(kind)(metric, dim, build_params, query_params)
