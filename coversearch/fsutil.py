"""Write a file or a folder whole or not at all, and say how big things are.

``write_atomic`` writes one file under a temporary name and renames it into place.

A build writes ``.NAME.staging-PID-*`` and swaps the previous folder out as ``.NAME.old-PID-*``.
A build killed mid-way leaves these behind; ``leftovers`` lists them and the next ``staged_folder``
in the same parent removes the ones no live process holds (see ``Leftover.held``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from coversearch.errors import CoverSearchError

# Index and model names: one plain path component, so a name can never reach outside its folder.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")

# ".NAME.staging-PID-xxxx" / ".NAME.old-PID-xxxx"; names written before the PID was added lack it.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<stage>staging|old)-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")


def check_folder_name(name: str, what: str) -> str:
    """``name`` if it is a safe folder name for an index or model (``what``), else a clear error."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise CoverSearchError(f"bad {what} name {name!r}: use letters, digits, '.', '_', '+' and '-' (not starting with '.' or '-')")
    return name


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds); None when it is not running (or unknown here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    boot = _boot_time()
    if boot is None:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


_STARTED = process_start(os.getpid()) or time.time()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Leftover:
    path: Path
    name: str  # the index or model it was for
    stage: str  # "staging" (a build that never finished) or "old" (a replaced folder not yet deleted)
    pid: int | None
    modified: float

    @property
    def held(self) -> bool:
        """Whether a live build may still own it: its process (same PID, started before the folder
        was last written) is running; without a PID, only folders older than this process count as dead."""
        if self.pid is None:
            return self.modified >= _STARTED
        if self.pid == os.getpid():
            return True
        if not Path("/proc/self/stat").exists():  # no start times to compare: any live PID holds it
            return _alive(self.pid)
        started = process_start(self.pid)
        return started is not None and started <= self.modified + 1

    def describe(self) -> str:
        what = "unfinished build" if self.stage == "staging" else "replaced folder"
        state = "held by a running process" if self.held else "removed by the next build"
        return f"{self.path.name}: {what} of {self.name!r} ({state})"


def leftovers(parent: Path) -> list[Leftover]:
    """Hidden staging / retired folders in ``parent`` left by builds that did not finish."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    found = []
    for path in sorted(parent.iterdir()):
        match = _LEFTOVER.match(path.name)
        if match is None or not path.is_dir() or path.is_symlink():
            continue
        try:
            modified = path.stat().st_mtime
        except OSError:
            continue
        pid = int(match["pid"]) if match["pid"] else None
        found.append(Leftover(path, match["name"], match["stage"], pid, modified))
    return found


def remove_leftovers(parent: Path) -> list[Leftover]:
    """Remove the leftovers no live process holds; returns what was removed."""
    removed = []
    for leftover in leftovers(parent):
        if not leftover.held:
            shutil.rmtree(leftover.path, ignore_errors=True)
            removed.append(leftover)
    return removed


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
    remove_leftovers(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-{os.getpid()}-", dir=parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; these folders are not
        yield staging
        _fsync_tree(staging)
        if final.exists():
            retired = parent / f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644, fsync: bool = False,
                 suffix: str = ".tmp") -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file beside it, then ``os.replace``
    (``fsync``: flushed to disk first, for files a crash must not leave empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_bytes(n: float, *, si: bool = False) -> str:
    """1536 -> "1.5 KiB"; with ``si``, 1500 -> "1.5 kB" (powers of 1000, as download sizes are given)."""
    base, units = (1000, ("B", "kB", "MB", "GB")) if si else (1024, ("B", "KiB", "MiB", "GiB"))
    for unit in units:
        if n < base or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    raise AssertionError("unreachable")
