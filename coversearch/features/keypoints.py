"""ORB keypoints of a cover, and its small grey picture: what near-duplicate verification needs
(``coversearch.dedupe.verify`` matches two covers' keypoints and compares their aligned pictures).

Each cover is shrunk to SIDE pixels on its longer side, greyscale, and described by up to
NFEATURES ORB keypoints (OpenCV, already a dependency); the same grey image at COMPARE_SIDE
pixels is kept for the aligned comparison.
"""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from coversearch.store.rows import RECORD_KIND

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
    text: dict | None = None  # the cover's text record (features.text), when read: for dedupe.text_veto; not in the record

    def __len__(self) -> int:
        return 0 if self.descriptors is None else len(self.descriptors)

    def to_bytes(self) -> bytes:
        """The stored record (not the mirrored descriptors: only a query is matched mirrored)."""
        n = len(self)
        small = np.zeros((0, 0), np.uint8) if self.small is None else self.small
        body = b"".join([
            np.ascontiguousarray(self.points[:n], dtype="<f4").tobytes(),
            b"" if n == 0 else np.ascontiguousarray(self.descriptors, dtype=np.uint8).tobytes(),
            np.ascontiguousarray(small, dtype=np.uint8).tobytes(),
        ])
        # zlib at its fastest level: the grey picture shrinks by about a third, descriptors barely.
        return _HEADER.pack(_MAGIC, n, self.width, small.shape[0], small.shape[1]) + zlib.compress(body, 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Keypoints":
        """The record's keypoints; its grey picture is decoded on first use (``StoredKeypoints``):
        most verified pairs fail on the keypoints alone, and inflating only the keypoints halves
        the cost of reading a record."""
        magic, n, width, h, w = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a stored keypoints record")
        head = zlib.decompressobj().decompress(memoryview(data)[_HEADER.size:], n * 40) if n else b""
        points = np.frombuffer(head, "<f4", n * 2).reshape(n, 2).astype(np.float32)
        descriptors = np.frombuffer(head, np.uint8, n * 32, n * 8).reshape(n, 32) if n else None
        out = StoredKeypoints(points, descriptors, width=width, small=None)
        out._record = data if h * w else None
        return out


class StoredKeypoints(Keypoints):
    """Keypoints read from a stored record: ``small`` is inflated from the record when first read."""

    _record: bytes | None = None
    _small: np.ndarray | None = None

    @property  # type: ignore[override]
    def small(self) -> np.ndarray | None:
        record = self._record  # once: another thread may inflate it at the same time
        if self._small is None and record is not None:
            magic, n, width, h, w = _HEADER.unpack_from(record)
            body = zlib.decompress(record[_HEADER.size:])
            self._small = np.frombuffer(body, np.uint8, h * w, n * 40).reshape(h, w)
            self._record = None
        return self._small

    @small.setter
    def small(self, value: np.ndarray | None) -> None:
        self._small = value
        if value is not None:
            self._record = None


_MAGIC = b"KPT1"
_HEADER = struct.Struct("<4sHHHH")  # magic, keypoints, shrunk width, grey picture height and width
_LOCAL = threading.local()  # an ORB detector per thread: ingest prepares covers in reader threads


def _orb():
    orb = getattr(_LOCAL, "orb", None)
    if orb is None:
        orb = _LOCAL.orb = cv2.ORB_create(nfeatures=NFEATURES, fastThreshold=10)
    return orb


def _describe(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    kp, desc = _orb().detectAndCompute(grey, None)
    points = np.float32([k.pt for k in kp]) if kp else np.zeros((0, 2), np.float32)
    return points, desc


def keypoint_grey(rgb: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 RGB image as ``keypoints`` describes it: grey, SIDE pixels on its longer side."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    # Every cover at the same scale, small ones enlarged: ORB ignores a 31-pixel margin, so a
    # 75-pixel copy would keep almost no keypoints, and matching works best at equal scales.
    scale = SIDE / max(grey.shape)
    if scale != 1:
        size = (max(8, round(grey.shape[1] * scale)), max(8, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return grey


def keypoints(rgb: np.ndarray, *, mirrored: bool = False) -> Keypoints:
    """ORB keypoints of an H x W x 3 uint8 RGB image (and of its mirror image when ``mirrored``)."""
    grey = keypoint_grey(rgb)
    points, desc = _describe(grey)
    half = COMPARE_SIDE / SIDE
    small = cv2.resize(grey, (max(4, round(grey.shape[1] * half)), max(4, round(grey.shape[0] * half))), interpolation=cv2.INTER_AREA)
    out = Keypoints(points, desc, width=grey.shape[1], small=small)
    if mirrored:
        out.mirrored_points, out.mirrored = _describe(np.ascontiguousarray(grey[:, ::-1]))
    return out


def verifiable(k: Keypoints) -> bool:
    return len(k) >= MIN_KEYPOINTS


class KeypointFeatures:
    """The keypoints feature: each cover's ``Keypoints`` record, computed once at ingest from the
    decode ingest already made, so that verifying a candidate pair reads two records instead of
    decoding two files.  Not a vector: the store keeps one packed record per cover (a feature set
    of kind ``record``), which no index searches."""

    name = "keypoints"
    version = 1
    dim = 0
    kind = RECORD_KIND
    metric = "record"  # compared by ``coversearch.dedupe.verify.match``, never by a distance

    def params(self) -> dict[str, Any]:
        return {"side": SIDE, "nfeatures": NFEATURES, "compare_side": COMPARE_SIDE}

    def model_fingerprint(self) -> str | None:
        return None

    def prepare(self, rgb: np.ndarray) -> bytes:
        return keypoints(rgb).to_bytes()  # all of the work, in the reader threads

    def extract(self, prepared: Sequence[Any]) -> list[bytes]:
        return list(prepared)
