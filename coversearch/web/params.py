"""Limits on what a request may ask for, the strict parsing of its numbers, and the error a
request outside them gets."""

from __future__ import annotations

import re
from urllib.parse import quote

from coversearch.errors import CoverSearchError

MAX_K = 50
DEFAULT_K = 10
MAX_ALBUM_ID = 2**63 - 1  # the store's album ids are DuckDB BIGINTs

# ASCII digits only: Python's int() also takes "1_0", " 7 ", "+3" and digits of other scripts,
# which would make a typo name another album.
_WHOLE = re.compile(r"[0-9]{1,19}")


class BadRequest(CoverSearchError):
    """A request the page or API refuses, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_whole(name: str, text: str | None, low: int, high: int) -> int:
    """``text`` as a whole number from ``low`` to ``high`` written in ASCII digits, else ``BadRequest``."""
    if text is None or not _WHOLE.fullmatch(text) or not low <= int(text) <= high:
        shown = text if text is None or len(text) <= 40 else text[:40] + "..."
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {shown!r}")
    return int(text)


def parse_album_id(text: str | None) -> int:
    if not text:
        raise BadRequest("no album: give ?album=ID (a stored album's id)")
    return parse_whole("album", text, 1, MAX_ALBUM_ID)


def header_text(value: str) -> str:
    """A header value any client can carry: UTF-8, percent-encoded (RFC 3986) outside unreserved ASCII.

    HTTP headers are Latin-1 at best; a genre such as "ロック" cannot go in one as it is."""
    return quote(value, safe="")


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """The request's query argument ``name`` (``parse_whole``), ``default`` when absent or empty."""
    from flask import request

    text = request.args.get(name)
    if text is None or text == "":
        return default
    return parse_whole(name, text, low, high)


def genre_arg(snap) -> str | None:
    """The request's ``genre`` argument, one the snapshot knows, or None."""
    from flask import request

    genre = request.args.get("genre") or None
    if genre is not None and genre not in snap.genres:
        raise BadRequest(f"unknown genre {genre!r}; choose from {', '.join(snap.genres)}")
    return genre
