"""Mapper stage: read and hash each file, decide what is missing, decode and prepare features;
then ``extract_batch`` runs the batched part (one forward pass per backbone).

The mapper alone decides what to compute.  It starts from a snapshot of the store (sha256 ->
features stored) and remembers what it has scheduled, so the same bytes seen twice within its
batches (a cover filed under two genres) are decoded and embedded once.  Mappers working in
parallel (the Ray distributor) are told which listing position carries each byte content that
occurs more than once (``claims``), so they too embed it once.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
from functools import partial
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

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


def read_and_hash(path, max_bytes: int | None) -> tuple[bytes | None, str | None, ImageError | None]:
    try:
        data = read_bytes(path, max_bytes)
    except ImageError as exc:
        return None, None, exc
    return data, hashlib.sha256(data).hexdigest(), None


class Mapper:
    def __init__(
        self,
        embedder: Embedder,
        stored: Mapping[str, Collection[str]],
        *,
        claims: Mapping[str, int] | None = None,
        max_file_bytes: int | None = MAX_FILE_BYTES,
    ):
        """``stored``: sha256 -> feature names the store holds for those bytes (read, never changed);
        ``claims``: sha256 -> the listing position that computes those bytes' features."""
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        self._stored = stored
        self._claims = claims or {}
        self._scheduled: dict[str, set[str]] = {}  # sha -> features computed by this mapper
        self._failed: dict[str, ImageError] = {}  # sha -> why those bytes cannot be used

    def map_batch(self, items: Sequence[SourceItem], pool: Executor | None = None, offset: int = 0) -> list[MappedItem]:
        """``offset``: the listing position of ``items[0]`` (what ``claims`` refer to)."""
        run = pool.map if pool is not None else map
        mapped = [MappedItem(source=item) for item in items]
        raw: dict[int, bytes] = {}
        for i, (data, sha, error) in enumerate(run(partial(read_and_hash, max_bytes=self.max_file_bytes),
                                                   [item.path for item in items])):
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
            if self._claims.get(item.sha256, offset + i) != offset + i:
                continue  # another position computes these bytes (and is written before or with this one)
            have = self._scheduled.get(item.sha256)
            if have is None:
                stored = self._stored.get(item.sha256)
                have = None if stored is None else set(stored)
            missing = [name for name in self.embedder.names if have is None or name not in have]
            if missing:
                jobs.append((i, missing))
                self._scheduled[item.sha256] = (have or set()) | set(missing)

        def work(job: tuple[int, list[str]]):
            i, names = job
            try:
                image: DecodedImage = decode_image(raw[i])
            except ImageError as exc:
                return i, exc, None, {}
            info = (image.width, image.height, image.format)
            return i, None, info, self.embedder.prepare(image.rgb, names)

        for (_, names), (i, error, info, prepared) in zip(jobs, run(work, jobs)):
            if error is not None:
                mapped[i].error = error
                self._failed[mapped[i].sha256] = error
                self._scheduled.pop(mapped[i].sha256, None)
            else:
                mapped[i].image_info = info
                mapped[i].wanted = names
                mapped[i].prepared = prepared
        return mapped


def images_forwarded(embedder: Embedder) -> int:
    """Images this process's backbones for ``embedder`` have run so far (a summary counts passes)."""
    return sum(backbone.images_forwarded for backbone in embedder.backbones())


def extract_batch(embedder: Embedder, mapped: Sequence[MappedItem]) -> None:
    """Compute every feature each item lacks: one forward pass per backbone for the whole batch."""
    carriers = [item for item in mapped if item.prepared]
    if not carriers:
        return
    vectors = embedder.extract([item.prepared for item in carriers], [item.wanted for item in carriers])
    for item, found in zip(carriers, vectors):
        item.vectors.update(found)
        item.prepared = {}
