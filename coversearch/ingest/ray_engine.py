"""The Ray distributor: the ingest runner's per-batch step on a Ray cluster, Parquet shards as
the hand-off to the store.

Read tasks run the mapper (read, hash, decode, prepare) on a batch; an actor pool runs the
batched embedding (one backbone per actor, TensorFlow's thread pools sized to the actor's CPUs).
Each embedded batch comes back to the driver in listing order, is written as one Parquet shard
(temporary name, then rename) and is committed by the runner's writer, one transaction per shard;
loaded shards move to ``<shards>/loaded/``.  Bytes found at several paths are claimed by their
first position (``IngestRun.claims``), so parallel mappers embed them once.

A run killed at any point resumes: shards written but not yet loaded are loaded first, then only
the files the store still lacks are listed again.  Nothing that reached a shard is recomputed.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.embedder import Embedder
from coversearch.features.registry import get_extractor
from coversearch.ingest.mapper import MappedItem, Mapper, extract_batch, images_forwarded
from coversearch.ingest.readers import SourceItem
from coversearch.store.parquet import read_rows
from coversearch.store.rows import TEXT_KIND, VECTOR_KIND, FeatureSet
from coversearch.ray_local import LocalInstanceWatch, check_local_cpus, check_reachable, one_join_attempt

if TYPE_CHECKING:  # the runner picks this distributor; it is handed the run
    from coversearch.ingest.pipeline import IngestRun

RAY_HINT = "Ray is not installed: pip install 'coversearch[ray]' (or pip install 'ray[data]')"
SHARD_SUFFIX = ".parquet"
LOADED = "loaded"
VECTOR_PREFIX = "vector_"
# Object store for a local instance: room for a few batches of prepared 224 px inputs per actor.
DEFAULT_OBJECT_STORE_BYTES = 1 << 30
# Memory a read task reserves: its worker process (about 200 MiB with numpy, Pillow and OpenCV
# loaded), plus per image the decoded cover and its prepared 224 px float inputs.
READ_TASK_BYTES = 256 << 20
READ_BYTES_PER_IMAGE = 4 << 20


@dataclass
class RayOptions:
    address: str | None = None  # None: a local Ray instance started (and stopped) here
    workers: int = 1  # actors, each holding one backbone
    cpus_per_worker: int = 1  # logical CPUs reserved per actor = TensorFlow threads in it
    shards: Path | None = None  # default: <store>.shards/
    object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES  # local instance only

    def check(self) -> "RayOptions":
        """Refuse values below 1, and a local instance asked for more CPUs than this machine has
        (a cluster's CPUs are checked when it is joined)."""
        for value, what in ((self.workers, "--workers"), (self.cpus_per_worker, "--cpus-per-worker")):
            if value < 1:
                raise CoverSearchError(f"{what} must be at least 1")
        if not self.address:
            check_local_cpus(self.workers, self.cpus_per_worker)
        return self


# -- per worker process ----------------------------------------------------------------------------
_EMBEDDERS: dict[tuple, Embedder] = {}
_CONTEXT: dict[str, dict] = {}


def _embedder(names: Sequence[str], vgg16_weights: str | None) -> Embedder:
    """This process's embedder for these features (networks are built only when first run)."""
    key = (tuple(names), vgg16_weights)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = Embedder(get_extractor(name, vgg16_weights=vgg16_weights) for name in names)
    return _EMBEDDERS[key]


def _context(ref) -> dict:
    """The driver's plan (snapshot, claims), fetched once per worker process."""
    import ray

    key = ref.hex()
    if key not in _CONTEXT:
        _CONTEXT.clear()
        _CONTEXT[key] = ray.get(ref)
    return _CONTEXT[key]


def map_batch(boxed_context: list, items: list[SourceItem], offset: int) -> list[MappedItem]:
    """A read task: the runner's mapper over one batch (``boxed_context``: [the plan's object ref])."""
    context = _context(boxed_context[0])
    mapper = Mapper(_embedder(context["names"], context["vgg16_weights"]), context["stored"],
                    claims=context["claims"], max_file_bytes=context["max_file_bytes"])
    return mapper.map_batch(items, None, offset)


def _set_tensorflow_threads(threads: int) -> None:
    """TensorFlow ignores OMP_NUM_THREADS: size its pools before it builds anything."""
    from coversearch.features.vgg16 import import_keras

    import_keras()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process: its pools cannot change any more
        logging.getLogger(__name__).warning("TensorFlow was already initialised; thread pools left as they are")


class EmbedWorker:
    """One actor: the runner's batched embedding (one forward pass per backbone per batch)."""

    def __init__(self, names: Sequence[str], vgg16_weights: str | None, threads: int):
        self.embedder = _embedder(names, vgg16_weights)
        self.threads = threads
        self._loaded = False

    def embed(self, mapped: list[MappedItem]) -> tuple[list[MappedItem], int]:
        """The batch with its vectors, and how many images went through a network for it."""
        if any(item.prepared for item in mapped) and not self._loaded:
            # Networks are built on the first batch that needs them: a run that only retries bad files builds none.
            if self.embedder.backbones():
                _set_tensorflow_threads(self.threads)
            self.embedder.load()
            self._loaded = True
        before = images_forwarded(self.embedder)
        extract_batch(self.embedder, mapped)
        return mapped, images_forwarded(self.embedder) - before


# -- shards -----------------------------------------------------------------------------------------
def default_shard_dir(db: Path) -> Path:
    return db.with_name(db.name + ".shards")


def shard_table(items: Sequence[MappedItem], feature_sets: dict[str, FeatureSet]):
    """A batch as an Arrow table: the source, what the mapper found, one vector column per feature."""
    import pyarrow as pa

    def column(get, arrow_type):
        return pa.array([get(item) for item in items], arrow_type)

    info = lambda i: lambda item: item.image_info[i] if item.image_info else None  # noqa: E731
    columns = {
        "path": column(lambda it: str(it.source.path), pa.string()),
        "genres": column(lambda it: list(it.source.genres), pa.list_(pa.string())),
        "url": column(lambda it: it.source.url, pa.string()),
        "artist": column(lambda it: it.source.artist, pa.string()),
        "title": column(lambda it: it.source.title, pa.string()),
        "sha256": column(lambda it: it.sha256, pa.string()),
        "size": column(lambda it: it.size, pa.int64()),
        "width": column(info(0), pa.int32()),
        "height": column(info(1), pa.int32()),
        "format": column(info(2), pa.string()),
        "error_reason": column(lambda it: it.error.reason if it.error else None, pa.string()),
        "error_detail": column(lambda it: it.error.detail if it.error else None, pa.string()),
    }
    for name, fs in feature_sets.items():
        columns[VECTOR_PREFIX + name] = _vector_column([item.vectors.get(name) for item in items], fs)
    return pa.table(columns)


def _vector_column(values: list, fs: FeatureSet):
    """float32 vectors as a fixed-size list column (a record or text set: one value a row); None
    (nothing computed for the row) is null."""
    import pyarrow as pa

    if fs.kind != VECTOR_KIND:
        return pa.array(values, pa.large_string() if fs.kind == TEXT_KIND else pa.binary())
    dim = fs.dim
    flat = np.zeros((len(values), dim), dtype=np.float32)
    for i, v in enumerate(values):
        if v is not None:
            flat[i] = v
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=mask)


