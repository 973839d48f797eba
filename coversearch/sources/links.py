"""Parse links files: one ``URL<TAB>genre/file.jpg`` per line.

The same parser serves ``coversearch download`` (which fetches each URL to ``DIR/genre/file.jpg``)
and ingest (which reads the genre from the path).  A line is either a ``LinkEntry`` or a
``LinkProblem`` carrying its 1-based line number, so callers can report bad input precisely and
carry on with the good lines.  Blank lines and lines starting with ``#`` are ignored.

Paths are untrusted input that become file names under an output folder, so ``safe_relpath``
refuses anything that could land outside it (absolute paths, ``..``, backslashes, NUL, control
characters).  Symlinks already inside the output folder are checked by the downloader, which
knows that folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from coversearch.errors import CoverSearchError

ALLOWED_SCHEMES = frozenset({"http", "https"})

# "C:/x.jpg" or "c:x.jpg" would be absolute (or drive-relative) on Windows.
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux and macOS


@dataclass(frozen=True)
class LinkEntry:
    """One well-formed line: where to fetch the image and where it goes, relative to the dataset root."""

    line_no: int  # 1-based
    url: str
    relpath: str  # normalised safe relative POSIX path "genre/file.jpg"

    @property
    def genre(self) -> str:
        return self.relpath.split("/", 1)[0]


@dataclass(frozen=True)
class LinkProblem:
    """A line that was skipped, and why (a short sentence for people)."""

    line_no: int
    line: str
    reason: str


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def safe_relpath(relpath: str) -> str:
    """Return ``relpath`` normalised (``./`` and doubled slashes dropped) or raise ``ValueError(reason)``.

    The result has at least two components (genre folder + file name) and cannot climb out of
    the folder it is joined to.
    """
    if not relpath:
        raise ValueError("empty path")
    if "\x00" in relpath:
        raise ValueError("path contains a NUL byte")
    if "\\" in relpath:
        raise ValueError("path contains a backslash")
    if _has_control(relpath):
        raise ValueError("path contains control characters")
    if relpath.startswith("/") or _DRIVE.match(relpath):
        raise ValueError("path is absolute")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("path contains '..'")
    if len(parts) < 2:
        raise ValueError("path needs a genre folder and a file name (genre/file.jpg)")
    if any(len(p.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT_BYTES for p in parts):
        raise ValueError(f"path component longer than {_MAX_COMPONENT_BYTES} bytes")
    return "/".join(parts)


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host, else raise ``ValueError(reason)``."""
    if not url:
        raise ValueError("empty URL")
    if any(c.isspace() for c in url) or _has_control(url):
        raise ValueError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"invalid URL ({exc})") from None
    if not parts.scheme:
        raise ValueError("URL has no scheme (need http:// or https://)")
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (only http and https)")
    if not parts.hostname:
        raise ValueError("URL has no host")
    return url


def parse_line(line_no: int, line: str) -> LinkEntry | LinkProblem | None:
    """Parse one line (without its newline); ``None`` for blank and comment lines."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    fields = line.split("\t")
    if len(fields) != 2:
        return LinkProblem(line_no, line, f"expected 2 tab-separated fields (url, path), found {len(fields)}")
    url, rel = (f.strip() for f in fields)
    if not url:
        return LinkProblem(line_no, line, "empty URL field")
    if not rel:
        return LinkProblem(line_no, line, "empty path field")
    try:
        check_url(url)
    except ValueError as exc:
        return LinkProblem(line_no, line, f"bad URL: {exc}")
    try:
        norm = safe_relpath(rel)
    except ValueError as exc:
        return LinkProblem(line_no, line, f"unsafe path: {exc}")
    return LinkEntry(line_no, url, norm)


def parse_links(path: Path) -> tuple[list[LinkEntry], list[LinkProblem]]:
    """Parse a links file into good entries and problem lines, both in file order.

    Raises ``CoverSearchError`` if the file is missing or unreadable.  Duplicates are kept here
    (each caller decides what a duplicate means); lines that are not UTF-8 are problems.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CoverSearchError(f"links file not found: {path}") from None
    except IsADirectoryError:
        raise CoverSearchError(f"links file is a folder, not a file: {path}") from None
    except OSError as exc:
        raise CoverSearchError(f"cannot read links file {path}: {exc.strerror or exc}") from None

    entries: list[LinkEntry] = []
    problems: list[LinkProblem] = []
    # bytes.splitlines splits on \n, \r\n and \r only (str.splitlines would also split on \x0b, \x1c...).
    for line_no, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(LinkProblem(line_no, raw.decode("utf-8", "replace"), "line is not valid UTF-8"))
            continue
        if line_no == 1:
            line = line.removeprefix("\ufeff")  # a BOM from editors that add one
        parsed = parse_line(line_no, line)
        if isinstance(parsed, LinkEntry):
            entries.append(parsed)
        elif parsed is not None:
            problems.append(parsed)
    return entries, problems
