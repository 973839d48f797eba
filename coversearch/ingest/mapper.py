"""Mapper stage: read and hash each file, decide what is missing, decode and prepare features.

The mapper alone decides what to compute.  It starts from a snapshot of the store (which albums
exist, which embeddings they have) and remembers what it has scheduled in this run, so the same
bytes seen twice (a cover filed under two genres) are decoded and embedded once.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
from functools import partial
from dataclasses import dataclass, field
from typing import Any, Sequence

from coversearch.errors import ImageError
from coversearch.features.embedder import Embedder
from coversearch.imaging.images import MAX_FILE_BYTES, DecodedImage, decode_image, read_bytes
from coversearch.ingest.readers import SourceItem


@dataclass
class MappedItem:
    source: SourceItem
    sha256: str | None = None
    size: int | None = None
    error: ImageError | None = None
    image_info: tuple[int, int, str] | None = None  # width, height, format (when decoded)
    wanted: list[str] = field(default_factory=list)  # the features these bytes still lack
    prepared: dict[str, Any] = field(default_factory=dict)  # Embedder.prepare() output (one input per group)
    vectors: dict[str, Any] = field(default_factory=dict)  # feature name -> float32 vector (after extract)

    @property
    def ok(self) -> bool:
        return self.error is None


def _read_and_hash(item: SourceItem, max_bytes: int | None) -> tuple[bytes | None, str | None, ImageError | None]:
    try:
        data = read_bytes(item.path, max_bytes)
    except ImageError as exc:
        return None, None, exc
    return data, hashlib.sha256(data).hexdigest(), None


class Mapper:
    def __init__(
        self,
        embedder: Embedder,
        known_albums: dict[str, int],
        embedded: dict[str, set[int]],
        max_file_bytes: int | None = MAX_FILE_BYTES,
    ):
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        # sha -> feature names present in the store or already scheduled in this run
        self._have: dict[str, set[str]] = {
            sha: {name for name, ids in embedded.items() if album_id in ids} for sha, album_id in known_albums.items()
        }
        self._failed: dict[str, ImageError] = {}  # sha -> why those bytes cannot be used

    def map_batch(self, items: Sequence[SourceItem], pool: Executor) -> list[MappedItem]:
        mapped = [MappedItem(source=item) for item in items]
        raw: dict[int, bytes] = {}
        for i, (data, sha, error) in enumerate(pool.map(partial(_read_and_hash, max_bytes=self.max_file_bytes), items)):
            mapped[i].error = error
            mapped[i].sha256 = sha
            if data is not None:
                mapped[i].size = len(data)
                raw[i] = data

        # Decide, in order, which items carry the computation for their bytes.
        jobs: list[tuple[int, list[str]]] = []
        for i, item in enumerate(mapped):
            if item.error is not None:
                continue
            if item.sha256 in self._failed:
                item.error = self._failed[item.sha256]
                continue
            have = self._have.get(item.sha256)
            is_new = have is None
            missing = [name for name in self.embedder.names if is_new or name not in have]
            if missing:
                jobs.append((i, missing))
                self._have.setdefault(item.sha256, set()).update(missing)

        def work(job: tuple[int, list[str]]):
            i, names = job
            try:
                image: DecodedImage = decode_image(raw[i])
            except ImageError as exc:
                return i, exc, None, {}
            info = (image.width, image.height, image.format)
            return i, None, info, self.embedder.prepare(image.rgb, names)

        for (_, names), (i, error, info, prepared) in zip(jobs, pool.map(work, jobs)):
            if error is not None:
                mapped[i].error = error
                self._failed[mapped[i].sha256] = error
                self._have.pop(mapped[i].sha256, None)
            else:
                mapped[i].image_info = info
                mapped[i].wanted = names
                mapped[i].prepared = prepared
        return mapped


def extract_batch(embedder: Embedder, mapped: Sequence[MappedItem]) -> None:
    """Compute every feature each item lacks: one forward pass per backbone for the whole batch."""
    carriers = [item for item in mapped if item.prepared]
    if not carriers:
        return
    vectors = embedder.extract([item.prepared for item in carriers], [item.wanted for item in carriers])
    for item, found in zip(carriers, vectors):
        item.vectors.update(found)
        item.prepared = {}
