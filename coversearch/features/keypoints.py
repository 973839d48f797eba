"""Keypoint verification of a candidate near-duplicate pair: do the two covers show the same picture?

The second stage of near-duplicate detection (see ``coversearch.index.duplicates``): a global
vector (pHash, vgg16) finds candidates; this decides the uncertain ones.  Each cover is shrunk to
SIDE pixels on its longer side, greyscale, and described by up to NFEATURES ORB keypoints
(OpenCV, already a dependency).  Two covers match when enough of their keypoints pair up (Lowe's
ratio test) *and* agree on one similarity transform (rotation, uniform scale, shift; RANSAC):
``inliers`` counts those.  A crop, a border, a resize, a small rotation, a sticker or a colour
change keeps most keypoints in place relative to each other, so copies score in the hundreds;
unrelated covers, however alike in colour or style, have no common geometry and score a handful.

A mirrored copy is not a similarity transform of its original; ``match`` also tries the mirrored
keypoints, so a mirror counts too.

Geometry alone cannot tell a copy from another release built on the same photograph (a compilation
reusing an album's picture with its own title, one label template printed for many singles): both
share hundreds of keypoints.  So ``match`` also lays one cover over the other with the transform
found, fits the brightness and contrast of one to the other, and measures, cell by cell of a 16 x 16
grid, how far the aligned pictures differ.  A copy differs only where it was edited (a sticker, the
lost corners of a rotation); another release differs wherever its lettering or layout does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

SIDE = 256  # pixels on the longer side: enough detail for ORB, cheap to describe (about 10 ms a cover)
NFEATURES = 400
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
RANSAC_PX = 4.0  # reprojection error, in pixels at SIDE, for a keypoint pair to agree with the transform
MIN_KEYPOINTS = 12  # a cover with fewer (a flat colour, a faint logo) cannot be verified either way
COMPARE_SIDE = 128  # pixels on the longer side for the aligned comparison: detail of lettering, 16 KB a cover
CELL = 8  # pixels at COMPARE_SIDE: a 16 x 16 grid
COLOUR_GRID = 8  # cells a side of the mean-colour grid (``colour_difference``)


@dataclass
class Keypoints:
    points: np.ndarray  # (n, 2) float32 positions at SIDE scale
    descriptors: np.ndarray | None  # (n, 32) uint8 ORB descriptors
    mirrored: np.ndarray | None = None  # descriptors of the mirrored image (for mirror copies)
    mirrored_points: np.ndarray | None = None
    width: int = 0  # of the shrunk image
    small: np.ndarray | None = None  # greyscale at COMPARE_SIDE, for the aligned comparison
    colours: np.ndarray | None = None  # COLOUR_GRID x COLOUR_GRID x 3 mean colours, for pictures without keypoints

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
    colours = cv2.resize(np.ascontiguousarray(rgb), (COLOUR_GRID, COLOUR_GRID), interpolation=cv2.INTER_AREA)
    out = Keypoints(points, desc, width=grey.shape[1], small=small, colours=colours)
    if mirrored:
        out.mirrored_points, out.mirrored = _describe(np.ascontiguousarray(grey[:, ::-1]))
    return out


_MATCHER = None


def _matcher():
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)
    return _MATCHER


@dataclass
class Match:
    """How two covers' pictures agree: keypoint pairs on one similarity transform, and how much the
    aligned pictures differ per grid cell they share (computed on first use: a pair whose
    geometry already fails never needs it)."""

    inliers: int
    transform: np.ndarray | None = None  # 2 x 3, from a's points to b's, at SIDE scale
    a_small: np.ndarray | None = None  # a at COMPARE_SIDE, mirrored when the mirror matched
    b_small: np.ndarray | None = None

    @cached_property
    def differences(self) -> np.ndarray | None:
        """Mean |difference| in grey levels (0-255) of each shared cell; None without a transform."""
        if self.transform is None or self.a_small is None or self.b_small is None:
            return None
        return cell_differences(self.a_small, self.b_small, self.transform)

    def differing(self, cell_differs: float) -> float:
        """Share of the shared cells whose mean difference exceeds ``cell_differs`` grey levels
        (1.0 when the two share no whole cell: nothing to compare)."""
        if self.differences is None or len(self.differences) == 0:
            return 1.0
        return float((self.differences > cell_differs).mean())


def _transform(pa: np.ndarray, da: np.ndarray | None, pb: np.ndarray, db: np.ndarray | None) -> tuple[int, np.ndarray | None]:
    """(inliers, 2 x 3 similarity transform from a's points to b's) by ratio-tested matches and RANSAC."""
    if da is None or db is None or len(da) < MIN_KEYPOINTS or len(db) < MIN_KEYPOINTS:
        return 0, None
    pairs = _matcher().knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 4:
        return 0, None
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    return (int(mask.sum()), transform) if mask is not None and transform is not None else (0, None)


def cell_differences(a_small: np.ndarray, b_small: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Mean absolute grey difference of each CELL x CELL cell of ``b_small`` that ``a_small``, moved by
    ``transform`` (a 2 x 3 matrix at SIDE scale), covers (at least 80% of it): the larger of the two
    pictures' differences from each other's fit (``_unexplained``)."""
    moved = transform.astype(np.float64).copy()
    moved[:, 2] *= COMPARE_SIDE / SIDE  # the same transform at the comparison's scale
    h, w = b_small.shape
    a = cv2.warpAffine(a_small.astype(np.float32), moved, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(a_small.shape, np.float32), moved, (w, h), flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0.5  # edges interpolate with the outside
    if inside.sum() < CELL * CELL:
        return np.zeros(0, np.float32)
    # A little blur: half a pixel of misalignment on a sharp edge is not a difference.
    a = cv2.GaussianBlur(a, (3, 3), 0.6)
    b = cv2.GaussianBlur(b_small.astype(np.float32), (3, 3), 0.6)
    # Each way round: a flat picture explains anything laid over it by a gain near 0.
    residual = np.maximum(_unexplained(b, a, inside), _unexplained(a, b, inside))
    gh, gw = h // CELL, w // CELL
    cells = lambda x: x[: gh * CELL, : gw * CELL].reshape(gh, CELL, gw, CELL).sum(axis=(1, 3))  # noqa: E731
    covered = cells(inside.astype(np.float32))
    whole = covered >= 0.8 * CELL * CELL
    return (cells(residual)[whole] / covered[whole]).astype(np.float32)


def _unexplained(target: np.ndarray, source: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """|target - (gain * source + offset)| over ``inside``, with one gain and offset fitted by least
    squares: a brightness or contrast change is not a difference.  Fitted twice, the second time
    without the pixels the first fit explains worst (a sticker, a title), so that what was edited
    does not bend the fit over what was not."""
    fit = inside
    for _ in range(2):
        design = np.stack([source[fit], np.ones(int(fit.sum()), np.float32)], 1)
        gain, offset = np.linalg.lstsq(design, target[fit], rcond=None)[0]
        residual = np.abs(target - (gain * source + offset)) * inside
        fit = inside & (residual <= max(np.percentile(residual[inside], 75), 1.0))
    return residual


def match(a: Keypoints, b: Keypoints) -> Match:
    """How ``a`` and ``b`` agree (``a`` as it is or mirrored, when described mirrored too: the
    orientation with more inliers), and what the aligned comparison needs."""
    inliers, transform = _transform(a.points, a.descriptors, b.points, b.descriptors)
    mirrored = False
    if a.mirrored is not None:
        flipped, flipped_transform = _transform(a.mirrored_points, a.mirrored, b.points, b.descriptors)
        if flipped > inliers:
            inliers, transform, mirrored = flipped, flipped_transform, True
    a_small = a.small if a.small is None or not mirrored else np.ascontiguousarray(a.small[:, ::-1])
    return Match(inliers, transform, a_small, b.small)


def colour_difference(a: Keypoints, b: Keypoints) -> float:
    """Mean absolute difference (0-255) of the two pictures' mean-colour grids, laid over each other
    whole: for pictures with too little structure for keypoints (a flat colour, two flat halves)."""
    if a.colours is None or b.colours is None:
        return 255.0
    return float(np.abs(a.colours.astype(np.float32) - b.colours.astype(np.float32)).mean())


def verifiable(k: Keypoints) -> bool:
    return len(k) >= MIN_KEYPOINTS
