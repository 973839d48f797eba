"""Apply a trained genre model to new image files: the library function behind `coversearch classify`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from coversearch.classify.calibration import Answer
from coversearch.classify.model import ModelError, TrainedModel
from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.base import extractor_mismatch
from coversearch.features.embedder import Embedder
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import FEATURE_NAMES, get_extractor
from coversearch.store import Store

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def expand_image_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded to their image files (recursively, sorted, hidden skipped)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(
                p for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            out.append(path)
    if not out:
        raise CoverSearchError("no images to classify")
    return out


@dataclass
class Classification:
    path: Path
    answer: Answer | None  # the genre or "unknown", and every genre ranked with its calibrated probability
    error: str | None = None

    @property
    def genres(self) -> list[tuple[str, float]] | None:
        return self.answer.ranked if self.answer else None


def classify_images(
    store: Store,
    model: TrainedModel,
    paths: Sequence[Path],
    *,
    vgg16_weights=None,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
    min_confidence: float | None = None,
) -> list[Classification]:
    """Classify image files with one loaded model; undecodable files get an error, not a crash.

    ``min_confidence`` None uses the model's default threshold for "unknown"."""
    model.check_store(store)
    extractors = []
    for ref in model.card.features:
        if ref.name not in FEATURE_NAMES:
            raise ModelError(
                f"model {model.card.name!r} reads {ref.name!r}, a feature set imported from outside coversearch: "
                "new image files cannot be embedded for it (`coversearch evaluate` works on the stored vectors)"
            )
        extractor = get_extractor(ref.name, vgg16_weights=vgg16_weights)
        if extractor_mismatch(extractor, ref.name, ref.version, ref.model_fingerprint):
            raise ModelError(
                f"model {model.card.name!r} needs {ref.name} v{ref.version} from {ref.model_fingerprint}; "
                f"the extractor here is v{extractor.version} from {extractor.model_fingerprint()}"
            )
        extractors.append(extractor)
    embedder = Embedder(extractors)  # features that share a backbone cost one forward pass
    results: list[Classification] = []
    for start in range(0, len(paths), batch_size):
        batch = list(paths[start : start + batch_size])
        images, good = [], []
        for path in batch:
            try:
                images.append(decode_image(read_bytes(path)).rgb)
                good.append(path)
            except ImageError as exc:
                results.append(Classification(path, None, f"{exc.reason}: {exc.detail}"))
        if images:
            vectors = embedder.embed(images)
            for path, answer in zip(good, model.answer(model.features_matrix(vectors), min_confidence)):
                results.append(Classification(path, answer))
        if on_batch:
            on_batch(len(batch))
    order = {p: i for i, p in enumerate(paths)}
    return sorted(results, key=lambda r: order[r.path])
