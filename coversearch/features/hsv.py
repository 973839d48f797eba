"""The original study's colour feature: an 8x8x8 HSV histogram, L2-normalised, 512 floats."""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

BINS = (8, 8, 8)
# OpenCV's 8-bit HSV: hue in [0, 180), saturation and value in [0, 256).
RANGES = [0, 180, 0, 256, 0, 256]


class HSVHistogram:
    name = "hsv"
    version = 1
    metric = "euclidean"  # the study compared histograms by Euclidean distance
    dim = BINS[0] * BINS[1] * BINS[2]

    def params(self) -> dict[str, Any]:
        return {"bins": list(BINS), "ranges": RANGES, "normalize": "cv2.normalize L2"}

    def model_fingerprint(self) -> str | None:
        return None

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), RANGES)
        # As in the study: cv2.normalize with its defaults (L2 norm, alpha=1).
        hist = cv2.normalize(hist, hist)
        return hist.reshape(-1).astype(np.float32)

    def extract(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(prepared).astype(np.float32, copy=False)
