"""Rich progress bars shared by long-running commands (on stderr, off with --quiet)."""

from __future__ import annotations

import time
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


class _StageCount(ProgressColumn):
    """"87/200 epoch" for a stage that counts its work; nothing for one that does not."""

    def render(self, task) -> Text:
        if not task.fields.get("counted"):
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)} {task.fields['unit']}", style="progress.download")


class _StageRate(ProgressColumn):
    """Units per second over the stage (only for a stage that counts its work)."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        if not task.fields.get("counted") or elapsed <= 0:
            return Text("")
        return Text(f"{task.completed / elapsed:,.1f}/s", style="progress.data.speed")


class StageBars:
    """A ``StageDisplay`` (see coversearch/stages.py): one rich bar per stage, named, with its own
    count, rate and time; a stage that ends early (early stopping) says where it stopped.
    ``close()`` it when the job ends.  ``times``: (stage, seconds) of every stage that ended."""

    def __init__(self, quiet: bool = False):
        self._quiet = quiet
        self._progress: Progress | None = None
        self._tasks: dict[str, object] = {}
        self.times: list[tuple[str, float]] = []
        self._spans: list[tuple[float, float]] = []

    def start(self, name: str, unit: str):
        if self._quiet:
            return lambda done, total: None
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), _StageCount(), _StageRate(), TimeElapsedColumn(),
                console=err_console,
            )
            self._progress.start()
        progress = self._progress
        task = progress.add_task(name, total=None, unit=unit, counted=False)
        self._tasks[name] = task

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, counted=True)

        return advance

    def finish(self, name: str, seconds: float) -> None:
        ended = time.perf_counter()
        self.times.append((name, seconds))
        self._spans.append((ended - seconds, ended))
        task_id = self._tasks.pop(name, None)
        if self._progress is None or task_id is None:
            return
        task = next(t for t in self._progress.tasks if t.id == task_id)
        if task.fields.get("counted") and task.total and task.completed < task.total:
            self._progress.update(task_id, description=f"{name} (stopped at {int(task.completed)} of {int(task.total)})",
                                  total=task.completed)
        else:
            self._progress.update(task_id, total=task.total or 1, completed=task.total or 1)
        self._progress.stop_task(task_id)

    def covered_seconds(self) -> float:
        """The time at least one stage was running: stages that ran side by side count once."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self._spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
