"""File checksums for folders that native libraries load (indexes, trained models).

A folder's record lists each file's size and sha256.  ``verify_records`` checks them before
FAISS, annoy, XGBoost, Keras or numpy open anything: a damaged file is then one clear error
instead of a crash (or a silently wrong answer) inside a native loader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping


@dataclass
class FileRecord:
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Mapping) -> "FileRecord":
        return cls(int(data["bytes"]), str(data["sha256"]))


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> FileRecord:
    return FileRecord(path.stat().st_size, file_sha256(path))


def tree_files(folder: Path) -> list[str]:
    """Every file below ``folder``, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def record_tree(folder: Path, exclude: Iterable[str] = ()) -> dict[str, FileRecord]:
    skip = set(exclude)
    return {name: file_record(Path(folder) / name) for name in tree_files(folder) if name not in skip}


def verify_records(
    folder: Path,
    records: Mapping[str, FileRecord],
    what: str,
    error: Callable[[str], Exception],
    *,
    required: Iterable[str] = (),
    fix: str = "rebuild it",
) -> None:
    """Every recorded file is there with its size and sha256, and ``required`` files are recorded.

    ``what`` names the folder in messages ("index 'x'"); ``error`` makes the exception to raise.
    """
    unrecorded = [name for name in required if name not in records]
    if not records or unrecorded:
        missing = ", ".join(unrecorded) or "any file"
        raise error(f"{what} records no checksum for {missing}, so its files cannot be verified; {fix}")
    for name, expected in records.items():
        path = Path(folder) / name
        if not path.is_file():
            raise error(f"{what} is missing its file {name}; {fix}")
        size = path.stat().st_size
        if size != expected.bytes:
            state = "truncated" if size < expected.bytes else "longer than recorded"
            raise error(f"{what} file {name} is {state} ({size} bytes, expected {expected.bytes}); {fix}")
        if file_record(path).sha256 != expected.sha256:
            raise error(f"{what} file {name} is corrupt (checksum mismatch); {fix}")
