"""Index kinds by name: one line each, the module imported when the kind is first used.

Listing the kinds (``--help``, messages) imports nothing, so FAISS and Annoy load only in the
commands that build or search an index.
"""

from __future__ import annotations

from typing import Any, Mapping

from coversearch.registry import Registry, UnknownNameError


class UnknownKindError(UnknownNameError):
    pass


# Registration order is the order kinds are listed in (help, benchmark tables).
INDEX_KINDS = Registry("index kind", {
    "exact": "coversearch.index.exact:ExactIndex",
    "duckdb": "coversearch.index.duckdb_index:DuckDBIndex",
    "faiss-hnsw": "coversearch.index.faiss_hnsw:HNSWIndex",
    "faiss-ivf": "coversearch.index.faiss_ivf:IVFFlatIndex",
    "faiss-ivfpq": "coversearch.index.faiss_ivfpq:IVFPQIndex",
    "annoy": "coversearch.index.annoy_index:AnnoyIndex",
    "faiss-binary": "coversearch.index.faiss_binary:BinaryIndex",
}, error=UnknownKindError)


def register(kind: str, target: str) -> None:
    """Add an index kind: ``target`` is "package.module:Class" (see coversearch/registry.py)."""
    INDEX_KINDS.register(kind, target)


def index_class(kind: str):
    return INDEX_KINDS.load(kind)


def create_index(
    kind: str,
    metric: str,
    dim: int,
    build_params: Mapping[str, Any] | None = None,
    query_params: Mapping[str, Any] | None = None,
):
    """An unbuilt index of ``kind``: defaults from defaults.toml, overridden by the given params."""
    return index_class(kind)(metric, dim, build_params, query_params)

