"""Decode untrusted image bytes into RGB pixels, or explain in a short reason why not.

Pillow does the decoding because it refuses truncated files (OpenCV silently returns a partial
image) and understands the odd-but-valid modes we must accept: greyscale, CMYK, palette, alpha.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from coversearch.errors import ImageError

# Covers are a few hundred pixels a side; anything over 40 Mpx (e.g. 6300x6300) is treated as a
# decompression bomb rather than decoded, which would cost gigabytes of memory.
MAX_PIXELS = 40_000_000

# Stable reason codes, stored in the ingest_errors table.
EMPTY = "empty-file"
NOT_IMAGE = "not-an-image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_LARGE = "too-large"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # H x W x 3, uint8, RGB order
    format: str  # what the bytes were: JPEG, PNG, ...
    mode: str  # Pillow mode before conversion: RGB, L, CMYK, P, RGBA, ...

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ImageError(UNREADABLE, exc.strerror or str(exc)) from None


def image_header(data: bytes) -> tuple[int, int, str]:
    """(width, height, format) from the header alone: nothing is decoded, whatever the size."""
    if not data:
        raise ImageError(EMPTY, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return int(img.size[0]), int(img.size[1]), img.format or "unknown"
    except Image.DecompressionBombError as exc:
        raise ImageError(TOO_LARGE, str(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(NOT_IMAGE, "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(CORRUPT, str(exc) or type(exc).__name__) from None


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode bytes to RGB; raise ``ImageError`` with a reason code for anything unusable.

    Images over ``max_pixels`` are refused from their header, before any pixel is decoded.
    """
    if not data:
        raise ImageError(EMPTY, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(TOO_LARGE, f"{width}x{height} pixels exceeds the {max_pixels:,} pixel limit")
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(TOO_LARGE, str(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(NOT_IMAGE, "not a recognised image format") from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageError(TRUNCATED, msg) from None
        raise ImageError(CORRUPT, msg) from None
    except (ValueError, SyntaxError, EOFError) as exc:  # Pillow plugins raise these on bad headers
        raise ImageError(CORRUPT, str(exc) or type(exc).__name__) from None
    mode = img.mode
    return DecodedImage(rgb=_to_rgb(img), format=fmt, mode=mode)


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode == "RGB":
        return np.asarray(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas over white, the way a cover with alpha is shown on a page.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def mirror(rgb: np.ndarray) -> np.ndarray:
    """Left-right mirror image (used by tests, benchmarks and test-time augmentation)."""
    return np.ascontiguousarray(rgb[:, ::-1, :])
