"""Named stages of one long job, each timed and each with its own progress.

``clock = StageClock(display)``, then ``with clock("load features", unit="album") as advance:``
around each stage; ``advance(done, total)`` reports progress inside it (the library's
``ProgressFn``).  ``clock.times`` lists (stage, seconds) in the order the stages ended, so a
regression shows at once in a model card or a ``--verbose`` table.  The display (the CLI draws
one bar per stage) is told when a stage starts, advances and ends; without one, stages are only
timed.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

ProgressFn = Callable[[int, int], None]


class StageDisplay(Protocol):
    def start(self, name: str, unit: str) -> ProgressFn: ...

    def finish(self, name: str, seconds: float) -> None: ...


def _ignore(done: int, total: int) -> None:
    pass


class StageClock:
    def __init__(self, display: StageDisplay | None = None):
        self.display = display
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str, unit: str = "step") -> Iterator[ProgressFn]:
        started = time.perf_counter()
        advance = self.display.start(name, unit) if self.display is not None else _ignore
        try:
            yield advance
        finally:
            seconds = time.perf_counter() - started
            self.times.append((name, seconds))
            if self.display is not None:
                self.display.finish(name, seconds)

    def seconds(self, prefix: str = "") -> float:
        """The time spent in stages whose name starts with ``prefix`` (all of them by default)."""
        return sum(s for name, s in self.times if name.startswith(prefix))

    def table(self) -> list[dict[str, float | str]]:
        """[{"stage", "seconds"}] in order: what a model card records."""
        return [{"stage": name, "seconds": round(seconds, 2)} for name, seconds in self.times]
