"""Write a folder whole or not at all: indexes and trained models are saved this way."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


@contextmanager
def staged_folder(parent: Path, name: str) -> Iterator[Path]:
    """Yield an empty temporary folder in ``parent``; when the block succeeds it becomes
    ``parent/name``, replacing any old one in two renames (the old folder is put back if the
    second fails).  A crash or error leaves ``parent/name`` as it was."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; these folders are not
        yield staging
        _fsync_tree(staging)
        if final.exists():
            retired = parent / f".{name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(final, retired)
            try:
                os.rename(staging, final)
            except BaseException:
                os.rename(retired, final)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
