"""Sharded builds of the IVF kinds: train once on a sample, encode shards in parallel, merge.

The method of autofaiss (criteo/autofaiss), without the package:

1. **Train** the coarse quantizer (and the PQ / OPQ codebooks) once, on a seeded reservoir sample
   of the store (``train_points_per_list`` x nlist vectors, 256 by default, the top of faiss's
   guideline of 30-256 per list: 64 per list cost 0.02-0.03 recall@10 at 1M; fewer than ``min_points_per_list`` x nlist in the whole store is an error naming the minimum).
2. **Add**: the store's album ids, ascending, are cut into N contiguous slices.  Each shard reads
   its slice from the store in chunks, encodes it into an empty copy of the trained index, labels
   each vector with its row number (its place in ``ids.npy``) and writes a shard file.  Shards are
   independent: the ``local`` engine runs them one after another in this process, the ``ray``
   engine runs each as a Ray task (one CPU) on a local Ray instance.
3. **Merge** the shards' inverted lists into one index: in memory (``IndexIVF.merge_from``, one
   shard at a time), or into a file of on-disk inverted lists (``faiss.contrib.ondisk``) when the
   codes should not sit in RAM.

Because every shard encodes with the same trained index and rows keep the store's order, the
merged index holds exactly the codes, lists and labels a single-process ``add`` would.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import faiss
import numpy as np

from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.index.faiss_base import IVFDATA_FILE, faiss_notes_to_stderr
from coversearch.index.faiss_ivf import IVFFlatIndex, min_training_vectors
from coversearch.index.params import kind_defaults
from coversearch.index.threads import available_cores
from coversearch.ray_local import LocalInstanceWatch
from coversearch.store import FeatureSet, Store

ENGINES = ("local", "ray")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ShardOptions:
    shards: int = 4
    engine: str = "local"  # "local": shards in turn in this process; "ray": one Ray task per shard
    on_disk: bool = False  # merge into on-disk inverted lists (index.ivfdata) instead of RAM
    chunk_rows: int = 50_000  # vectors read from the store at a time by a shard
    ray_cpus: int | None = None  # CPUs of the local Ray instance (default: min(shards, cores))
    ray_object_store_mb: int = 256

    def check(self) -> "ShardOptions":
        if self.engine not in ENGINES:
            raise CoverSearchError(f"unknown engine {self.engine!r}; choose from {', '.join(ENGINES)}")
        if self.shards < 1:
            raise CoverSearchError(f"--shards must be at least 1, not {self.shards}")
        if self.chunk_rows < 1:
            raise CoverSearchError(f"chunk rows must be at least 1, not {self.chunk_rows}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Shard:
    number: int
    first_row: int  # its vectors are rows [first_row, first_row + rows) of the index
    rows: int
    first_id: int  # album ids [first_id, last_id] of the store
    last_id: int


def plan_shards(ids: np.ndarray, shards: int) -> list[Shard]:
    """Contiguous slices of the ascending album ids, as even as can be."""
    if len(ids) < shards:
        raise CoverSearchError(f"{shards} shards for {len(ids)} vectors: use at most {len(ids)} shards")
    bounds = np.linspace(0, len(ids), shards + 1).round().astype(np.int64)
    return [
        Shard(i, int(lo), int(hi - lo), int(ids[lo]), int(ids[hi - 1]))
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


def training_sample_size(n: int, nlist: int, rules: dict) -> int:
    """train_points_per_list x nlist vectors (at least min_points_per_list x nlist), at most n."""
    wanted = max(int(rules["train_points_per_list"]), int(rules["min_points_per_list"])) * int(nlist)
    return int(min(n, wanted))


def check_trainable(index: IVFFlatIndex, n: int) -> None:
    """One clear error when the store is too small to train the index's lists."""
    rules = kind_defaults(index.kind).auto
    nlist = int(index.build_params["nlist"])
    needed = min_training_vectors(nlist, rules)
    if n < needed:
        raise CoverSearchError(
            f"the store has {n:,} vectors; training {nlist:,} lists needs at least {needed:,} "
            f"({rules['min_points_per_list']} per list): build with fewer lists (--param nlist=...) or nlist=auto"
        )


