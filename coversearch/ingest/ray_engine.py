"""Ingest on Ray Data, with Parquet shards as the hand-off to the store.

The driver (this process) lists the files and leaves out those the store already holds.  Ray
Data then reads, hashes, decodes and prepares them in tasks, and an actor pool runs the batched
feature step (one VGG16 backbone per actor, TensorFlow's thread pools sized to the actor's CPUs).
Each output batch comes back to the driver, is written as one Parquet shard (temporary name,
then rename), and is loaded into the store by the same ``StoreWriter`` as local ingest, one
transaction per shard.  Loaded shards move to ``<shards>/loaded/``.

A run killed at any point resumes: shards written but not yet loaded are loaded first, then only
the files the store still lacks are listed again.  Nothing that reached a shard is recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from coversearch.errors import CoverSearchError, ImageError
from coversearch.imaging.images import MAX_FILE_BYTES, decode_image, read_bytes
from coversearch.features.embedder import Embedder
from coversearch.features.registry import get_extractor
from coversearch.ingest.mapper import MappedItem
from coversearch.ingest.pipeline import IngestSummary
from coversearch.ingest.readers import SourceItem, SourceListing
from coversearch.store.writer import StoreWriter, WriteCounts
from coversearch.store import Store
from coversearch.store.parquet import read_rows
from coversearch.store.db import TEXT_KIND

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
    batch_size: int = 64  # images per read task, per forward batch and per shard
    shards: Path | None = None  # default: <store>.shards/
    object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES  # local instance only
    max_file_bytes: int | None = MAX_FILE_BYTES  # larger files are error rows (too-large), never read


@dataclass
class RaySummary(IngestSummary):
    left_out: int = 0  # files the driver left out: the store holds them with every feature asked for
    shards_resumed: int = 0  # shards written by an earlier, interrupted run and loaded now
    shards_written: int = 0
    first_shard_seconds: float | None = None  # from the start to the first shard loaded (start-up included)
    shard_seconds: float = 0.0  # the driver's time writing shards and loading them into the store
    engine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update(
            left_out=self.left_out, shards_resumed=self.shards_resumed, shards_written=self.shards_written,
            first_shard_seconds=None if self.first_shard_seconds is None else round(self.first_shard_seconds, 2),
            shard_seconds=round(self.shard_seconds, 2), engine=self.engine,
        )
        return data


# -- per worker process ----------------------------------------------------------------------------
_EMBEDDERS: dict[tuple, Embedder] = {}
_KNOWN: dict[str, dict[str, tuple[str, ...]]] = {}


def _embedder(names: Sequence[str], vgg16_weights: str | None) -> Embedder:
    """This process's embedder for these features (networks are built only when first run)."""
    key = (tuple(names), vgg16_weights)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = Embedder(get_extractor(name, vgg16_weights=vgg16_weights) for name in names)
    return _EMBEDDERS[key]


def _known(ref) -> dict[str, tuple[str, ...]]:
    """The driver's snapshot (sha256 -> features stored), fetched once per worker process."""
    import ray

    key = ref.hex()
    if key not in _KNOWN:
        _KNOWN.clear()
        _KNOWN[key] = ray.get(ref)
    return _KNOWN[key]


# -- stage 1: Ray Data tasks ------------------------------------------------------------------------
def _read_columns(pa) -> dict:
    """What a read task adds to each row, with its Arrow type."""
    return {
        "sha256": pa.string(), "size": pa.int64(), "width": pa.int32(), "height": pa.int32(), "format": pa.string(),
        "error_reason": pa.string(), "error_detail": pa.string(),
        "wanted": pa.list_(pa.string()),  # the features these bytes still lack
        "prepared": pa.large_binary(),  # the embedder's per-image inputs, pickled (None: nothing to compute)
    }


def read_and_prepare(batch, names: Sequence[str], vgg16_weights: str | None, known_ref, max_file_bytes: int | None):
    """Read, hash, decode and prepare one batch of files (a pyarrow table of source items)."""
    import pyarrow as pa

    known = _known(known_ref)
    embedder = _embedder(names, vgg16_weights)
    types = _read_columns(pa)
    out: dict[str, list] = {key: [] for key in types}
    for path in batch.column("path").to_pylist():
        row = dict.fromkeys(types)
        row["wanted"] = []
        try:
            data = read_bytes(path, max_file_bytes)
            row["sha256"], row["size"] = hashlib.sha256(data).hexdigest(), len(data)
            stored = known.get(row["sha256"])
            wanted = [n for n in names if stored is None or n not in stored]
            if wanted:
                image = decode_image(data)
                row.update(width=image.width, height=image.height, format=image.format, wanted=wanted,
                           prepared=pickle.dumps(embedder.prepare(image.rgb, wanted), protocol=pickle.HIGHEST_PROTOCOL))
        except ImageError as exc:
            row.update(error_reason=exc.reason, error_detail=exc.detail, wanted=[], prepared=None)
        for key, value in row.items():
            out[key].append(value)
    for key, arrow_type in types.items():
        batch = batch.append_column(key, pa.array(out[key], arrow_type))
    return batch


