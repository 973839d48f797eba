"""The row types and timestamps every part of the store shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from coversearch.errors import FeatureError


TEXT_KIND = "text"  # a feature set of the words read on each cover (features/text.py), in text_<id>


@dataclass(frozen=True)
class FeatureSet:
    id: int
    name: str
    version: int
    dim: int
    params: dict[str, Any]
    model_fingerprint: str | None
    kind: str = "vector"  # "vector": rows in embeddings_<id>; "text": the words read per cover, in text_<id>

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
        if self.stores_records:
            raise FeatureError(f"{self.label} holds a record per album, not vectors: it cannot be searched or indexed")
        return self.table

    @property
    def stores_records(self) -> bool:
        """One packed record per album (e.g. keypoints) instead of a vector: nothing searches it."""
        return self.params.get("storage") == "record"

    @property
    def imported(self) -> bool:
        """Vectors computed outside coversearch: no extractor here can embed a new image for them."""
        return bool(self.params.get("imported"))


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
