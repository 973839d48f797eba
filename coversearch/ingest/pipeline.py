"""The ingest runner: reader -> mapper -> writer over batches, run by a distributor.

After clip-retrieval's inference layout.  The reader lists the files (``readers.py``).  The
per-batch step is the mapper (read, hash, decide what is missing, decode, prepare; then the
batched embedding of every missing head: ``mapper.py``) and the writer (one transaction per batch:
``store/writer.py``).  The runner (``IngestRun``, here) plans the run once for every engine:
files the store already holds whole are left out, the rest is cut into batches, and every batch
is written through ``IngestRun.write`` in listing order.  A distributor runs the step over the
batches: ``local`` in this process (the mapper one batch ahead in a thread, the main thread
embedding and writing), ``ray`` on a Ray cluster (``ray_engine.py``).  A new feature needs no
engine code: both build their ``Embedder`` from the registry.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.base import FeatureExtractor
from coversearch.features.embedder import Embedder
from coversearch.imaging.images import MAX_FILE_BYTES
from coversearch.ingest.mapper import MappedItem, Mapper, extract_batch, images_forwarded, read_and_hash
from coversearch.ingest.readers import SourceItem, SourceListing
from coversearch.store import Store
from coversearch.store.writer import StoreWriter, WriteCounts

DEFAULT_BATCH_SIZE = 64
ENGINES = ("local", "ray")


@dataclass
class IngestSummary:
    seen: int = 0  # files listed by the reader (after --limit)
    left_out: int = 0  # files not read again: the store holds them with every feature and genre asked for
    counts: WriteCounts = field(default_factory=WriteCounts)
    seconds: float = 0.0
    images_forwarded: int = 0  # images through a network (one pass per new cover, whatever the heads)
    shards_resumed: int = 0  # ray: shards an interrupted run wrote, loaded now
    shards_written: int = 0  # ray: shards handed from the cluster to the store
    engine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        c = self.counts
        return {
            "files_seen": self.seen,
            "albums_added": c.albums,
            "files_added": c.files,
            "genre_links_added": c.genre_links,
            "embeddings_added": dict(c.embeddings),
            "unchanged": c.unchanged + self.left_out,
            "left_out": self.left_out,
            "errors": sum(c.errors.values()),
            "errors_by_reason": dict(sorted(c.errors.items())),
            "images_forwarded": self.images_forwarded,
            "shards_resumed": self.shards_resumed,
            "shards_written": self.shards_written,
            "engine": self.engine,
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.seen / self.seconds, 1) if self.seconds > 0 else None,
        }


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class IngestRun:
    """One ingest of a listing into a store: the plan, the writer and the running summary."""

    def __init__(self, store: Store, listing: SourceListing, extractors: Sequence[FeatureExtractor], *,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_file_bytes: int | None = MAX_FILE_BYTES,
                 on_progress: Callable[[int, WriteCounts], None] | None = None):
        if batch_size < 1:
            raise CoverSearchError("--batch-size must be at least 1")
        self.store = store
        self.listing = listing
        self.extractors = list(extractors)
        self.names = [ex.name for ex in self.extractors]
        self.batch_size = batch_size
        self.max_file_bytes = max_file_bytes
        self.on_progress = on_progress
        self.feature_sets = {ex.name: store.ensure_feature_set(ex) for ex in self.extractors}
        self.writer = StoreWriter(store, self.feature_sets)
        self.summary = IngestSummary(seen=len(listing.items))
        self.summary.counts.add(self.writer.write_problems(listing.problems))
        self.todo: list[SourceItem] = []
        self.stored: dict[str, tuple[str, ...]] = {}  # sha256 -> features the store holds
        self._failed: dict[str, ImageError] = {}  # sha256 -> why those bytes failed in this run
        self._decoded: set[str] = set()  # sha256 of bytes written as new albums in this run

    def plan(self) -> list[SourceItem]:
        """The items still to do, and the snapshot the mappers consult (``stored``).

        A file is left out when its path is stored with the same size, its album has every feature
        asked for and every genre this listing gives it.  Anything else is read; bytes already
        embedded under another path are then hashed but not decoded or embedded again.
        """
        store = self.store
        files = store.known_file_sizes()
        embedded = {name: store.embedded_album_ids(fs) for name, fs in self.feature_sets.items()}
        genres = store.genres_by_album()
        todo = []
        for item in self.listing.items:
            stored = files.get(str(item.path))
            if stored is not None:
                album_id, size = stored
                if size is not None and file_size(item.path) == size and all(album_id in embedded[n] for n in self.names) \
                        and set(item.genres) <= set(genres.get(album_id, ())):
                    continue
            todo.append(item)
        self.stored = {sha: tuple(n for n in self.names if album_id in embedded[n])
                       for sha, album_id in store.album_ids_by_sha().items()}
        self.todo = todo
        self.summary.left_out = len(self.listing.items) - len(todo)
        return todo

    def batches(self) -> Iterator[tuple[int, list[SourceItem]]]:
        """(position in ``todo`` of the first item, the items) for each batch, in order."""
        for start in range(0, len(self.todo), self.batch_size):
            yield start, self.todo[start : start + self.batch_size]

    def mapper(self, embedder: Embedder, claims: Mapping[str, int] | None = None) -> Mapper:
        return Mapper(embedder, self.stored, claims=claims, max_file_bytes=self.max_file_bytes)

    def claims(self) -> dict[str, int]:
        """sha256 -> the first position in ``todo`` of bytes that occur at several positions.

        For mappers that work in parallel: only files of equal size can hold equal bytes, so only
        those are read here."""
        by_size: dict[int, list[int]] = defaultdict(list)
        for pos, item in enumerate(self.todo):
            size = file_size(item.path)
            if size is not None and (self.max_file_bytes is None or size <= self.max_file_bytes):
                by_size[size].append(pos)
        first: dict[str, int] = {}
        repeated: set[str] = set()
        for positions in by_size.values():
            if len(positions) < 2:
                continue
            for pos in positions:
                _, sha, _ = read_and_hash(self.todo[pos].path, self.max_file_bytes)
                if sha is not None:
                    if sha in first:
                        repeated.add(sha)
                    first.setdefault(sha, pos)
        return {sha: first[sha] for sha in repeated}

    def write(self, mapped: Sequence[MappedItem], *, replay: bool = False) -> WriteCounts:
        """Commit one batch (in listing order).  Copies whose bytes another batch carried take that
        batch's outcome: its error, or the album it made.  ``replay``: a batch an interrupted run
        mapped (its carriers are in the store or in batches replayed before it)."""
        self._decoded.update(item.sha256 for item in mapped if item.ok and item.image_info is not None)
        for item in mapped:
            if replay or not item.ok or item.image_info is not None or item.sha256 in self.stored or item.sha256 in self._decoded:
                continue
            if item.sha256 in self._failed:
                item.error = self._failed[item.sha256]
            else:  # its carrier could not be read in this run (the file changed under it)
                item.error = ImageError("unreadable", "another copy of these bytes could not be read in this run; ingest again")
        counts = self.writer.write(mapped)
        for item in mapped:
            if item.sha256 is None:
                continue
            if item.error is not None:
                self._failed.setdefault(item.sha256, item.error)
        self.summary.counts.add(counts)
        if self.on_progress is not None:
            self.on_progress(len(mapped), counts)
        return counts


class _Prefetcher:
    """Runs the mapper over batches in a thread, at most ``depth`` batches ahead of the consumer."""

    _DONE = object()

    def __init__(self, mapper: Mapper, batches: Iterable[tuple[int, list[SourceItem]]], workers: int, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(mapper, batches, workers), name="coversearch-ingest-mapper", daemon=True
        )
        self._thread.start()

    def _put(self, value) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, mapper: Mapper, batches, workers: int) -> None:
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="coversearch-decode") as pool:
                for offset, batch in batches:
                    if not self._put(mapper.map_batch(batch, pool, offset)):
                        return
            self._put(self._DONE)
        except BaseException as exc:  # hand the failure to the consumer instead of dying silently
            self._put(exc)

    def __iter__(self) -> Iterator[list[MappedItem]]:
        while True:
            value = self._queue.get()
            if value is self._DONE:
                return
            if isinstance(value, BaseException):
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class LocalDistributor:
    """This process: a thread reads, hashes, decodes and prepares batch n+1 (a small pool: Pillow,
    OpenCV and hashlib release the GIL) while the main thread embeds and writes batch n."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or min(4, os.cpu_count() or 1)

    def resume(self, run: IngestRun) -> None:
        pass  # every committed batch is in the store already

    def run(self, run: IngestRun) -> None:
        embedder = Embedder(run.extractors)
        before = images_forwarded(embedder)
        prefetch = _Prefetcher(run.mapper(embedder), run.batches(), self.workers)
        try:
            for mapped in prefetch:
                extract_batch(embedder, mapped)
                run.write(mapped)
        finally:
            prefetch.close()
            run.summary.images_forwarded += images_forwarded(embedder) - before
        run.summary.engine = {"name": self.name, "decode_threads": self.workers}