# -- stage 2: the actor pool ------------------------------------------------------------------------
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
    """One actor: one embedder (one forward pass per backbone per batch) over the prepared inputs."""

    def __init__(self, names: Sequence[str], dims: dict[str, int], vgg16_weights: str | None, threads: int):
        self.names = list(names)
        self.dims = dims
        self.threads = threads
        self.embedder = _embedder(names, vgg16_weights)
        self._loaded = False

    def _load(self) -> None:
        """Networks are built on the first batch that needs them: a run that only retries bad files builds none."""
        if not self._loaded:
            if self.embedder.backbones():
                _set_tensorflow_threads(self.threads)
            self.embedder.load()
            self._loaded = True

    def __call__(self, batch):
        blobs = batch.column("prepared").to_pylist()
        wanted = batch.column("wanted").to_pylist()
        rows = [r for r, blob in enumerate(blobs) if blob is not None]
        vectors: dict[str, list] = {name: [None] * batch.num_rows for name in self.names}
        if rows:
            self._load()
            found = self.embedder.extract([pickle.loads(blobs[r]) for r in rows], [wanted[r] for r in rows])
            for r, item in zip(rows, found):
                for name, vector in item.items():
                    vectors[name][r] = vector
        batch = batch.drop_columns(["prepared", "wanted"])
        for name in self.names:
            batch = batch.append_column(VECTOR_PREFIX + name, _feature_column(vectors[name], self.dims[name]))
        return batch


def _feature_column(values: list, dim: int):
    """A feature's column: vectors, or (dim 0: the text feature) each cover's record as JSON text."""
    if dim == 0:
        import pyarrow as pa

        return pa.array(values, pa.large_string())
    return _vector_column(values, dim)


def _vector_column(values: list, dim: int):
    import pyarrow as pa

    """float32 vectors as a fixed-size list column; None (nothing computed for the row) is null."""
    flat = np.zeros((len(values), dim), dtype=np.float32)
    for i, v in enumerate(values):
        if v is not None:
            flat[i] = v
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=mask)


# -- shards -----------------------------------------------------------------------------------------
def default_shard_dir(db: Path) -> Path:
    return db.with_name(db.name + ".shards")


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


def load_shard(store: Store, writer: StoreWriter, path: Path) -> tuple[int, WriteCounts]:
    """One shard -> one transaction through the local ingest writer; then it moves to loaded/."""
    items = [_mapped_item(row, writer.feature_sets) for row in read_rows(store, path)]
    counts = writer.write(items)
    done = path.parent / LOADED
    done.mkdir(exist_ok=True)
    os.replace(path, done / path.name)
    return len(items), counts


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
            item.vectors[name] = vector if fs.kind == TEXT_KIND else np.asarray(vector, dtype=np.float32)
    return item


# -- the driver -------------------------------------------------------------------------------------
def plan(store: Store, items: Sequence[SourceItem], names: Sequence[str], feature_sets) -> tuple[list[SourceItem], dict]:
    """The items still to do, and the snapshot (sha256 -> stored features) the read tasks consult.

    A file is left out when its path is stored with the same size, its album has every feature
    asked for and every genre this listing gives it.  Anything else goes to Ray; bytes already
    embedded under another path are then hashed but not decoded or embedded again.
    """
    files = store.known_file_sizes()
    embedded = {name: store.embedded_album_ids(fs) for name, fs in feature_sets.items()}
    genres = store.genres_by_album()
    todo = []
    for item in items:
        stored = files.get(str(item.path))
        if stored is not None:
            album_id, size = stored
            if size is not None and _size(item.path) == size and all(album_id in embedded[n] for n in names) \
                    and set(item.genres) <= set(genres.get(album_id, ())):
                continue
        todo.append(item)
    known = {}
    for sha, album_id in store.album_ids_by_sha().items():
        known[sha] = tuple(n for n in names if album_id in embedded[n])
    return todo, known


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # no per-run INFO lines on stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CoverSearchError(RAY_HINT) from None
    return ray