def write_shard(table, folder: Path, name: str) -> Path:
    """Write ``table`` as ``folder/name``: to a temporary name, synced, then renamed."""
    import pyarrow.parquet as pq

    final = folder / name
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def pending_shards(folder: Path) -> list[Path]:
    """Shards written but not loaded yet (an interrupted run's), oldest first; stale temp files removed."""
    if not folder.is_dir():
        return []
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)  # a write cut short: its rows were never loaded, they are redone
    return sorted(p for p in folder.glob("*" + SHARD_SUFFIX) if p.is_file())


def load_shard(run: IngestRun, path: Path, *, replay: bool = False) -> int:
    """One shard -> one transaction through the runner's writer; then it moves to loaded/."""
    items = [_mapped_item(row, run.feature_sets) for row in read_rows(run.store, path)]
    run.write(items, replay=replay)
    done = path.parent / LOADED
    done.mkdir(exist_ok=True)
    os.replace(path, done / path.name)
    return len(items)


def _mapped_item(row: dict[str, Any], feature_sets) -> MappedItem:
    source = SourceItem(Path(row["path"]), tuple(row["genres"] or ()), row.get("url"), row.get("artist"), row.get("title"))
    item = MappedItem(source=source, sha256=row["sha256"], size=row["size"])
    if row["error_reason"] is not None:
        item.error = ImageError(row["error_reason"], row["error_detail"] or "")
        return item
    if row["width"] is not None:
        item.image_info = (row["width"], row["height"], row["format"])
    for name, fs in feature_sets.items():
        vector = row.get(VECTOR_PREFIX + name)
        if vector is not None:
            item.vectors[name] = np.asarray(vector, dtype=np.float32) if fs.kind == VECTOR_KIND else vector
    return item


# -- the cluster ------------------------------------------------------------------------------------
def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import ray
    except ImportError:
        raise CoverSearchError(RAY_HINT) from None
    return ray


