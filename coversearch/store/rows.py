"""The row types and timestamps every part of the store shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from coversearch.errors import FeatureError


# What a feature set holds (feature_sets.kind), one value per set; an extractor says it with its
# ``kind`` attribute (none: a vector).
VECTOR_KIND = "vector"  # embeddings_<id>: album_id, vector FLOAT[dim]; what indexes and exact search read
RECORD_KIND = "record"  # embeddings_<id>: album_id, one packed record per cover (data BLOB), e.g. keypoints
TEXT_KIND = "text"  # text_<id>: the words read on each cover (features/text.py)
KINDS = (VECTOR_KIND, RECORD_KIND, TEXT_KIND)


def kind_of(extractor) -> str:
    """The kind of feature set an extractor fills."""
    kind = getattr(extractor, "kind", VECTOR_KIND)
    if kind not in KINDS:
        raise FeatureError(f"feature {extractor.name!r} says kind {kind!r}; a feature set is one of {', '.join(KINDS)}")
    return kind


@dataclass(frozen=True)
class FeatureSet:
    id: int
    name: str
    version: int
    dim: int
    params: dict[str, Any]
    model_fingerprint: str | None
    kind: str = VECTOR_KIND  # one of KINDS

    @property
    def table(self) -> str:
        return f"text_{self.id}" if self.kind == TEXT_KIND else f"embeddings_{self.id}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def vector_table(self) -> str:
        """The set's vector table; a clear error for a set without vectors."""
        if self.kind == TEXT_KIND:
            raise FeatureError(f"{self.label} is the words read on each cover, not vectors: search it with "
                               "`coversearch search`, not by similarity")
        if self.kind != VECTOR_KIND:
            raise FeatureError(f"{self.label} holds a record per album, not vectors: it cannot be searched or indexed")
        return self.table

    @property
    def imported(self) -> bool:
        """Vectors computed outside coversearch: no extractor here can embed a new image for them."""
        return bool(self.params.get("imported"))


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
