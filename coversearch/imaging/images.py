"""Decode untrusted image bytes into RGB pixels, or explain in a short reason why not.

Pillow does the decoding because it refuses truncated files (OpenCV silently returns a partial
image) and understands the odd-but-valid modes we must accept: greyscale, CMYK, palette, alpha.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from coversearch.errors import ImageError

# Covers are a few hundred pixels a side; anything over 40 Mpx (e.g. 6300x6300) is treated as a
# decompression bomb rather than decoded, which would cost gigabytes of memory.
MAX_PIXELS = 40_000_000
# Files over this size are refused before a byte is read (a cover is well under 10 MB).
MAX_FILE_BYTES = 50 * 1024 * 1024  # 50 MiB

EXIF_ORIENTATION = 0x0112

# Stable reason codes, stored in the ingest_errors table.
EMPTY = "empty-file"
NOT_IMAGE = "not-an-image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_LARGE = "too-large"
UNREADABLE = "unreadable"
NOT_A_FILE = "not-a-file"


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


def read_bytes(path, max_bytes: int | None = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file (symlinks to one included) of at most ``max_bytes``.

    Pipes, devices and sockets are refused without reading (opening without blocking, then one
    ``fstat``): a named pipe would wait forever and ``/dev/zero`` never ends.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageError(UNREADABLE, exc.strerror or str(exc)) from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise ImageError(UNREADABLE, str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(NOT_A_FILE, f"{_file_kind(info.st_mode)}, not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ImageError(TOO_LARGE, f"file is {info.st_size:,} bytes, over the {max_bytes:,} byte limit (--max-file-bytes)")
        with os.fdopen(fd, "rb") as fh:
            fd = None  # closed with fh
            data = fh.read(info.st_size + 1)  # the size fstat gave, and one byte more to notice growth
            if len(data) > info.st_size:  # it grew since: read on, within the limit
                data += fh.read(None if max_bytes is None else max_bytes + 1 - len(data))
    except OSError as exc:
        raise ImageError(UNREADABLE, exc.strerror or str(exc)) from None
    finally:
        if fd is not None:
            os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(TOO_LARGE, f"file grew past the {max_bytes:,} byte limit (--max-file-bytes) while read")
    return data


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


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


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None) -> DecodedImage:
    """Decode bytes to RGB, upright as its EXIF orientation says; raise ``ImageError`` with a reason
    code for anything unusable.  Every picture the package reads is decoded here.

    Images over ``max_pixels`` are refused from their header, before any pixel is decoded.
    ``draft`` (width, height): a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, still at least that
    large (Pillow's draft mode: several times faster when only a small image is needed).
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
            if draft is not None and fmt == "JPEG":
                img.draft("RGB", draft)
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
    return DecodedImage(rgb=_to_rgb(_upright(img)), format=fmt, mode=mode)


def _upright(img: Image.Image) -> Image.Image:
    """The image as it is displayed: turned or mirrored as its EXIF orientation tag says (a phone
    photo is stored sideways with tag 6 or 8).  A damaged EXIF block is ignored, as viewers do."""
    try:
        if img.getexif().get(EXIF_ORIENTATION, 1) in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many kinds on damaged blocks
        pass
    return img


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode == "RGB":
        return np.asarray(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _deep_grey_to_rgb(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas over white, the way a cover with alpha is shown on a page.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _deep_grey_to_rgb(img: Image.Image) -> np.ndarray:
    """High-bit-depth greyscale scaled to 8 bits (Pillow's own conversion clips it to near-white).

    16-bit modes span 0..65535 (divided by 257, so 65535 -> 255).  Pillow also opens 16-bit PNGs
    as 32-bit "I"; there, and for float "F" images, the range is inferred from the values: up to
    255 is already 8-bit, up to 65535 is 16-bit, up to 1.0 (floats) is [0, 1], else the maximum.
    """
    values = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        top = 65535.0
    else:
        peak = float(values.max()) if values.size else 0.0
        if img.mode == "F" and peak <= 1.0:
            top = 1.0
        elif peak <= 255:
            top = 255.0
        elif peak <= 65535:
            top = 65535.0
        else:
            top = peak
    grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def mirror(rgb: np.ndarray) -> np.ndarray:
    """Left-right mirror image (used by tests, benchmarks and test-time augmentation)."""
    return np.ascontiguousarray(rgb[:, ::-1, :])
