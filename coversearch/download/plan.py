"""What a download would do, worked out from the links file alone (no network): ``--dry-run``.

The real run uses the same plan, so what ``--dry-run`` reports is what gets fetched: one entry per
distinct path (the first line wins), malformed and unsafe lines skipped with their line numbers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coversearch.download.fetch import TEMP_SUFFIX
from coversearch.errors import CoverSearchError
from coversearch.sources.links import LinkEntry, LinkProblem, parse_links

FAILURES_FILE = "failures.tsv"


@dataclass(frozen=True)
class Duplicate:
    """A URL or path that occurs on more than one line."""

    key: str
    lines: tuple[int, ...]


@dataclass
class DownloadPlan:
    links_path: Path
    entries: list[LinkEntry]  # to fetch, in file order, one per distinct path
    problems: list[LinkProblem]  # malformed or unsafe lines, skipped
    duplicate_paths: list[Duplicate] = field(default_factory=list)
    duplicate_urls: list[Duplicate] = field(default_factory=list)
    # Later lines whose path an earlier line already claims: (entry, line number of the first).
    shadowed: list[tuple[LinkEntry, int]] = field(default_factory=list)

    @property
    def genres(self) -> dict[str, int]:
        return dict(sorted(Counter(e.genre for e in self.entries).items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "links": str(self.links_path),
            "total": len(self.entries),
            "genres": self.genres,
            "duplicate_urls": [{"url": d.key, "lines": list(d.lines)} for d in self.duplicate_urls],
            "duplicate_paths": [{"path": d.key, "lines": list(d.lines)} for d in self.duplicate_paths],
            "malformed": [{"line": p.line_no, "reason": p.reason, "text": p.line} for p in self.problems],
        }


def out_root(out: Path) -> Path:
    """The resolved output folder; a clear error if ``out`` exists and is not a folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CoverSearchError(f"--out {out} is an existing file, not a folder")
    return out.resolve()


def contained(root: Path, relpath: str) -> bool:
    """Whether ``root/relpath`` resolves (following any symlinks already on disk) inside ``root``.

    ``root`` must already be resolved.
    """
    return (root / relpath).resolve().is_relative_to(root)


def plan_download(links: Path, out: Path | None = None) -> DownloadPlan:
    """Parse ``links`` and decide what to fetch.  With ``out``, also refuse paths that a symlink
    inside ``out`` would send elsewhere.  Touches no network; raises ``CoverSearchError`` for a
    missing links file or an ``out`` that is a file.
    """
    root = out_root(out) if out is not None else None
    parsed, problems = parse_links(links)

    by_path: dict[str, list[int]] = defaultdict(list)
    by_url: dict[str, list[int]] = defaultdict(list)
    entries: list[LinkEntry] = []
    shadowed: list[tuple[LinkEntry, int]] = []
    for entry in parsed:
        if entry.relpath.endswith(TEMP_SUFFIX):
            problems.append(LinkProblem(entry.line_no, f"{entry.url}\t{entry.relpath}",
                                        f"unsafe path: names ending in {TEMP_SUFFIX} are reserved"))
            continue
        if root is not None and not contained(root, entry.relpath):
            problems.append(LinkProblem(entry.line_no, f"{entry.url}\t{entry.relpath}",
                                        "unsafe path: resolves outside the output folder (symlink)"))
            continue
        by_url[entry.url].append(entry.line_no)
        lines = by_path[entry.relpath]
        lines.append(entry.line_no)
        if len(lines) == 1:
            entries.append(entry)
        else:
            shadowed.append((entry, lines[0]))

    problems.sort(key=lambda p: p.line_no)
    return DownloadPlan(
        links_path=Path(links),
        entries=entries,
        problems=problems,
        duplicate_paths=[Duplicate(k, tuple(v)) for k, v in by_path.items() if len(v) > 1],
        duplicate_urls=[Duplicate(k, tuple(v)) for k, v in by_url.items() if len(v) > 1],
        shadowed=shadowed,
    )
