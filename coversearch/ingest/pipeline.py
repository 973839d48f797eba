"""Run reader -> mapper -> writer with the mapper working one batch ahead.

A background thread reads, hashes, decodes and prepares batch n+1 (with a small thread pool:
Pillow, OpenCV and hashlib release the GIL) while the main thread runs the batched feature step
(the VGG16 forward pass) and writes batch n.  This is what keeps ingest close to the speed of the
network alone.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from coversearch.features.base import FeatureExtractor
from coversearch.features.embedder import Embedder
from coversearch.imaging.images import MAX_FILE_BYTES
from coversearch.ingest.mapper import MappedItem, Mapper, extract_batch
from coversearch.ingest.readers import SourceItem, SourceListing
from coversearch.store.writer import StoreWriter, WriteCounts
from coversearch.store import Store

DEFAULT_BATCH_SIZE = 64


@dataclass
class IngestSummary:
    seen: int = 0  # files listed by the reader (after --limit)
    counts: WriteCounts = field(default_factory=WriteCounts)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        c = self.counts
        return {
            "files_seen": self.seen,
            "albums_added": c.albums,
            "files_added": c.files,
            "genre_links_added": c.genre_links,
            "embeddings_added": dict(c.embeddings),
            "unchanged": c.unchanged,
            "errors": sum(c.errors.values()),
            "errors_by_reason": dict(sorted(c.errors.items())),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.seen / self.seconds, 1) if self.seconds > 0 else None,
        }


def _batches(items: Sequence[SourceItem], size: int) -> Iterator[Sequence[SourceItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Prefetcher:
    """Runs the mapper over batches in a thread, at most ``depth`` batches ahead of the consumer."""

    _DONE = object()

    def __init__(self, mapper: Mapper, items: Sequence[SourceItem], batch_size: int, workers: int, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(mapper, items, batch_size, workers), name="coversearch-ingest-mapper", daemon=True
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

    def _run(self, mapper: Mapper, items, batch_size: int, workers: int) -> None:
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="coversearch-decode") as pool:
                for batch in _batches(items, batch_size):
                    if not self._put(mapper.map_batch(batch, pool)):
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


def ingest(
    store: Store,
    listing: SourceListing,
    extractors: Sequence[FeatureExtractor],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    on_progress: Callable[[int, WriteCounts], None] | None = None,
    max_file_bytes: int | None = MAX_FILE_BYTES,
) -> IngestSummary:
    """Ingest every item of ``listing`` with ``extractors``; returns what was added.

    ``on_progress(n_done, batch_counts)`` is called after each committed batch.
    """
    import time

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    started = time.perf_counter()
    feature_sets = {ex.name: store.ensure_feature_set(ex) for ex in extractors}
    writer = StoreWriter(store, feature_sets)
    summary = IngestSummary(seen=len(listing.items))
    summary.counts.add(writer.write_problems(listing.problems))

    embedder = Embedder(extractors)
    mapper = Mapper(
        embedder,
        known_albums=store.album_ids_by_sha(),
        embedded={name: store.embedded_album_ids(fs) for name, fs in feature_sets.items()},
        max_file_bytes=max_file_bytes,
    )
    prefetch = _Prefetcher(mapper, listing.items, batch_size, workers or min(4, os.cpu_count() or 1))
    try:
        for mapped in prefetch:
            extract_batch(embedder, mapped)
            counts = writer.write(mapped)
            summary.counts.add(counts)
            if on_progress is not None:
                on_progress(len(mapped), counts)
    finally:
        prefetch.close()
    summary.seconds = time.perf_counter() - started
    return summary