def train_on_sample(index: IVFFlatIndex, store: Store, fs: FeatureSet, n: int) -> tuple[faiss.Index, int]:
    """The trained, empty FAISS index and the number of vectors it was trained on."""
    rules = kind_defaults(index.kind).auto
    size = training_sample_size(n, int(index.build_params["nlist"]), rules)
    _, sample = store.sample_embeddings(fs, size, seed=int(index.build_params["seed"]))
    trained = index._new_faiss_index(n)
    trained.train(metrics.prepare(sample, index.metric))
    return trained, len(sample)


def encode_shard(
    trained: faiss.Index, chunks: Iterable[tuple[np.ndarray, np.ndarray]], shard: Shard, metric: str, out: Path
) -> dict:
    """Encode one shard's chunks into a copy of ``trained``, labelled by row, and write it to ``out``."""
    started = time.perf_counter()
    part = faiss.clone_index(trained)
    row = shard.first_row
    for _, vectors in chunks:
        x = metrics.prepare(vectors, metric)
        part.add_with_ids(x, np.arange(row, row + len(x), dtype=np.int64))
        row += len(x)
    if row - shard.first_row != shard.rows:
        raise CoverSearchError(
            f"shard {shard.number} read {row - shard.first_row} vectors, planned {shard.rows}: the store changed during "
            "the build; build again"
        )
    faiss.write_index(part, str(out))
    return {"shard": shard.number, "rows": shard.rows, "seconds": round(time.perf_counter() - started, 3), "path": str(out)}


def shard_task(
    store_path: str, fs: FeatureSet, shard: Shard, trained_bytes: np.ndarray, metric: str, out: str, chunk_rows: int,
    threads: int,
) -> dict:
    """One shard in its own process (a Ray task): open the store read-only, read, encode, write."""
    faiss.omp_set_num_threads(threads)
    trained = faiss.deserialize_index(trained_bytes)
    with Store.open(store_path, read_only=True) as store:
        chunks = store.iter_embeddings(fs, shard.first_id, shard.last_id, chunk_rows)
        return encode_shard(trained, chunks, shard, metric, Path(out))


def merge_in_memory(paths: list[Path]) -> faiss.Index:
    """The shards' lists moved into the first shard's index, one shard in memory at a time."""
    merged = faiss.read_index(str(paths[0]))
    target = faiss.extract_index_ivf(merged)
    for path in paths[1:]:
        part = faiss.read_index(str(path))
        target.merge_from(faiss.extract_index_ivf(part), 0)
        del part
    merged.ntotal = target.ntotal  # the wrapper (e.g. an OPQ IndexPreTransform) counts too
    return merged


def merge_on_disk(trained: faiss.Index, paths: list[Path], ivfdata: Path) -> faiss.Index:
    """``trained`` with the shards' lists merged into on-disk inverted lists in ``ivfdata``; the
    shards are memory-mapped, so neither they nor the result need to fit in RAM."""
    from faiss.contrib.ondisk import merge_ondisk

    merged = faiss.clone_index(trained)
    with faiss_notes_to_stderr():
        merge_ondisk(merged, [str(p) for p in paths], str(ivfdata))
    return merged


