"""Feature extractors by name: one line each, the module imported when the feature is first used."""

from __future__ import annotations

import os

from coversearch.errors import CoverSearchError, FeatureError
from coversearch.features.base import FeatureExtractor
from coversearch.metrics import check_metric
from coversearch.registry import Registry, UnknownNameError


class UnknownFeatureError(UnknownNameError, FeatureError):
    pass


FEATURES = Registry("feature", {
    "hsv": "coversearch.features.hsv:HSVHistogram",
    "vgg16": "coversearch.features.vgg16:VGG16Features",
    "vgg16-layers": "coversearch.features.vgg16:VGG16LayerStats",
    "vgg16-study": "coversearch.features.vgg16:VGG16StudyFeatures",
    "phash": "coversearch.features.phash:PerceptualHash",
    "keypoints": "coversearch.features.keypoints:KeypointFeatures",
    # The words printed on each cover (a record, not a vector); opt-in: `pip install 'coversearch[text]'`.
    "text": "coversearch.features.text:CoverText",
}, error=UnknownFeatureError)

# The registered names, live: a feature registered later is in it too.
FEATURE_NAMES = FEATURES
# What `ingest` computes unless told otherwise: search (hsv, vgg16) and the default classifier's input.
# (vgg16-study, the study's own 150 px input, is asked for by name: only its recipe uses it.)
# phash (near-duplicates) costs well under a millisecond per cover, so every store gets it;
# keypoints (what near-duplicate verification reads) about 7 ms and 25 KB a cover, against VGG16's
# 180 ms: computed once here, a verified pair never decodes its covers again.
DEFAULT_FEATURES = "hsv,vgg16,vgg16-layers,phash,keypoints"


def register(name: str, target: str) -> None:
    """Add a feature extractor: ``target`` is "package.module:Class" (see coversearch/registry.py)."""
    FEATURES.register(name, target)


def extractor_class(name: str) -> type:
    return FEATURES.load(name)


def get_extractor(name: str, *, vgg16_weights: str | os.PathLike | None = None) -> FeatureExtractor:
    """An extractor of feature ``name``; classes with ``takes_vgg16_weights`` get the weights path."""
    cls = FEATURES.load(name)
    return cls(vgg16_weights) if getattr(cls, "takes_vgg16_weights", False) else cls()


def default_metric(name: str) -> str:
    """The metric a computed feature is compared under: its extractor class's ``metric``; an
    unknown name is an error."""
    return check_metric(FEATURES.load(name).metric)


def metric_for(feature_set) -> str:
    """A feature set's metric: the one recorded with it (imported vectors), else its extractor's."""
    feature_set.vector_table  # the one clear error for a set without vectors
    recorded = feature_set.params.get("metric")
    if recorded:
        return check_metric(recorded)
    if feature_set.name not in FEATURES:
        raise CoverSearchError(f"feature set {feature_set.name!r} records no metric and no extractor is registered for it")
    return default_metric(feature_set.name)


def parse_feature_list(text: str, known=FEATURE_NAMES) -> list[str]:
    """'hsv,vgg16' -> ['hsv', 'vgg16'], checked against ``known`` (None: any name), order kept,
    duplicates dropped."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise FeatureError("no feature named; choose from " + ", ".join(FEATURE_NAMES))
    for name in names:
        if known is not None and name not in known:
            raise FeatureError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
    return list(dict.fromkeys(names))
