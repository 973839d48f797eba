"""A feature extractor in ten lines: each channel's mean and standard deviation (6 floats)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class MeanColour:
    name = "mean-colour"
    version = 1
    dim = 6
    metric = "euclidean"

    def params(self) -> dict[str, Any]:
        return {"statistics": ["mean", "std"], "scale": "0..1"}

    def model_fingerprint(self) -> str | None:
        return None

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        pixels = rgb.reshape(-1, 3).astype(np.float32) / 255.0
        return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)])

    def extract(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        if not len(prepared):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(prepared).astype(np.float32)
