"""What counts as a near-duplicate: a *rule* is a feature and a distance threshold.

Two albums are near-duplicates under a rule when their vectors are at most the threshold apart;
with several rules (e.g. phash and vgg16) a pair counts when any rule holds.  A feature's
calibrated thresholds are properties of its extractor class (``duplicate_threshold``: pairs
within it are near-duplicates as they are; ``duplicate_verify_up_to``: pairs beyond that but
within it count when keypoint verification confirms them), calibrated by
benchmarks/bench_dedupe.py on half of its originals (figures on the other half in
benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from coversearch.errors import CoverSearchError, FeatureError
from coversearch.features.registry import FEATURE_NAMES, FEATURES, default_metric
from coversearch import metrics

# The rule `dedupe` and the duplicate check use when none is given: a pair is a near-duplicate
# when either feature says so (see benchmarks/README.md for why both).
DEFAULT_RULE_FEATURES = ("phash", "vgg16")


def calibrated(feature: str) -> tuple[float, float] | None:
    """(sure, verify-up-to) thresholds of a registered feature, or None when it has none."""
    if feature not in FEATURES:
        return None
    cls = FEATURES.load(feature)
    sure = getattr(cls, "duplicate_threshold", None)
    if sure is None:
        return None
    return float(sure), float(getattr(cls, "duplicate_verify_up_to", None) or sure)


def calibrated_thresholds(features: Sequence[str] = DEFAULT_RULE_FEATURES) -> dict[str, tuple[float, float]]:
    """feature -> (sure, verify-up-to) for those of ``features`` that are calibrated."""
    return {f: t for f in features if (t := calibrated(f)) is not None}


@dataclass(frozen=True)
class Rule:
    """Pairs within ``threshold`` under ``feature`` are near-duplicates; with ``sure`` set, only those
    within ``sure`` are taken as they are, and those beyond it (up to ``threshold``, and among each
    album's CANDIDATE_K nearest) only when keypoint verification confirms them."""

    feature: str
    threshold: float
    metric: str
    sure: float | None = None

    @property
    def verified(self) -> bool:
        return self.sure is not None and self.sure < self.threshold

    def _value(self, x: float):
        return int(x) if self.metric == metrics.HAMMING else x

    @property
    def label(self) -> str:
        if self.verified:
            return f"{self.feature} <= {self._value(self.sure)}, or <= {self._value(self.threshold)} with matching keypoints"
        return f"{self.feature} <= {self._value(self.threshold)}"

    def accepts(self, distance: float) -> bool:
        """Whether a pair at ``distance`` needs no verification."""
        return distance <= (self.sure if self.verified else self.threshold) + 1e-9

    def rounded(self, distance: float) -> float:
        """A distance as shown to users: whole bits for a hash, five decimals otherwise."""
        return int(distance) if self.metric == metrics.HAMMING else round(float(distance), 5)


def make_rule(feature: str, threshold: float | None, dim: int, metric: str | None = None) -> Rule:
    """A rule with a checked threshold: the feature's calibrated default (keypoint-verified beyond
    its sure distance) when None, else a plain rule at the given threshold."""
    metric = metric or default_metric(feature)
    sure = None
    if threshold is None:
        thresholds = calibrated(feature)
        if thresholds is None:
            known = calibrated_thresholds(list(FEATURE_NAMES))
            raise CoverSearchError(
                f"no calibrated near-duplicate threshold for {feature}; give one with --threshold "
                f"(calibrated: {', '.join(f'{f}={t[0]:g}' for f, t in known.items())})"
            )
        sure, threshold = thresholds
    limit = metrics.definition(metric).max_threshold or dim
    if not (0 <= float(threshold) < limit) or (metric == metrics.HAMMING and float(threshold) != int(threshold)):
        kind = f"a whole number of bits from 0 to {limit - 1}" if metric == metrics.HAMMING else f"from 0 to below {limit:g}"
        raise CoverSearchError(f"threshold {float(threshold):g} is out of range for {feature} ({metric} distance): use {kind}")
    return Rule(feature, float(threshold), metric, None if sure is None else float(sure))


def default_rules(store) -> list[Rule]:
    """The default rule's features that the store holds, at their calibrated thresholds."""
    held = {fs.name: fs for fs in store.feature_sets()}
    return [make_rule(name, None, held[name].dim) for name in DEFAULT_RULE_FEATURES if name in held]


def parse_rules(store, features: Sequence[str] | None, thresholds: Sequence[str] | None) -> list[Rule]:
    """Rules from ``--feature`` names and ``--threshold`` values (``T`` for one feature, or ``F=T`` each).

    With no feature named: the default rule's features the store holds (at least one is needed).
    """
    held = {fs.name: fs for fs in store.feature_sets()}
    if not held and not store.album_count():
        raise CoverSearchError(f"the store {store.path} is empty; run `coversearch ingest` first")
    if features:
        for name in features:
            if name not in FEATURE_NAMES:
                raise FeatureError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
        names = list(dict.fromkeys(features))
    else:
        names = [name for name in DEFAULT_RULE_FEATURES if name in held]
        if not names:
            raise FeatureError(
                f"the store has none of the near-duplicate features ({', '.join(DEFAULT_RULE_FEATURES)}); "
                "run `coversearch ingest ROOT --features phash` (it computes only what is missing)"
            )
    given = _parse_thresholds(thresholds or [], names)
    rules = []
    for name in names:
        fs = store.feature_set(name)  # a clear error when the store lacks it
        rules.append(make_rule(name, given.get(name), fs.dim))
    return rules


def _parse_thresholds(values: Sequence[str], names: list[str]) -> dict[str, float]:
    given: dict[str, float] = {}
    for value in values:
        feature, _, number = str(value).rpartition("=")
        if not feature:
            if len(names) != 1:
                raise CoverSearchError(
                    f"with several features ({', '.join(names)}) give thresholds as FEATURE=T, e.g. --threshold phash=8"
                )
            feature = names[0]
        if feature not in names:
            raise CoverSearchError(f"threshold for {feature!r}, which is not among the features used ({', '.join(names)})")
        try:
            given[feature] = float(number)
        except ValueError:
            raise CoverSearchError(f"threshold {number!r} for {feature} is not a number") from None
    return given
