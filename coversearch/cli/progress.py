"""Rich progress bars shared by long-running commands (on stderr, off with --quiet)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from coversearch.cli.app import err_console


class RateColumn(ProgressColumn):
    """Items per second over the whole run (steadier than rich's windowed speed)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f} {self.unit}/s", style="progress.data.speed")


class _Advance:
    """``advance(n)``; ``advance.set_total(n)`` once the total is known (a no-op when quiet)."""

    def __init__(self, progress: Progress | None = None, task=None):
        self._progress, self._task = progress, task

    def __call__(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def set_total(self, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)


@contextmanager
def progress_bar(description: str, total: int, unit: str, quiet: bool = False) -> Iterator[_Advance]:
    """Yields ``advance(n)``; a no-op when quiet."""
    if quiet:
        yield _Advance()
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    with progress:
        yield _Advance(progress, progress.add_task(description, total=total))


class DoneTotalBar:
    """A ``(done, total)`` progress callback (what the library's long jobs call) drawn as a rich bar,
    opened on the first call, when the total is known; ``close()`` it when the job ends."""

    def __init__(self, description: str, unit: str, quiet: bool = False):
        self._description, self._unit, self._quiet = description, unit, quiet
        self._cm = None
        self._advance = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if self._quiet:
            return
        if self._cm is None:
            self._cm = progress_bar(self._description, total, self._unit)
            self._advance = self._cm.__enter__()
        if done > self._done:
            self._advance(done - self._done)
            self._done = done

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
