"""A 64-bit perceptual hash (pHash): the near-duplicate feature.

The classic DCT hash (as in the ``imagehash`` library's ``phash``): the luma image shrunk to
32x32, its 2-D DCT, the 8x8 lowest frequencies, one bit per coefficient set when it is above their
median.  Resizing, re-compression, small brightness or contrast shifts and greyscale barely move
those coefficients, so copies of one cover land a few bits apart while unrelated covers sit near
32 bits (half of 64).

Computed with OpenCV, already a dependency, straight from the decoded RGB array the ingest
pipeline hands every extractor: ``imagehash`` would add SciPy and PyWavelets to the install and
need a round trip through a PIL image for the same 64 bits.

Stored like every feature, as a float vector: 64 values of 0 or 1.  The squared Euclidean
distance between two such vectors is their Hamming distance, so the index layer searches it
exactly (its ``hamming`` metric; see ``coversearch/index/metrics.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

HASH_SIZE = 8  # 8x8 = 64 bits
DCT_SIZE = 32  # the image is shrunk to 32x32 before the DCT (imagehash's highfreq_factor 4)


def phash_bits(rgb: np.ndarray) -> np.ndarray:
    """The 64 hash bits of an H x W x 3 uint8 RGB image, as float32 0/1 values (row-major)."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
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
    dim = HASH_SIZE * HASH_SIZE

    def params(self) -> dict[str, Any]:
        return {
            "hash": "dct",
            "grey": "cv2 RGB2GRAY",
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
