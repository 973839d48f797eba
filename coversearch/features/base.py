"""The one interface every feature extractor implements.

Extraction is split in two so that ingestion can overlap work: ``prepare`` is per-image CPU work
(resize, colour conversion) that runs in reader threads; ``extract`` is the batched part (a
network forward pass) that runs on the main thread.  A new feature is one new module with one
class implementing this protocol, registered with one line in ``registry.py``.  An extractor whose
output is not a vector says so with a ``kind`` attribute (``coversearch.store.rows.KINDS``: keypoints
are a ``record``, the words on a cover ``text``).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str  # stable identifier, e.g. "hsv"
    version: int  # bump when the numbers it produces change
    dim: int  # length of each vector
    metric: str  # how vectors compare: "cosine", "euclidean" or "hamming" (coversearch/metrics.py)

    def params(self) -> dict[str, Any]:
        """Everything that determines the output, recorded with the feature set."""

    def model_fingerprint(self) -> str | None:
        """Identity of any learned weights (None for hand-made features)."""

    def prepare(self, rgb: np.ndarray) -> Any:
        """Per-image CPU work on an H x W x 3 uint8 RGB array; must be thread-safe."""

    def extract(self, prepared: Sequence[Any]) -> np.ndarray:
        """Vectors for a batch of prepared images: float32, shape (len(prepared), dim)."""


def extract_images(extractor: FeatureExtractor, images: Sequence[np.ndarray]) -> np.ndarray:
    """Convenience for queries: prepare and extract in one call."""
    return extractor.extract([extractor.prepare(rgb) for rgb in images])


def extractor_mismatch(extractor: FeatureExtractor, name: str, version: int, model_fingerprint: str | None,
                       params: dict[str, Any] | None = None) -> str | None:
    """Why ``extractor`` cannot embed new images for stored vectors of feature ``name`` v``version``
    made by ``model_fingerprint`` (and ``params``, when given); None when it can.

    The one check behind every query path: ``similar``, ``classify`` and the web page's snapshot."""
    label = f"{name} v{version}"
    if extractor.name != name or extractor.version != version:
        return (f"the store's vectors are {label}; this coversearch computes {extractor.name} v{extractor.version}: "
                "re-ingest, or use a matching coversearch")
    fingerprint = extractor.model_fingerprint()
    if fingerprint != model_fingerprint:
        return (f"the store's {label} vectors were made with model {model_fingerprint}, but the query would use "
                f"{fingerprint}: pass the same weights with --vgg16-weights (or COVERSEARCH_VGG16_WEIGHTS)")
    if params is not None and extractor.params() != params:
        return f"the store's {label} vectors were made with params {params}, not {extractor.params()}"
    return None
