"""Feature extractors by name."""

from __future__ import annotations

import os

from coversearch.errors import FeatureError
from coversearch.features.base import FeatureExtractor

FEATURE_NAMES = ("hsv", "vgg16", "vgg16-layers", "vgg16-study", "phash")
# What `ingest` computes unless told otherwise: search (hsv, vgg16) and the default classifier's input.
# (vgg16-study, the study's own 150 px input, is asked for by name: only its recipe uses it.)
# phash (near-duplicates) costs well under a millisecond per cover, so every store gets it.
DEFAULT_FEATURES = "hsv,vgg16,vgg16-layers,phash"


def get_extractor(name: str, *, vgg16_weights: str | os.PathLike | None = None) -> FeatureExtractor:
    if name == "hsv":
        from coversearch.features.hsv import HSVHistogram

        return HSVHistogram()
    if name == "vgg16":
        from coversearch.features.vgg16 import VGG16Features

        return VGG16Features(vgg16_weights)
    if name == "vgg16-layers":
        from coversearch.features.vgg16 import VGG16LayerStats

        return VGG16LayerStats(vgg16_weights)
    if name == "vgg16-study":
        from coversearch.features.vgg16 import VGG16StudyFeatures

        return VGG16StudyFeatures(vgg16_weights)
    if name == "phash":
        from coversearch.features.phash import PerceptualHash

        return PerceptualHash()
    raise FeatureError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")


def parse_feature_list(text: str, known: tuple[str, ...] | None = FEATURE_NAMES) -> list[str]:
    """'hsv,vgg16' -> ['hsv', 'vgg16'], checked against ``known`` (None: any name), order kept,
    duplicates dropped."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise FeatureError("no feature named; choose from " + ", ".join(FEATURE_NAMES))
    for name in names:
        if known is not None and name not in known:
            raise FeatureError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
    return list(dict.fromkeys(names))
