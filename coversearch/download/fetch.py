"""Fetch one URL to one file: retries with backoff, size limits, image check, atomic write.

A file only ever appears under its final name after its bytes were fully received, flushed to
disk and decoded as an image, so a killed run leaves at most temporary files (named
``.<name>.<random>.coversearch-part`` in the target's folder) that the next run removes.
"""

from __future__ import annotations

import email.utils
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests
import urllib3.exceptions
from PIL import Image, UnidentifiedImageError

TEMP_SUFFIX = ".coversearch-part"
DEFAULT_MAX_BYTES = 20_000_000


@dataclass(frozen=True)
class FetchConfig:
    """Limits and retry policy for every URL of a run."""

    timeout: float = 20.0  # seconds for connecting and for each read (inactivity), as in requests
    retries: int = 3  # extra attempts after the first, for retryable failures only
    max_bytes: int = DEFAULT_MAX_BYTES
    backoff: float = 1.0  # first retry delay; doubles on each further retry
    backoff_cap: float = 30.0
    retry_after_cap: float = 60.0  # a server's Retry-After is honoured up to this many seconds
    chunk_size: int = 16_384
    user_agent: str = "coversearch-download/0.1"

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if self.backoff < 0:
            raise ValueError("backoff must be >= 0")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return min(self.backoff * 2 ** (attempt - 1), self.backoff_cap)


@dataclass(frozen=True)
class FetchResult:
    ok: bool
    reason: str = ""  # stable code such as "http-404", "timeout", "not-image"; "" when ok
    detail: str = ""
    size: int = 0  # bytes of the file written (0 on failure)
    attempts: int = 0


