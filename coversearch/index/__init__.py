"""Nearest-neighbour indexes over the store's embeddings.

One interface (``VectorIndex``: fit, add, search, batch_search, set_query_arguments, save, load,
memory_bytes) with one module per kind: ``exact`` (FAISS flat), ``faiss-hnsw``, ``faiss-ivf``,
``faiss-ivfpq``, ``annoy`` and ``duckdb`` (SQL scan inside the store).  ``catalog`` keeps them on
disk and in step with the store; ``recall`` measures them.
"""

import os

# Before any kind's module imports FAISS: its OpenMP runtime reads this once (see threads.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from coversearch.index.base import IndexFileError, Neighbours, VectorIndex  # noqa: E402
from coversearch.index.catalog import (
    OpenedIndex,
    StaleIndexError,
    build_index,
    check_current,
    list_manifests,
    open_index,
    refresh_index,
)
from coversearch.index.manifest import IndexManifest
from coversearch.features.registry import default_metric
from coversearch.metrics import COSINE, EUCLIDEAN, METRICS
from coversearch.index.registry import INDEX_KINDS, create_index, index_class

__all__ = [
    "COSINE",
    "EUCLIDEAN",
    "INDEX_KINDS",
    "METRICS",
    "IndexFileError",
    "IndexManifest",
    "Neighbours",
    "OpenedIndex",
    "StaleIndexError",
    "VectorIndex",
    "build_index",
    "check_current",
    "create_index",
    "default_metric",
    "index_class",
    "list_manifests",
    "open_index",
    "refresh_index",
]
