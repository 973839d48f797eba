"""A 64-bit perceptual hash (pHash): the near-duplicate feature.

The classic DCT hash (as in the ``imagehash`` library's ``phash``), after trimming any uniform
frame (a border or padding added to a copy): the luma image shrunk to 32x32, its 2-D DCT, the 8x8 lowest frequencies, one bit per coefficient set when it is above their
median.  Resizing, re-compression, small brightness or contrast shifts and greyscale barely move
those coefficients, so copies of one cover land a few bits apart while unrelated covers sit near
32 bits (half of 64).

Computed with OpenCV, already a dependency, straight from the decoded RGB array the ingest
pipeline hands every extractor: ``imagehash`` would add SciPy and PyWavelets to the install and
need a round trip through a PIL image for the same 64 bits.

Stored like every feature, as a float vector: 64 values of 0 or 1.  The squared Euclidean
distance between two such vectors is their Hamming distance, so the index layer searches it
exactly (its ``hamming`` metric; see ``coversearch/metrics.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

HASH_SIZE = 8  # 8x8 = 64 bits
DCT_SIZE = 32  # the image is shrunk to 32x32 before the DCT (imagehash's highfreq_factor 4)


BORDER_TOLERANCE = 24  # grey levels a border pixel may differ from the border's colour (JPEG noise)
BORDER_OFF_SHARE = 0.02  # share of a row or column's pixels allowed beyond that
BORDER_MAX = 0.4  # never trim more than this share of a side (a plain cover is hashed whole)


def trim_uniform_border(grey: np.ndarray) -> np.ndarray:
    """The image without a uniform frame: leading rows / columns on each side that are one flat colour.

    A frame or padding added around a copy (or a scanner's margin) moves every DCT coefficient;
    trimming it on both the original and the copy makes them hash alike.  A side is trimmed only
    while its lines match the outermost line's colour, and by at most BORDER_MAX of the image.
    """
    h, w = grey.shape
    g = grey.astype(np.int16)

    def uniform_run(lines: np.ndarray) -> int:
        colour = np.median(lines[0])
        flat = (np.abs(lines - colour) > BORDER_TOLERANCE).mean(axis=1) <= BORDER_OFF_SHARE
        limit = int(len(lines) * BORDER_MAX)
        run = int(np.argmin(flat[:limit])) if not flat[:limit].all() else limit
        return run

    top, bottom = uniform_run(g), uniform_run(g[::-1])
    left, right = uniform_run(g.T), uniform_run(g.T[::-1])
    if h - top - bottom < 8 or w - left - right < 8:
        return grey
    return grey[top : h - bottom, left : w - right]


def phash_bits(rgb: np.ndarray) -> np.ndarray:
    """The 64 hash bits of an H x W x 3 uint8 RGB image, as float32 0/1 values (row-major)."""
    grey = trim_uniform_border(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
    # INTER_AREA averages every source pixel into the 32x32 (no aliasing on large downscales).
    small = cv2.resize(grey, (DCT_SIZE, DCT_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:HASH_SIZE, :HASH_SIZE]
    return (low > np.median(low)).reshape(-1).astype(np.float32)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 64) 0/1 floats -> (n, 8) uint8 codes, for FAISS binary indexes."""
    return np.packbits(np.asarray(bits) > 0.5, axis=1)


def hash_hex(bits: np.ndarray) -> str:
    """The usual 16-hex-digit spelling of one hash."""
    return pack_bits(np.asarray(bits).reshape(1, -1))[0].tobytes().hex()


class PerceptualHash:
    name = "phash"
    version = 1
    metric = "hamming"  # differing bits
    # Near-duplicates (coversearch/dedupe/rules.py): within 6 bits as they are, up to 16 with matching keypoints.
    duplicate_threshold = 6
    duplicate_verify_up_to = 16
    dim = HASH_SIZE * HASH_SIZE

    def params(self) -> dict[str, Any]:
        return {
            "hash": "dct",
            "grey": "cv2 RGB2GRAY",
            "trim": f"uniform border (tolerance {BORDER_TOLERANCE}, {BORDER_OFF_SHARE:.0%} off, at most {BORDER_MAX:.0%} a side)",
            "resize": f"{DCT_SIZE}x{DCT_SIZE} cv2 INTER_AREA",
            "bits": f"{HASH_SIZE}x{HASH_SIZE} lowest DCT frequencies > their median",
            "stored": "0/1 floats (squared L2 = Hamming)",
        }

    def model_fingerprint(self) -> str | None:
        return None

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return phash_bits(rgb)

    def extract(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(prepared).astype(np.float32, copy=False)
