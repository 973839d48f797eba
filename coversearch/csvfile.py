"""CSV files read strictly and streamed: label changes and ingest manifests.

Python's csv module, made strict where a quiet guess would change data: a regular file only (a
pipe or /dev/zero is refused before reading), of bounded size, read a line at a time; a header
naming a column twice is refused (which of the two would count?); a record with more or fewer
fields than the header is reported, not padded or cut; an unterminated quote is an error, not the
rest of the file in one field.  Line numbers are physical lines of the file, as an editor shows
them: a record is numbered by the line it starts on, and only \\n, \\r and \\r\\n end a line
(never U+2028 or other characters ``str.splitlines`` also splits on).
"""

from __future__ import annotations

import csv
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from coversearch.errors import CoverSearchError
from coversearch.fsutil import file_kind, format_bytes

MAX_CSV_BYTES = 256 * 1024**2
_LONE_CR = re.compile(r"(?<=\r)(?!\n)(?=.)", re.DOTALL)  # after a \r that is not part of \r\n, before more text


@dataclass(frozen=True)
class CsvRecord:
    line: int  # the physical line the record starts on
    fields: dict[str, str] | None  # header column -> value; None when the record is malformed
    problem: str | None = None  # why it is malformed


class StrictCsv:
    """``with StrictCsv(path) as table:`` then ``table.header`` (lower-cased, trimmed) and
    ``for record in table``.  Errors that make the rest unreadable raise ``CoverSearchError``;
    a record of the wrong width comes as a ``CsvRecord`` with its ``problem``."""

    def __init__(self, path: str | os.PathLike, *, what: str = "", max_bytes: int = MAX_CSV_BYTES):
        self.path = Path(path)
        self.name = f"{what} {self.path}" if what else str(self.path)  # e.g. "manifest covers.csv", for messages
        self.max_bytes = max_bytes
        self.header: list[str] = []
        self._fh = None
        self._read = 0
        self._lines = 0

    def _fail(self, message: str, line: int | None = None) -> CoverSearchError:
        where = f"{self.name} line {line}" if line else self.name
        return CoverSearchError(f"{where}: {message}")

    def __enter__(self) -> "StrictCsv":
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise CoverSearchError(f"cannot read {self.name}: {exc.strerror or exc}") from None
        except ValueError as exc:  # a NUL byte in the path
            raise CoverSearchError(f"cannot read {self.name}: {exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise CoverSearchError(f"{self.name} is {file_kind(info.st_mode)}, not a regular file")
            if info.st_size > self.max_bytes:
                raise CoverSearchError(f"{self.name} is {format_bytes(info.st_size)}, over the {format_bytes(self.max_bytes)} limit")
        except BaseException:
            os.close(fd)
            raise
        self._fh = os.fdopen(fd, "rb")
        try:
            self._reader = csv.reader(self._physical_lines(), strict=True)
            first = self._next()
            while first is not None and not first[1]:  # blank lines before the header
                first = self._next()
            self.header = [name.strip().lower() for name in first[1]] if first else []
            seen: set[str] = set()
            for name in self.header:
                if name and name in seen:
                    raise self._fail(f"the header names column {name!r} more than once", first[0])
                seen.add(name)
        except BaseException:
            self._fh.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()

    def _physical_lines(self) -> Iterator[str]:
        """The file's lines, decoded one at a time (so a bad byte is reported on its own line)."""
        encoding = "utf-8-sig"  # a byte-order mark, if any, opens the first line only
        for raw in self._fh:  # split at b"\n", which no multi-byte UTF-8 character holds
            self._read += len(raw)
            if self._read > self.max_bytes:
                raise self._fail(f"grew past the {format_bytes(self.max_bytes)} limit while read")
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise self._fail("not UTF-8 text", self._lines + 1) from None
            encoding = "utf-8"
            for line in _LONE_CR.split(text):  # a lone \r ends a line too (old Mac files)
                self._lines += 1
                yield line

    def _next(self) -> tuple[int, list[str]] | None:
        """The next record as (the line it starts on, its fields)."""
        start = self._lines + 1
        try:
            row = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            message = str(exc)
            if "unexpected end of data" in message:
                message = "a quoted field is never closed (a missing '\"')"
            elif "field larger than field limit" in message:
                message = f"a field is longer than {csv.field_size_limit():,} characters"
            raise self._fail(message, start) from None
        return start, row

    def __iter__(self) -> Iterator[CsvRecord]:
        while (found := self._next()) is not None:
            line, row = found
            if not row:
                continue  # a blank line
            if len(row) != len(self.header):
                yield CsvRecord(line, None, f"{len(row)} fields; the header has {len(self.header)}")
                continue
            yield CsvRecord(line, {name: value for name, value in zip(self.header, row) if name})