def distributor(engine: str, *, workers: int | None = None, ray=None, vgg16_weights=None):
    """The distributor for ``engine``: "local" (``workers`` decode threads) or "ray" (``ray``: RayOptions)."""
    if engine == "local":
        return LocalDistributor(workers)
    if engine == "ray":
        from coversearch.ingest.ray_engine import RayDistributor, RayOptions

        return RayDistributor(ray or RayOptions(), vgg16_weights=vgg16_weights)
    raise CoverSearchError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def ingest(
    store: Store,
    listing: SourceListing,
    extractors: Sequence[FeatureExtractor],
    *,
    engine: str = "local",
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    ray=None,
    vgg16_weights: str | os.PathLike | None = None,
    on_progress: Callable[[int, WriteCounts], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    max_file_bytes: int | None = MAX_FILE_BYTES,
) -> IngestSummary:
    """Ingest every item of ``listing`` with ``extractors`` on ``engine``; returns what was added.

    ``on_plan(n)`` is told how many files will be read (the rest are left out);
    ``on_progress(n_files, batch_counts)`` follows each committed batch.  ``workers``: the local
    engine's decode threads; ``ray``: the Ray engine's ``RayOptions``; ``vgg16_weights``: what Ray
    workers build their networks from.
    """
    started = time.perf_counter()
    chosen = distributor(engine, workers=workers, ray=ray, vgg16_weights=vgg16_weights)
    run = IngestRun(store, listing, extractors, batch_size=batch_size, max_file_bytes=max_file_bytes,
                    on_progress=on_progress)
    chosen.resume(run)
    run.plan()
    if on_plan is not None:
        on_plan(len(run.todo))
    if run.todo:
        chosen.run(run)
    run.summary.seconds = time.perf_counter() - started
    return run.summary