def build_sharded(
    store: Store, fs: FeatureSet, index: IVFFlatIndex, options: ShardOptions, work: Path, progress: Progress | None = None
) -> dict:
    """Build ``index`` (an unbuilt faiss-ivf / faiss-ivfpq) from the store in shards; shard files and
    on-disk lists go to the private folder ``work``.  Returns the timings for the manifest."""
    say = progress or (lambda _message: None)
    options.check()
    if not isinstance(index, IVFFlatIndex):
        raise CoverSearchError(f"a sharded build needs an IVF kind (faiss-ivf, faiss-ivfpq), not {index.kind}")
    if index.build_params.get("refine"):
        raise CoverSearchError(
            "refine=true keeps every full vector in RAM (IndexRefineFlat), which a sharded build is there to avoid: "
            "build with refine=false and re-rank from the store with the query parameter rerank=N"
        )
    ids = store.embedding_album_ids(fs)
    if len(ids) == 0:
        raise CoverSearchError(f"the store has no {fs.label} vectors to index; run `coversearch ingest --features {fs.name}`")
    index.resolve_params(len(ids))
    check_trainable(index, len(ids))
    shards = plan_shards(ids, options.shards)

    started = time.perf_counter()
    say(f"training {index._factory_string()} on a sample of the store's {len(ids):,} {fs.label} vectors")
    trained, sample = train_on_sample(index, store, fs, len(ids))
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    say(f"adding {len(ids):,} vectors in {len(shards)} shards ({options.engine} engine)")
    paths = [work / f"shard-{s.number:04d}.faiss" for s in shards]
    if options.engine == "ray":
        results = _add_with_ray(store, fs, shards, trained, index.metric, paths, options)
    else:
        results = []
        for shard, path in zip(shards, paths):
            chunks = store.iter_embeddings(fs, shard.first_id, shard.last_id, options.chunk_rows)
            results.append(encode_shard(trained, chunks, shard, index.metric, path))
            say(f"shard {shard.number + 1}/{len(shards)}: {shard.rows:,} vectors in {results[-1]['seconds']:.1f} s")
    add_seconds = time.perf_counter() - started

    started = time.perf_counter()
    say(f"merging {len(shards)} shards {'into on-disk lists' if options.on_disk else 'in memory'}")
    if options.on_disk:
        merged = merge_on_disk(trained, paths, work / IVFDATA_FILE)
        index.lists_folder, index.lists_private = work, True
    else:
        merged = merge_in_memory(paths)
    for path in paths:
        path.unlink(missing_ok=True)
    merge_seconds = time.perf_counter() - started
    if merged.ntotal != len(ids):
        raise CoverSearchError(f"the merged index holds {merged.ntotal} vectors, the store {len(ids)}")
    index.faiss_index = merged
    index.ids = ids
    return {
        **options.to_dict(),
        "train_vectors": sample,
        "train_seconds": round(train_seconds, 3),
        "add_seconds": round(add_seconds, 3),
        "shard_seconds": [r["seconds"] for r in sorted(results, key=lambda r: r["shard"])],
        "merge_seconds": round(merge_seconds, 3),
    }


def _add_with_ray(
    store: Store, fs: FeatureSet, shards: list[Shard], trained: faiss.Index, metric: str, paths: list[Path],
    options: ShardOptions,
) -> list[dict]:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    watch = None
    if started_here:
        cpus = options.ray_cpus or max(1, min(len(shards), available_cores()))
        watch = LocalInstanceWatch.start(lambda: ray.init(
            address="local",  # a new instance, never one someone else started on this machine
            num_cpus=cpus,
            object_store_memory=int(options.ray_object_store_mb) * 2**20,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level=logging.WARNING,  # no INFO lines on the command's stderr
            # The workers import coversearch from where this process does.
            runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")]))}},
        ))
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(shard_task)
        trained_ref = ray.put(faiss.serialize_index(trained))
        futures = [
            task.remote(str(Path(store.path).resolve()), fs, shard, trained_ref, metric, str(path), options.chunk_rows, 1)
            for shard, path in zip(shards, paths)
        ]
        try:
            return ray.get(futures)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            raise CoverSearchError(f"a Ray shard task failed: {str(cause).strip().splitlines()[-1][:200]}") from None
    finally:
        if started_here:
            ray.shutdown()
            watch.stop()


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    try:
        import ray
    except ImportError:
        raise CoverSearchError("the ray engine needs Ray: pip install 'coversearch[ray]' (or ray[data])") from None
    return ray
