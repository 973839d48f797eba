"""One `bench search` run: make the data sets from a store, sweep every kind, write the outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from coversearch.bench import tables
from coversearch.bench.datasets import Dataset, real_dataset, synthetic_dataset
from coversearch.bench.measure import GenreTask, load_genre_task
from coversearch.bench.sweep import RESULTS_FILE, Results, Sweep, load_sweep, plan_size, run_sweep
from coversearch.errors import CoverSearchError
from coversearch.features.registry import metric_for
from coversearch.metrics import COSINE, EUCLIDEAN
from coversearch.index.registry import INDEX_KINDS, index_class
from coversearch.store import FeatureSet, Store



def default_kinds() -> tuple[str, ...]:
    """The registered kinds that search float vectors under both cosine and Euclidean distance
    (faiss-binary, for hashes only, is measured by the dedupe benchmark), in registry order."""
    return tuple(k for k in INDEX_KINDS if {COSINE, EUCLIDEAN} <= set(INDEX_KINDS[k].supported_metrics))


DEFAULT_KINDS = default_kinds()
# The sweep files ship with the package (package data), so an installed wheel has them too.
DEFAULT_SWEEPS = Path(__file__).resolve().parent / "sweeps"


@dataclass
class SearchBench:
    features: list[str]
    scale: int = 100_000  # synthetic vectors; 0 for none
    kinds: Sequence[str] = DEFAULT_KINDS
    queries: int = 1_000
    out_dir: Path = Path("benchmarks/results/search")
    fresh: bool = False
    real: bool = True  # also the store's own vectors
    sweeps_dir: Path | None = DEFAULT_SWEEPS
    seed: int = 0
    noise_scale: float = 1.0
    synthetic_feature: str | None = None  # default: vgg16 when present, else the first feature
    split: str = "default"
    sweeps: dict[str, Sweep] = field(default_factory=dict)

    def check(self) -> None:
        for kind in self.kinds:
            index_class(kind)
        if self.scale < 0 or self.queries < 1:
            raise CoverSearchError("--scale must be >= 0 and --queries >= 1")
        if not self.real and self.scale == 0:
            raise CoverSearchError("nothing to measure: --no-real with --scale 0")
        self.sweeps = {kind: load_sweep(kind, self.sweeps_dir) for kind in self.kinds}


@dataclass
class Prepared:
    datasets: list[Dataset]
    bindings: dict[str, tuple[Store, FeatureSet]]
    genre_tasks: dict[str, GenreTask]
    results: Results
    total_points: int


def prepare(bench: SearchBench, store: Store, store_name: str, log: Callable[[str], None] = lambda m: None) -> Prepared:
    bench.check()
    available = [fs.name for fs in store.feature_sets()]
    features = bench.features or [f for f in ("hsv", "vgg16") if f in available] or available
    missing = [f for f in features if f not in available]
    if missing or not features:
        raise CoverSearchError(f"the store has no {', '.join(missing) or 'feature'} embeddings; "
                               f"it has: {', '.join(available) or 'none'}")
    datasets: list[Dataset] = []
    bindings: dict[str, tuple[Store, FeatureSet]] = {}
    genre_tasks: dict[str, GenreTask] = {}
    loaded: dict[str, Any] = {}
    for feature in features:
        fs = store.feature_set(feature)
        ids, vectors = store.load_embeddings(fs)
        if len(ids) < 20:
            raise CoverSearchError(f"the store has only {len(ids)} {feature} vectors; a benchmark needs at least 20")
        loaded[feature] = (fs, ids, vectors, store.embedding_fingerprint(fs))
    if bench.real:
        for feature in features:
            fs, ids, vectors, fingerprint = loaded[feature]
            log(f"real data set: {feature}")
            d = real_dataset(store_name, feature, ids, vectors, fingerprint, bench.queries, bench.seed, metric_for(fs))
            datasets.append(d)
            bindings[d.key] = (store, fs)
            task = load_genre_task(store, feature, d.metric, bench.split)
            if task is not None:
                genre_tasks[feature] = task
    if bench.scale:
        source = bench.synthetic_feature or ("vgg16" if "vgg16" in features else features[0])
        if source not in loaded:
            raise CoverSearchError(f"--synthetic-feature {source} is not among the features benchmarked")
        fs, ids, vectors, fingerprint = loaded[source]
        log(f"synthetic data set: {bench.scale:,} vectors from {source}")
        datasets.append(synthetic_dataset(store_name, source, vectors, fingerprint, bench.scale, bench.queries,
                                          bench.seed, bench.noise_scale))
    results = Results(Path(bench.out_dir) / RESULTS_FILE)
    if bench.fresh:
        results.forget_datasets(d.key for d in datasets)
    total = plan_size(datasets, bench.kinds, bench.sweeps, bindings)
    return Prepared(datasets, bindings, genre_tasks, results, total)


def run(bench: SearchBench, prepared: Prepared, advance=lambda n=1: None, on_point=None, log=lambda m: None) -> int:
    return run_sweep(
        prepared.datasets, bench.kinds, bench.sweeps, prepared.results,
        cache_dir=Path(bench.out_dir) / "cache", bindings=prepared.bindings, genre_tasks=prepared.genre_tasks,
        advance=advance, on_point=on_point, log=log,
    )


def write(bench: SearchBench, prepared: Prepared) -> dict[str, Path]:
    return tables.write_outputs(prepared.results.data, Path(bench.out_dir))
