"""Small JPEG thumbnails of stored covers, made once and cached beside the store.

The cache is ``<store file>.thumbs/<sha256>.jpg``: keyed by the album's bytes (its identity), so a
rebuilt store never shows another album's picture.  Each file is written to a temporary name and
renamed into place, so a crash never leaves half a thumbnail.  A cover whose file cannot be found
or decoded, or whose file now holds other bytes (replaced since ingest), gets a grey placeholder
(not cached) so that pages still render.

It depends only on the image decoder and a store object passed in (its path, album paths and rows);
the report and the web page both use it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from coversearch.errors import ImageError
from coversearch.fsutil import write_atomic
from coversearch.imaging.images import decode_image, read_bytes

if TYPE_CHECKING:  # imaging sits below the store: it takes one, it does not import it
    from coversearch.store import Store

THUMB_SIZE = 160
QUALITY = 82


def candidate_paths(store: Store, album: dict[str, Any]) -> list[Path]:
    """Where the album's file may be: every recorded path, as given and relative to the store's folders."""
    paths = [album.get("path")]
    paths += store.album_paths(album["id"])
    out: list[Path] = []
    store_dir = Path(store.path).resolve().parent
    for raw in dict.fromkeys(p for p in paths if p):
        path = Path(raw)
        if path.is_absolute():
            out.append(path)
            continue
        out.append(Path.cwd() / path)
        # Paths are recorded relative to where `ingest` ran: often the store's folder or one above it.
        out.extend(parent / path for parent in (store_dir, *store_dir.parents))
    return out


def album_bytes(store: Store, album: dict[str, Any]) -> bytes | None:
    """The bytes of the album's first recorded file that still holds them (its sha256 is the
    album's), or None: a file replaced since ingest is another picture, not this album's."""
    for path in candidate_paths(store, album):
        try:
            data = read_bytes(path)
        except (ImageError, OSError):
            continue
        if hashlib.sha256(data).hexdigest() == album["sha256"]:
            return data
    return None


def decode_album(store: Store, album: dict[str, Any]):
    """RGB pixels of the album's file, or None when no recorded path still holds its bytes or they do not decode."""
    data = album_bytes(store, album)
    if data is None:
        return None
    try:
        return decode_image(data).rgb
    except ImageError:
        return None


def make_thumbnail(data: bytes, size: int = THUMB_SIZE) -> bytes:
    img = Image.fromarray(decode_image(data).rgb)
    img.thumbnail((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def placeholder(text: str = "missing", size: int = THUMB_SIZE) -> bytes:
    img = Image.new("RGB", (size, size), (200, 200, 200))
    ImageDraw.Draw(img).text((10, size // 2 - 6), text, fill=(60, 60, 60))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def album_thumbnail(store: Store, album: dict[str, Any]) -> bytes:
    """JPEG bytes of the album's thumbnail (cached; a placeholder when its file is gone or bad)."""
    return find_thumbnail(store, album) or placeholder()


def find_thumbnail(store: Store, album: dict[str, Any]) -> bytes | None:
    """JPEG bytes of the album's thumbnail (cached), or None when its file is gone or bad."""
    cached = store.thumbs_dir / f"{album['sha256']}.jpg"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    original = album_bytes(store, album)  # the cache is keyed by the album's sha256: only its own bytes go in
    if original is None:
        return None
    try:
        data = make_thumbnail(original)
    except ImageError:
        return None
    try:
        write_atomic(cached, data)
    except OSError:
        pass  # a read-only folder: still show it, just do not cache
    return data


def thumbnails(store: Store, album_ids: list[int]) -> dict[int, bytes]:
    albums = store.albums(album_ids)
    return {album_id: album_thumbnail(store, albums[album_id]) for album_id in album_ids if album_id in albums}