class FetchFailure(Exception):
    """One failed attempt; ``retryable`` says whether another attempt may help."""

    def __init__(self, reason: str, detail: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return max((when - now_dt).total_seconds(), 0.0)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_size(text: str) -> int:
    """``"20MB"`` -> 20000000, ``"512KiB"`` -> 524288, ``"1000"`` -> 1000; ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 20MB, 512KiB, 1000000)")
    unit = (m.group(2) or "").lower()
    unit = unit[:-1] if unit.endswith("b") and unit != "b" else unit
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


def check_image(path: Path) -> None:
    """Raise ``FetchFailure`` unless ``path`` fully decodes as an image (Pillow open + load).

    Relies on Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` so that a cut JPEG
    fails to load.  Images with more pixels than ``Image.MAX_IMAGE_PIXELS`` are refused before
    decoding (decompression bombs).
    """
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.width * im.height > limit:
                raise FetchFailure("bad-image", f"{im.width}x{im.height} pixels is over the decoding limit")
            im.load()
    except FetchFailure:
        raise
    except UnidentifiedImageError:
        raise FetchFailure("not-image", "response is not an image (an error page?)") from None
    except Exception as exc:  # Pillow raises many types on corrupt data (OSError, SyntaxError, ...)
        raise FetchFailure("bad-image", f"image does not decode: {exc}") from None


def is_valid_image(path: Path) -> bool:
    try:
        check_image(path)
    except FetchFailure:
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_session(config: FetchConfig) -> requests.Session:
    """A session for one worker thread (requests sessions are not guaranteed thread-safe)."""
    session = requests.Session()
    session.max_redirects = 5
    session.headers.update({"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.5"})
    return session


def _is_read_timeout(exc: BaseException) -> bool:
    # requests wraps a read timeout that happens while streaming the body in ConnectionError.
    arg = exc.args[0] if exc.args else None
    return isinstance(arg, urllib3.exceptions.ReadTimeoutError) or isinstance(exc, requests.Timeout)


def _attempt(
    session: requests.Session,
    url: str,
    target: Path,
    config: FetchConfig,
    on_bytes: Callable[[int], None] | None,
    stop: threading.Event | None,
) -> int:
    """One GET; returns the size written to ``target`` or raises ``FetchFailure``."""
    try:
        with session.get(url, stream=True, timeout=(config.timeout, config.timeout)) as resp:
            status = resp.status_code
            if status == 429 or 500 <= status <= 599:
                raise FetchFailure(
                    f"http-{status}",
                    f"HTTP {status} {resp.reason or ''}".strip(),
                    retryable=True,
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                )
            if status != 200:  # 404 and other 4xx, and odd successes such as 204/206
                raise FetchFailure(f"http-{status}", f"HTTP {status} {resp.reason or ''}".strip())

            length_header = resp.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.strip().isdigit() else None
            if length is not None and length > config.max_bytes:
                raise FetchFailure("too-large", f"Content-Length {length} is over the limit of {config.max_bytes} bytes")
            # Without content coding, the body must be exactly Content-Length bytes long.
            expect = length if not resp.headers.get("Content-Encoding") else None

            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
            tmp: Path | None = Path(tmp_name)
            try:
                size = 0
                with os.fdopen(fd, "wb") as fh:
                    for chunk in resp.iter_content(config.chunk_size):
                        if stop is not None and stop.is_set():
                            raise FetchFailure("interrupted", "download was interrupted")
                        size += len(chunk)
                        if size > config.max_bytes:
                            raise FetchFailure("too-large", f"body is over the limit of {config.max_bytes} bytes (cut off)")
                        fh.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                    if expect is not None and size != expect:
                        raise FetchFailure("truncated", f"got {size} of {expect} bytes", retryable=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                check_image(tmp)
                os.replace(tmp, target)
                tmp = None
                _fsync_dir(target.parent)
                return size
            finally:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
    except FetchFailure:
        raise
    except requests.exceptions.ChunkedEncodingError as exc:
        raise FetchFailure("truncated", f"connection closed mid-body ({exc.__class__.__name__})", retryable=True) from None
    except requests.exceptions.ContentDecodingError as exc:
        raise FetchFailure("bad-encoding", str(exc)) from None
    except requests.exceptions.TooManyRedirects:
        raise FetchFailure("too-many-redirects", f"more than {session.max_redirects} redirects") from None
    except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
        # Also what a redirect to file:// or ftp:// ends in: requests only speaks http(s).
        raise FetchFailure("bad-url", str(exc)) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        if _is_read_timeout(exc) or isinstance(exc, requests.exceptions.ConnectTimeout):
            raise FetchFailure("timeout", f"no response within {config.timeout:g}s", retryable=True) from None
        raise FetchFailure("connection-error", _short(exc), retryable=True) from None
    except requests.exceptions.RequestException as exc:
        raise FetchFailure("request-error", _short(exc)) from None
    except OSError as exc:  # writing: disk full, permissions, name too long...
        raise FetchFailure("write-error", f"{exc.strerror or exc}") from None


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _short(exc: BaseException, limit: int = 200) -> str:
    """The useful part of a urllib3/requests error, which nests several wrappers' messages."""
    text = str(exc)
    cause = _ERRNO.search(text)  # e.g. "Connection refused", "Name or service not known"
    if cause:
        return cause.group(1).strip()
    text = f"{exc.__class__.__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fetch_to_file(
    session: requests.Session,
    url: str,
    target: Path,
    config: FetchConfig,
    *,
    on_bytes: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> FetchResult:
    """Download ``url`` to ``target`` (whose folder must exist), retrying what may succeed later.

    Never raises for network or content problems: they come back as ``FetchResult(ok=False)``.
    ``stop`` (set on Ctrl-C) ends waits and transfers early.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            size = _attempt(session, url, target, config, on_bytes, stop)
            return FetchResult(True, size=size, attempts=attempts)
        except FetchFailure as failure:
            out_of_tries = attempts > config.retries
            if not failure.retryable or out_of_tries or (stop is not None and stop.is_set()):
                detail = failure.detail if attempts == 1 else f"{failure.detail} (after {attempts} attempts)"
                return FetchResult(False, failure.reason, detail, attempts=attempts)
            wait = config.delay(attempts, failure.retry_after)
            if stop is not None:
                if stop.wait(wait):
                    return FetchResult(False, "interrupted", "download was interrupted", attempts=attempts)
            else:
                time.sleep(wait)
