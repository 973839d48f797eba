"""Write a file or a folder whole or not at all, and say how big things are.

``write_atomic`` writes one file under a temporary name and renames it into place; ``atomic_output``
does the same for a writer that needs a file name.  A file the user named (``--out`` and the like)
is checked by ``check_output`` before the work and written with ``option=`` set: only as a regular
file, never through a symbolic link, with one ``error:`` line when it cannot be.

A build writes ``.NAME.staging-PID-*`` and swaps the previous folder out as ``.NAME.old-PID-*``.
A build killed mid-way leaves these behind; ``leftovers`` lists them and the next ``staged_folder``
in the same parent removes the ones no live process holds (see ``Leftover.held``).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
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


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words ("a named pipe")."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a special file"


def _temp_prefix(path: Path) -> str:
    return f".{path.name[:100]}."  # a long name plus the random part must stay one legal file name


def _refuse_non_regular(path: Path, option: str) -> None:
    """Refuse to replace anything but a regular file: a device, pipe or socket would be swapped for a
    plain file, a folder cannot be, and a symbolic link is refused rather than followed, because the
    atomic rename that replaces a file would replace the link itself (see docs on outputs)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:  # e.g. a path through a file, or a loop of links
        raise CoverSearchError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise CoverSearchError(f"{option} {path} is a folder; give a file name inside it")
    if stat.S_ISLNK(mode):
        raise CoverSearchError(
            f"{option} {path} is a symbolic link (to {os.readlink(path)}); outputs are written as regular files only: "
            "give the path of the file itself"
        )
    raise CoverSearchError(f"{option} {path} is {file_kind(mode)}; outputs are written as regular files only")


def check_output(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as an output the user named (``option`` says which), checked before any work: it is
    absent or a regular file (not a link, folder, device, pipe or socket), in an existing folder
    where a file can be created (tried for real: permissions, read-only mounts and /proc all show)."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise CoverSearchError(f"{option} {str(path) or repr('')}: give a file name")
    _refuse_non_regular(path, option)
    folder = path.parent
    if not folder.is_dir():
        raise CoverSearchError(f"cannot write {option} {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CoverSearchError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
    return path


@contextmanager
def atomic_output(path: str | os.PathLike, *, mode: int = 0o644, fsync: bool = False, suffix: str = ".tmp",
                  option: str | None = None) -> Iterator[Path]:
    """Yield a temporary file beside ``path`` for a writer that needs a file name (DuckDB's COPY);
    when the block succeeds it becomes ``path`` (``mode``; ``fsync``: flushed to disk first, for
    files a crash must not leave empty), else it is removed and ``path`` is as it was.

    ``option`` marks a file the user named: it is checked as ``check_output`` does, again just
    before the rename, and an OS error becomes one line naming the option."""
    path = Path(path)
    if option is not None:
        check_output(path, option)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if option is not None:
            _refuse_non_regular(path, option)  # something else may have appeared there during the work
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if option is None:
            raise
        raise CoverSearchError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644, fsync: bool = False,
                 suffix: str = ".tmp", option: str | None = None) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file beside it, then ``os.replace``
    (see ``atomic_output``; ``option`` for a file the user named)."""
    with atomic_output(path, mode=mode, fsync=fsync, suffix=suffix, option=option) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def format_bytes(n: float, *, si: bool = False) -> str:
    """1536 -> "1.5 KiB"; with ``si``, 1500 -> "1.5 kB" (powers of 1000, as download sizes are given)."""
    base, units = (1000, ("B", "kB", "MB", "GB")) if si else (1024, ("B", "KiB", "MiB", "GiB"))
    for unit in units:
        if n < base or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    raise AssertionError("unreachable")
