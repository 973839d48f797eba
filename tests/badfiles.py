"""Makes real bad and odd image files for ingest tests, each with the reason it should get."""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header announcing width x height pixels (a decompression bomb), a few bytes long."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_bad_files(cover: Path, dest: Path) -> dict[str, str | None]:
    """Write odd files into dest; returns file name -> expected error reason (None: must ingest)."""
    dest.mkdir(parents=True, exist_ok=True)
    real = cover.read_bytes()
    rgb = Image.open(cover).convert("RGB")
    rng = random.Random(7)
    files: dict[str, tuple[bytes | None, str | None]] = {
        "zero-byte.jpg": (b"", "empty-file"),
        "truncated.jpg": (real[: len(real) // 2], "truncated"),
        "corrupt.jpg": (real[:2] + bytes(rng.randrange(256) for _ in range(4000)), "not-an-image"),
        "garbled-body.jpg": (real[:700] + bytes(rng.randrange(256) for _ in range(len(real) - 700)), "corrupt"),
        "not-an-image.jpg": (b"<html><body>404 Not Found</body></html>\n", "not-an-image"),
        "readme.txt": (b"just some text\n", "not-an-image"),
        "bomb.png": (bomb_png(), "too-large"),  # refused by Pillow's own bomb check
        "bomb-64mpx.png": (bomb_png(8000, 8000), "too-large"),  # under Pillow's limit, over ours
        "grey.jpg": (_encode(rgb.convert("L"), "JPEG"), None),
        "cmyk.jpg": (_encode(rgb.convert("CMYK"), "JPEG"), None),
        "palette.png": (_encode(rgb.convert("P", palette=Image.ADAPTIVE), "PNG"), None),
        "alpha.png": (_encode(rgb.convert("RGBA"), "PNG"), None),
        "palette-alpha.gif": (_encode(rgb.convert("P", palette=Image.ADAPTIVE), "GIF", transparency=0), None),
        "webp.webp": (_encode(rgb, "WEBP"), None),
    }
    expected: dict[str, str | None] = {}
    for name, (data, reason) in files.items():
        (dest / name).write_bytes(data)
        expected[name] = reason
    # A file that cannot be read at all: a link to nothing.
    os.symlink(dest / "does-not-exist.jpg", dest / "dangling.jpg")
    expected["dangling.jpg"] = "unreadable"
    return expected
