"""What one sweep point costs and what it gets: recall, latency, throughput, build, size, memory, accuracy."""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from coversearch.bench.datasets import Dataset
from coversearch.classify.evaluate import evaluate_predictions
from coversearch.classify.knn import KNNVote
from coversearch.index.base import VectorIndex
from coversearch.index.recall import GroundTruth, ids_to_rows, recall_at_k
from coversearch.index.registry import create_index
from coversearch.store import FeatureSet, Store

K = 10
WARMUP_QUERIES = 20


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def recall_of_ids(dataset: Dataset, truth: GroundTruth, found_ids: np.ndarray, k: int = K) -> float:
    """Mean recall@k (ann-benchmarks: hit when true distance <= true k-th distance + 1e-3) of returned album ids."""
    rows = ids_to_rows(dataset.base_ids, np.asarray(found_ids, dtype=np.int64))
    return recall_at_k(dataset.base, dataset.queries, rows, k, dataset.metric, truth)


@dataclass
class Built:
    index: VectorIndex
    build_seconds: float
    rss_delta_bytes: int
    memory_bytes: int
    size_bytes: int
    search_kwargs: dict[str, Any]  # e.g. a store-searching kind's filter to the indexed albums


def build(kind: str, dataset: Dataset, build_params: Mapping[str, Any],
          binding: tuple[Store, FeatureSet] | None = None) -> Built:
    """Build ``kind`` on the data set, timing it and measuring the resident memory it added."""
    gc.collect()
    before = rss_bytes()
    index = create_index(kind, dataset.metric, dataset.dim, build_params)
    started = time.perf_counter()
    index.fit(dataset.base, dataset.base_ids)
    search_kwargs: dict[str, Any] = {}
    if index.searches_store:
        if binding is None:
            raise ValueError(f"the {kind} kind needs a store to search")
        index.bind(*binding)
        # The table holds the held-out queries too: search only the indexed albums (a SQL WHERE).
        search_kwargs["allowed_ids"] = dataset.base_ids
    seconds = time.perf_counter() - started
    rss_delta = max(0, rss_bytes() - before)
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        index.save(Path(tmp))
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return Built(index, seconds, rss_delta, int(index.memory_bytes()), size, search_kwargs)


def measure_queries(built: Built, dataset: Dataset, truth: GroundTruth, k: int = K) -> dict[str, float]:
    """Single queries on one thread (VectorIndex.search) for latency and recall, then one batch_search."""
    index, kwargs = built.index, built.search_kwargs
    queries = dataset.queries
    for q in queries[:WARMUP_QUERIES]:
        index.search(q, k, **kwargs)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    seconds = np.empty(len(queries))
    for i, q in enumerate(queries):
        started = time.perf_counter()
        hits = index.search(q, k, **kwargs)
        seconds[i] = time.perf_counter() - started
        found[i, : len(hits)] = hits.ids
    started = time.perf_counter()
    index.batch_search(queries, k, **kwargs)
    batch_seconds = time.perf_counter() - started
    return {
        "recall": recall_of_ids(dataset, truth, found, k),
        "qps": len(queries) / float(seconds.sum()),
        "p50_ms": float(np.percentile(seconds, 50) * 1000),
        "p99_ms": float(np.percentile(seconds, 99) * 1000),
        "batch_qps": len(queries) / batch_seconds,
    }


@dataclass
class GenreTask:
    """The stored split's train and test albums of one feature set, for the kNN-vote accuracy column."""

    feature: str
    metric: str
    X_train: np.ndarray  # one row per (album, genre)
    y_train: np.ndarray
    X_test: np.ndarray
    test_genres: list[tuple[str, ...]]


def load_genre_task(store: Store, feature: str, metric: str, split_name: str = "default") -> GenreTask | None:
    """None when the store has no such split (the column then stays empty)."""
    from coversearch.classify.data import load_labelled
    from coversearch.classify.split import load_split

    split = load_split(store, split_name)
    if split is None:
        return None
    fs = store.feature_set(feature)
    train = load_labelled(store, [fs], split.album_ids("train"))
    test = load_labelled(store, [fs], split.album_ids("test"))
    if len(train.album_ids) == 0 or len(test.album_ids) == 0:
        return None
    X, y = train.expanded()
    return GenreTask(feature, metric, X, y, test.X, test.genres)


class GenreVote:
    """coversearch.classify.knn's k=10 vote through one kind and build point; query points set in turn."""

    def __init__(self, task: GenreTask, kind: str, build_params: Mapping[str, Any], k: int = 10):
        self.task = task
        self.clf = KNNVote(k=k, index_kind=kind, metric=task.metric, index_params=dict(build_params))
        self.clf.fit(task.X_train, task.y_train)

    def accuracy(self, query_params: Mapping[str, Any]) -> float:
        if query_params:
            self.clf.index_.set_query_arguments(**query_params)
        proba = self.clf.predict_proba(self.task.X_test)
        return float(evaluate_predictions(self.clf.classes_, proba, self.task.test_genres)["accuracy"])
