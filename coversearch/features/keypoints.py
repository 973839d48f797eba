"""ORB keypoints of a cover, and its small grey picture: what near-duplicate verification needs
(``coversearch.dedupe.verify`` matches two covers' keypoints and compares their aligned pictures).

Each cover is shrunk to SIDE pixels on its longer side, greyscale, and described by up to
NFEATURES ORB keypoints (OpenCV, already a dependency); the same grey image at COMPARE_SIDE
pixels is kept for the aligned comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIDE = 256  # pixels on the longer side: enough detail for ORB, cheap to describe (about 10 ms a cover)
NFEATURES = 400
MIN_KEYPOINTS = 12  # a cover with fewer (a flat colour, a faint logo) cannot be verified either way
COMPARE_SIDE = 128  # pixels on the longer side for the aligned comparison: detail of lettering, 16 KB a cover


@dataclass
class Keypoints:
    points: np.ndarray  # (n, 2) float32 positions at SIDE scale
    descriptors: np.ndarray | None  # (n, 32) uint8 ORB descriptors
    mirrored: np.ndarray | None = None  # descriptors of the mirrored image (for mirror copies)
    mirrored_points: np.ndarray | None = None
    width: int = 0  # of the shrunk image
    small: np.ndarray | None = None  # greyscale at COMPARE_SIDE, for the aligned comparison

    def __len__(self) -> int:
        return 0 if self.descriptors is None else len(self.descriptors)


_ORB = None


def _orb():
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=NFEATURES, fastThreshold=10)
    return _ORB


def _describe(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    kp, desc = _orb().detectAndCompute(grey, None)
    points = np.float32([k.pt for k in kp]) if kp else np.zeros((0, 2), np.float32)
    return points, desc


def keypoints(rgb: np.ndarray, *, mirrored: bool = False) -> Keypoints:
    """ORB keypoints of an H x W x 3 uint8 RGB image (and of its mirror image when ``mirrored``)."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    # Every cover at the same scale, small ones enlarged: ORB ignores a 31-pixel margin, so a
    # 75-pixel copy would keep almost no keypoints, and matching works best at equal scales.
    scale = SIDE / max(grey.shape)
    if scale != 1:
        size = (max(8, round(grey.shape[1] * scale)), max(8, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    points, desc = _describe(grey)
    half = COMPARE_SIDE / SIDE
    small = cv2.resize(grey, (max(4, round(grey.shape[1] * half)), max(4, round(grey.shape[0] * half))), interpolation=cv2.INTER_AREA)
    out = Keypoints(points, desc, width=grey.shape[1], small=small)
    if mirrored:
        out.mirrored_points, out.mirrored = _describe(np.ascontiguousarray(grey[:, ::-1]))
    return out


def verifiable(k: Keypoints) -> bool:
    return len(k) >= MIN_KEYPOINTS