def start_ray(options: RayOptions) -> dict[str, Any]:
    """Join the cluster at ``options.address``, or start a local instance sized for the actors."""
    ray = _import_ray()
    if ray.is_initialized():
        ray.shutdown()
    quiet = dict(log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if options.address:
        try:
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
    ray.init(
        address="local",  # a new instance, even when another one on this machine could be joined
        num_cpus=cpus,
        object_store_memory=options.object_store_memory,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        **quiet,
    )
    return {"address": "local", "cluster_cpus": cpus, "nodes": 1}


def build_dataset(items: Sequence[SourceItem], names: Sequence[str], dims: dict[str, int], vgg16_weights: str | None,
                  known_ref, options: RayOptions):
    ray = _import_ray()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # shards in listing order: album ids as local ingest gives
    rows = [{"path": str(i.path), "genres": list(i.genres), "url": i.url, "artist": i.artist, "title": i.title}
            for i in items]
    blocks = max(1, -(-len(rows) // options.batch_size))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(
        read_and_prepare,
        fn_kwargs={"names": list(names), "vgg16_weights": vgg16_weights, "known_ref": known_ref,
                   "max_file_bytes": options.max_file_bytes},
        batch_size=options.batch_size,
        batch_format="pyarrow",
        num_cpus=1,
        # Room for a batch of decoded and prepared images.  Resources unlike the actors' also keep
        # Ray from fusing the reads into the actors, which would serialise decoding and inference.
        memory=READ_TASK_BYTES + options.batch_size * READ_BYTES_PER_IMAGE,
    )
    return ds.map_batches(
        EmbedWorker,
        fn_constructor_kwargs={"names": list(names), "dims": dims, "vgg16_weights": vgg16_weights,
                               "threads": options.cpus_per_worker},
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_cpus=options.cpus_per_worker,
        batch_size=options.batch_size,
        batch_format="pyarrow",
    )


def ingest_ray(
    store: Store,
    listing: SourceListing,
    names: Sequence[str],
    *,
    vgg16_weights: str | os.PathLike | None = None,
    options: RayOptions | None = None,
    on_progress: Callable[[int, WriteCounts], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> RaySummary:
    """Ingest ``listing`` with the features ``names`` on Ray; returns what was added.

    ``on_plan(n)`` is told how many files Ray will process (after resumed shards and left-out
    files); ``on_progress(n_files, counts)`` follows each loaded shard.
    """
    options = options or RayOptions()
    for value, what in ((options.workers, "--workers"), (options.cpus_per_worker, "--cpus-per-worker"),
                        (options.batch_size, "--batch-size")):
        if value < 1:
            raise CoverSearchError(f"{what} must be at least 1")
    started = time.perf_counter()
    weights = str(vgg16_weights) if vgg16_weights else None
    extractors = [get_extractor(name, vgg16_weights=weights) for name in names]
    feature_sets = {ex.name: store.ensure_feature_set(ex) for ex in extractors}
    writer = StoreWriter(store, feature_sets)
    summary = RaySummary(seen=len(listing.items))
    summary.counts.add(writer.write_problems(listing.problems))

    folder = Path(options.shards) if options.shards else default_shard_dir(store.path)
    folder.mkdir(parents=True, exist_ok=True)
    for path in pending_shards(folder):
        _, counts = load_shard(store, writer, path)
        summary.counts.add(counts)
        summary.shards_resumed += 1

    todo, known = plan(store, listing.items, names, feature_sets)
    summary.left_out = len(listing.items) - len(todo)
    if on_plan is not None:
        on_plan(len(todo))
    if todo:
        summary.engine = start_ray(options)
        ray = _import_ray()
        try:
            dims = {ex.name: ex.dim for ex in extractors}
            dataset = build_dataset(todo, names, dims, weights, ray.put(known), options)
            run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            for seq, table in enumerate(_batches(dataset)):
                arrived = time.perf_counter()
                path = write_shard(table, folder, f"shard-{run}-{seq:06d}{SHARD_SUFFIX}")
                summary.shards_written += 1
                n, counts = load_shard(store, writer, path)
                summary.counts.add(counts)
                summary.shard_seconds += time.perf_counter() - arrived
                if summary.first_shard_seconds is None:
                    summary.first_shard_seconds = time.perf_counter() - started
                if on_progress is not None:
                    on_progress(n, counts)
        finally:
            ray.shutdown()
    summary.engine.update(workers=options.workers, cpus_per_worker=options.cpus_per_worker,
                          batch_size=options.batch_size, shards=str(folder))
    summary.seconds = time.perf_counter() - started
    return summary


def _batches(dataset) -> Iterable:
    for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        if table.num_rows:
            yield table