def start_ray(options: RayOptions) -> dict[str, Any]:
    """Join the cluster at ``options.address``, or start a local instance sized for the actors."""
    ray = _import_ray()
    if ray.is_initialized():
        stop_ray()
    quiet = dict(log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if options.address:
        check_reachable(options.address)  # nothing listening: fail now, not after Ray's minutes of retries
        try:
            with one_join_attempt():
                ray.init(address=options.address, **quiet)
        except Exception as exc:  # ConnectionError, or Ray's own errors for a bad address
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            cause = str(exc.__cause__ or "")
            if "InvalidAuthToken" in cause or "auth" in detail.lower():
                detail = ("the cluster asks for an auth token: export RAY_AUTH_MODE=token here, with the cluster's "
                          "token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
            raise CoverSearchError(f"cannot join the Ray cluster at {options.address}: {detail}") from None
        cpus = ray.cluster_resources().get("CPU", 0)
        needed = options.workers * options.cpus_per_worker
        if cpus <= needed:
            ray.shutdown()
            raise CoverSearchError(
                f"the Ray cluster at {options.address} has {cpus:g} CPUs; {options.workers} workers x "
                f"{options.cpus_per_worker} CPUs need more than {needed} (read tasks need CPUs of their own)"
            )
        return {"address": options.address, "cluster_cpus": cpus, "nodes": len(ray.nodes())}
    # Actors that reserve every logical CPU starve the read tasks (ray-project/ray#44687): one more.
    cpus = options.workers * options.cpus_per_worker + 1
    global _WATCH
    _WATCH = LocalInstanceWatch.start(lambda: ray.init(
        address="local",  # a new instance, even when another one on this machine could be joined
        num_cpus=cpus,
        object_store_memory=options.object_store_memory,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        **quiet,
    ))
    return {"address": "local", "cluster_cpus": cpus, "nodes": 1}


_WATCH: LocalInstanceWatch | None = None  # the watchdog of the local instance start_ray started


def stop_ray() -> None:
    """Shut Ray down; the local instance's watchdog then ends whatever of it is left."""
    global _WATCH
    _import_ray().shutdown()
    if _WATCH is not None:
        _WATCH.stop()
        _WATCH = None


class RayDistributor:
    """Runs the runner's batches on Ray: read tasks map, actors embed, the driver writes in order."""

    name = "ray"

    def __init__(self, options: RayOptions, *, vgg16_weights: str | os.PathLike | None = None):
        self.options = options.check()
        self.vgg16_weights = str(vgg16_weights) if vgg16_weights else None
        self.folder: Path | None = None
        self.stats: dict[str, Any] = {"shard_seconds": 0.0, "first_shard_seconds": None}

    def _describe(self, run: IngestRun, cluster: dict[str, Any]) -> None:
        o = self.options
        run.summary.engine = {"name": self.name, **cluster, "workers": o.workers, "cpus_per_worker": o.cpus_per_worker,
                              "batch_size": run.batch_size, "shards": str(self.folder),
                              "shard_seconds": round(self.stats["shard_seconds"], 2),
                              "first_shard_seconds": self.stats["first_shard_seconds"]}

    def resume(self, run: IngestRun) -> None:
        self.started = time.perf_counter()
        self.folder = Path(self.options.shards) if self.options.shards else default_shard_dir(run.store.path)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in pending_shards(self.folder):
            load_shard(run, path, replay=True)
            run.summary.shards_resumed += 1
        self._describe(run, {})

    def run(self, run: IngestRun) -> None:
        ray = _import_ray()
        options = self.options
        claims = run.claims()
        cluster = start_ray(options)
        try:
            context = ray.put({"names": run.names, "vgg16_weights": self.vgg16_weights, "stored": run.stored,
                               "claims": claims, "max_file_bytes": run.max_file_bytes})
            read = ray.remote(map_batch).options(
                num_cpus=1, memory=READ_TASK_BYTES + run.batch_size * READ_BYTES_PER_IMAGE)
            actors = [ray.remote(EmbedWorker).options(num_cpus=options.cpus_per_worker)
                      .remote(run.names, self.vgg16_weights, options.cpus_per_worker) for _ in range(options.workers)]
            tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            in_flight: deque = deque()
            window = 2 * options.workers + 2  # batches mapped or embedded ahead of the writer
            for seq, (offset, batch) in enumerate(run.batches()):
                mapped = read.remote([context], batch, offset)
                in_flight.append(actors[seq % len(actors)].embed.remote(mapped))
                if len(in_flight) >= window:
                    self._land(ray, run, in_flight.popleft(), f"shard-{tag}-{run.summary.shards_written:06d}")
            while in_flight:
                self._land(ray, run, in_flight.popleft(), f"shard-{tag}-{run.summary.shards_written:06d}")
        finally:
            stop_ray()
            self._describe(run, cluster)

    def _land(self, ray, run: IngestRun, ref, name: str) -> None:
        items, forwarded = ray.get(ref)
        arrived = time.perf_counter()
        run.summary.images_forwarded += forwarded
        path = write_shard(shard_table(items, run.feature_sets), self.folder, name + SHARD_SUFFIX)
        run.summary.shards_written += 1
        load_shard(run, path)
        self.stats["shard_seconds"] += time.perf_counter() - arrived
        if self.stats["first_shard_seconds"] is None:
            self.stats["first_shard_seconds"] = round(time.perf_counter() - self.started, 2)
