"""Keypoint verification of a candidate near-duplicate pair: do the two covers show the same picture?

The second stage of near-duplicate detection (see ``coversearch.index.duplicates``): a global
vector (pHash, vgg16) finds candidates; this decides the uncertain ones.  Each cover is shrunk to
SIDE pixels on its longer side, greyscale, and described by up to NFEATURES ORB keypoints
(OpenCV, already a dependency).  Two covers match when enough of their keypoints pair up (Lowe's
ratio test) *and* agree on one similarity transform (rotation, uniform scale, shift; RANSAC):
``inliers`` counts those.  A crop, a border, a resize, a small rotation, a sticker or a colour
change keeps most keypoints in place relative to each other, so copies score in the hundreds;
unrelated covers, however alike in colour or style, have no common geometry and score a handful.

A mirrored copy is not a similarity transform of its original; ``inliers`` also tries the mirrored
keypoints, so a mirror counts too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIDE = 256  # pixels on the longer side: enough detail for ORB, cheap to describe (about 10 ms a cover)
NFEATURES = 400
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
RANSAC_PX = 4.0  # reprojection error, in pixels at SIDE, for a keypoint pair to agree with the transform
MIN_KEYPOINTS = 12  # a cover with fewer (a flat colour, a faint logo) cannot be verified either way


@dataclass
class Keypoints:
    points: np.ndarray  # (n, 2) float32 positions at SIDE scale
    descriptors: np.ndarray | None  # (n, 32) uint8 ORB descriptors
    mirrored: np.ndarray | None = None  # descriptors of the mirrored image (for mirror copies)
    mirrored_points: np.ndarray | None = None
    width: int = 0  # of the shrunk image

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
    out = Keypoints(points, desc, width=grey.shape[1])
    if mirrored:
        out.mirrored_points, out.mirrored = _describe(np.ascontiguousarray(grey[:, ::-1]))
    return out


_MATCHER = None


def _matcher():
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)
    return _MATCHER


def _inliers(pa: np.ndarray, da: np.ndarray | None, pb: np.ndarray, db: np.ndarray | None) -> int:
    if da is None or db is None or len(da) < MIN_KEYPOINTS or len(db) < MIN_KEYPOINTS:
        return 0
    pairs = _matcher().knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 4:
        return 0
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    return int(mask.sum()) if mask is not None else 0


def inliers(a: Keypoints, b: Keypoints) -> int:
    """Keypoint pairs of ``a`` and ``b`` that agree on one similarity transform (the larger of
    ``a`` as it is and ``a`` mirrored, when ``a`` was described mirrored too)."""
    best = _inliers(a.points, a.descriptors, b.points, b.descriptors)
    if a.mirrored is not None:
        best = max(best, _inliers(a.mirrored_points, a.mirrored, b.points, b.descriptors))
    return best


def verifiable(k: Keypoints) -> bool:
    return len(k) >= MIN_KEYPOINTS
