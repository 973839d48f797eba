"""Parameter sweeps kept as data, a results file that survives interruptions, and the sweep loop.

A sweep file ``<kind>.toml`` holds ``[build]`` and ``[query]`` tables of lists: every combination
of the build lists is built once, and each built index is measured at every combination of the
query lists.  A kind without a file is measured once, at its defaults.

Each measured point is appended to ``results.json`` at once (written to a temporary file and
renamed), so an interrupted run keeps what it measured; a rerun skips the points already there.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from coversearch.bench.datasets import Dataset, cached_ground_truth, own_copies_share
from coversearch.bench.measure import K, GenreTask, GenreVote, build, measure_queries
from coversearch.errors import CoverSearchError
from coversearch.fsutil import write_atomic
from coversearch.index.params import split_params
from coversearch.index.registry import index_class
from coversearch.store import FeatureSet, Store

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Sweep:
    kind: str
    build_points: list[dict[str, Any]]
    query_points: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.build_points) * len(self.query_points)


def _product(table: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(table)
    lists = [value if isinstance(value, list) else [value] for value in table.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]


def load_sweep(kind: str, sweeps_dir: Path | None) -> Sweep:
    """The kind's sweep from ``<sweeps_dir>/<kind>.toml`` (one point at the defaults when there is none)."""
    index_class(kind)
    path = Path(sweeps_dir) / f"{kind}.toml" if sweeps_dir is not None else None
    if path is None or not path.is_file():
        return Sweep(kind, [{}], [{}])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CoverSearchError(f"sweep file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"build", "query"}
    if unknown:
        raise CoverSearchError(f"sweep file {path}: unknown tables {', '.join(sorted(unknown))} (use [build] and [query])")
    points = {}
    for section in ("build", "query"):
        points[section] = _product(data.get(section, {}))
        for point in points[section]:
            build_part, query_part = split_params(kind, point)  # types and unknown keys
            if (build_part if section == "query" else query_part):
                wrong = sorted(build_part if section == "query" else query_part)
                raise CoverSearchError(f"sweep file {path}: {', '.join(wrong)} belongs in [{'build' if section == 'query' else 'query'}]")
    return Sweep(kind, points["build"], points["query"])


def point_key(dataset_key: str, kind: str, build_params: dict, query_params: dict) -> str:
    return json.dumps([dataset_key, kind, build_params, query_params], sort_keys=True, default=str)


class Results:
    """results.json: data sets by key and measured points, rewritten atomically after every point."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.data: dict[str, Any] = {"version": 1, "datasets": {}, "points": []}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CoverSearchError(f"{self.path} is unreadable ({exc}); move it away or rerun with --fresh") from None
            if not isinstance(loaded, dict) or not isinstance(loaded.get("points"), list):
                raise CoverSearchError(f"{self.path} is not a results file; move it away or rerun with --fresh")
            self.data = {"version": 1, "datasets": dict(loaded.get("datasets", {})), "points": loaded["points"]}
        self._keys = {p["key"] for p in self.points}

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.data["points"]

    @property
    def datasets(self) -> dict[str, dict[str, Any]]:
        return self.data["datasets"]

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def forget_datasets(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        self.data["points"] = [p for p in self.points if p["dataset"] not in keys]
        self._keys = {p["key"] for p in self.points}
        self.save()

    def set_dataset(self, dataset: Dataset) -> None:
        self.datasets[dataset.key] = dataset.info()
        self.save()

    def add(self, point: dict[str, Any]) -> None:
        self.points.append(point)
        self._keys.add(point["key"])
        self.save()

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str))


def kinds_for(dataset: Dataset, kinds: Sequence[str], has_binding: bool) -> list[str]:
    # A kind that searches a store table runs on real data sets only.
    return [k for k in kinds if not index_class(k).searches_store or (dataset.real and has_binding)]


def plan_size(datasets: Sequence[Dataset], kinds: Sequence[str], sweeps: dict[str, Sweep],
              bindings: dict[str, tuple[Store, FeatureSet]]) -> int:
    return sum(len(sweeps[k]) for d in datasets for k in kinds_for(d, kinds, d.key in bindings))


def run_sweep(
    datasets: Sequence[Dataset],
    kinds: Sequence[str],
    sweeps: dict[str, Sweep],
    results: Results,
    *,
    cache_dir: Path | None = None,
    bindings: dict[str, tuple[Store, FeatureSet]] | None = None,
    genre_tasks: dict[str, GenreTask] | None = None,
    advance: Callable[[int], None] = lambda n=1: None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
    k: int = K,
) -> int:
    """Measure every point not yet in ``results``; returns how many were measured now."""
    bindings = bindings or {}
    genre_tasks = genre_tasks or {}
    measured = 0
    for dataset in datasets:
        results.set_dataset(dataset)
        truth = None
        if dataset.query_sources is not None:
            truth = cached_ground_truth(dataset, k, cache_dir)
            results.datasets[dataset.key]["own_copies_in_true_top_k"] = own_copies_share(dataset, truth)
            results.save()
        for kind in kinds_for(dataset, kinds, dataset.key in bindings):
            sweep = sweeps[kind]
            for build_params in sweep.build_points:
                todo = [q for q in sweep.query_points if point_key(dataset.key, kind, build_params, q) not in results]
                advance(len(sweep.query_points) - len(todo))  # already measured
                if not todo:
                    continue
                if truth is None:
                    log(f"{dataset.key}: exact ground truth for {len(dataset.queries):,} queries")
                    truth = cached_ground_truth(dataset, k, cache_dir)
                log(f"{dataset.key}: building {kind} {build_params or '(defaults)'}")
                built = build(kind, dataset, build_params, bindings.get(dataset.key))
                task = genre_tasks.get(dataset.feature) if dataset.real else None
                vote = GenreVote(task, kind, build_params) if task is not None and not index_class(kind).searches_store else None
                for query_params in todo:
                    if query_params:
                        built.index.set_query_arguments(**query_params)
                    point = {
                        "key": point_key(dataset.key, kind, build_params, query_params),
                        "dataset": dataset.key, "kind": kind, "build": build_params, "query": query_params,
                        "resolved_build": dict(built.index.build_params), "resolved_query": dict(built.index.query_params),
                        **measure_queries(built, dataset, truth, k),
                        "build_s": built.build_seconds, "size_bytes": built.size_bytes,
                        "rss_delta_bytes": built.rss_delta_bytes, "memory_bytes": built.memory_bytes,
                        "genre_accuracy": vote.accuracy(query_params) if vote is not None else None,
                        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    }
                    results.add(point)
                    measured += 1
                    advance(1)
                    log(f"{dataset.key} {kind} {build_params} {query_params}: recall {point['recall']:.4f}, "
                        f"{point['qps']:,.0f} q/s")
                    if on_point is not None:
                        on_point(point)
                del built, vote
    return measured
