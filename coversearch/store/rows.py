"""The row types and timestamps every part of the store shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class FeatureSet:
    id: int
    name: str
    version: int
    dim: int
    params: dict[str, Any]
    model_fingerprint: str | None

    @property
    def table(self) -> str:
        return f"embeddings_{self.id}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

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
