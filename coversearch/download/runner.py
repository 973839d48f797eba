"""Run a download: plan, clean up after a killed run, fetch with bounded concurrency, summarise.

Resumable by construction: a file under its final name is always complete and decodes as an
image (see ``fetch``), so a rerun verifies and skips what is there and fetches the rest.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from coversearch.download.fetch import TEMP_SUFFIX, FetchConfig, fetch_to_file, is_valid_image, new_session
from coversearch.download.plan import FAILURES_FILE, DownloadPlan, contained, plan_download
from coversearch.errors import CoverSearchError
from coversearch.fsutil import write_atomic
from coversearch.sources.links import LinkEntry

DEFAULT_WORKERS = 16


# A link whose file is in the dataset folder after the run (downloaded now or found valid).
PresentFile = LinkEntry


@dataclass(frozen=True)
class Failure:
    """A line whose file is not there after the run; ``reason`` is a stable code."""

    line_no: int
    url: str
    relpath: str
    reason: str
    detail: str = ""


@dataclass
class DownloadSummary:
    out: Path
    links_path: Path
    planned: int = 0  # distinct paths to fetch
    downloaded: int = 0
    present: int = 0  # skipped: already there and valid
    files: list[PresentFile] = field(default_factory=list)  # everything now present, by line number
    failures: list[Failure] = field(default_factory=list)  # fetch failures, duplicates and malformed lines
    malformed: int = 0
    bytes_downloaded: int = 0
    stale_removed: int = 0  # temporary files of an earlier, killed run
    elapsed_s: float = 0.0

    @property
    def failures_path(self) -> Path:
        return self.out / FAILURES_FILE

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures_by_reason(self) -> dict[str, int]:
        return dict(Counter(f.reason for f in self.failures).most_common())

    def to_json(self, *, with_files: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "out": str(self.out),
            "links": str(self.links_path),
            "planned": self.planned,
            "downloaded": self.downloaded,
            "present": self.present,
            "failed": self.failed,
            "failures_by_reason": self.failures_by_reason,
            "malformed": self.malformed,
            "bytes_downloaded": self.bytes_downloaded,
            "stale_temp_removed": self.stale_removed,
            "elapsed_s": round(self.elapsed_s, 3),
            "failures_file": str(self.failures_path),
            "failures": [
                {"line": f.line_no, "url": f.url, "path": f.relpath, "reason": f.reason, "detail": f.detail}
                for f in self.failures
            ],
        }
        if with_files:
            data["files"] = [{"path": f.relpath, "genre": f.genre, "url": f.url} for f in self.files]
        return data


class ProgressHook:
    """Receives progress from a run; the CLI draws a bar with it.  Methods may be called from worker threads."""

    def start(self, total_files: int) -> None: ...

    def add_bytes(self, n: int) -> None: ...

    def file_done(self, outcome: str) -> None:
        """``outcome`` is "downloaded", "present" or "failed"."""

    def finish(self) -> None: ...


def remove_stale_temp(root: Path) -> int:
    """Delete temporary files left by a killed run (only names this downloader creates)."""
    removed = 0
    for folder, _dirs, names in os.walk(root):  # does not follow symlinked folders
        for name in names:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _clean(text: str) -> str:
    # One TSV field: no tabs, newlines or other control characters.
    return " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())


def write_failures(path: Path, failures: list[Failure]) -> None:
    """(Re)write the failures file atomically: header plus one line per failure, by line number."""
    lines = ["line\turl\tpath\treason\tdetail"]
    for f in sorted(failures, key=lambda f: f.line_no):
        lines.append("\t".join([str(f.line_no), _clean(f.url), _clean(f.relpath), f.reason, _clean(f.detail)]))
    write_atomic(path, "\n".join(lines) + "\n", mode=0o600, fsync=True, suffix=TEMP_SUFFIX)


class _Sessions:
    """One requests session per worker thread, all closed at the end."""

    def __init__(self, config: FetchConfig):
        self._config = config
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = new_session(self._config)
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._all:
                session.close()
            self._all.clear()


def _prepare_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CoverSearchError(f"--out {out} is an existing file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CoverSearchError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    return out.resolve()


def download(
    links: Path,
    out: Path,
    config: FetchConfig | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressHook | None = None,
    stop: threading.Event | None = None,
) -> DownloadSummary:
    """Download every image of ``links`` to ``out/<genre>/<file>``; see the module docstring.

    Returns the summary (also written as ``out/failures.tsv`` for what failed).  Raises
    ``CoverSearchError`` only for a missing/unreadable links file or an unusable ``out``.
    Setting ``stop`` (e.g. from a signal handler) makes workers give up quickly.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    config = config or FetchConfig()
    progress = progress or ProgressHook()
    stop = stop or threading.Event()
    started = time.monotonic()

    plan = plan_download(links, out)  # first, so that a bad links file creates nothing
    root = _prepare_out(out)
    summary = DownloadSummary(out=Path(out), links_path=Path(links), planned=len(plan.entries))
    summary.malformed = len(plan.problems)
    summary.stale_removed = remove_stale_temp(root)
    summary.failures.extend(_plan_failures(plan))

    sessions = _Sessions(config)

    def process(entry: LinkEntry) -> tuple[str, Failure | None, int]:
        if stop.is_set():
            return "failed", Failure(entry.line_no, entry.url, entry.relpath, "interrupted", "not started"), 0
        target = root / entry.relpath

        def fail(reason: str, detail: str) -> tuple[str, Failure, int]:
            return "failed", Failure(entry.line_no, entry.url, entry.relpath, reason, detail), 0

        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail("write-error", f"cannot create folder: {exc.strerror or exc}")
        # Checked again now that folders exist: a symlink may have appeared since planning.
        if not contained(root, entry.relpath):
            return fail("unsafe-path", "resolves outside the output folder (symlink)")
        if target.exists() or target.is_symlink():
            if not target.is_file():
                return fail("path-conflict", "exists and is not a regular file")
            if is_valid_image(target):
                return "present", None, 0
            # An invalid file under the final name (not written by us): fetched again and replaced.
        result = fetch_to_file(sessions.get(), entry.url, target, config, on_bytes=progress.add_bytes, stop=stop)
        if result.ok:
            return "downloaded", None, result.size
        return fail(result.reason, result.detail)

    progress.start(len(plan.entries))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="coversearch-download")
    present: list[PresentFile] = []
    try:
        futures = {pool.submit(process, entry): entry for entry in plan.entries}
        for future in as_completed(futures):
            entry = futures[future]
            outcome, failure, size = future.result()
            if outcome == "downloaded":
                summary.downloaded += 1
                summary.bytes_downloaded += size
            elif outcome == "present":
                summary.present += 1
            if failure is None:
                present.append(entry)
            else:
                summary.failures.append(failure)
            progress.file_done(outcome)
    except BaseException:
        stop.set()  # Ctrl-C or a bug: let running transfers end at their next chunk
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        sessions.close()
        progress.finish()

    summary.files = sorted(present, key=lambda f: f.line_no)
    summary.failures.sort(key=lambda f: f.line_no)
    write_failures(summary.failures_path, summary.failures)
    summary.elapsed_s = time.monotonic() - started
    return summary


def _plan_failures(plan: DownloadPlan) -> list[Failure]:
    """Lines the plan skips, as failures, so that failures.tsv accounts for every line not fetched."""
    failures = [Failure(p.line_no, *_fields(p.line), "malformed", p.reason) for p in plan.problems]
    failures += [
        Failure(e.line_no, e.url, e.relpath, "duplicate-path", f"same path as line {first}")
        for e, first in plan.shadowed
    ]
    return failures


def _fields(line: str) -> tuple[str, str]:
    parts = line.split("\t")
    return (parts[0], parts[1]) if len(parts) == 2 else ("", "")
