"""Ends a local Ray instance whose driver died without shutting it down (``kill -9``, OOM killer).

Ray ties its head processes (GCS, raylet) to the driver, but the raylet's agents (dashboard agent,
runtime-env agent) outlive it by a minute or more, holding about 180 MB.  This watchdog runs as
its own process (started by ``coversearch.ray_local``, run as a script: standard library only):

    python ray_watchdog.py ROOT_PID...

It reads its stdin, a pipe only the driver holds.  Every second it records the root processes
(those ``ray.init`` started) and all their descendants, each with its start time so that a
reused pid is never mistaken for one of them.  ``done`` on stdin: the driver shut Ray down
itself; end of file without it: the driver is gone.  Either way every recorded process still
alive (after a shutdown: a worker that was still starting) gets SIGTERM, and SIGKILL two seconds
later.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

SCAN_SECONDS = 1.0
GRACE_SECONDS = 2.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _processes() -> dict[int, tuple[int, int]]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                found[int(name)] = info
    return found


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> set[int]:
    """``roots`` that are alive and every live process below them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def end_processes(tracked: dict[int, int]) -> None:
    """SIGTERM, then SIGKILL, every tracked process still alive with the start time recorded."""
    def alive() -> list[int]:
        return [pid for pid, started in tracked.items() if (info := _stat(pid)) is not None and info[1] == started]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = alive()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE_SECONDS
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = alive()
        if not pids:
            return


def watch(roots: set[int]) -> int:
    tracked: dict[int, int] = {}  # pid -> start time
    me = os.getpid()
    while True:
        table = _processes()
        for pid in descendants(roots, table) - {me}:
            tracked.setdefault(pid, table[pid][1])
        ready, _, _ = select.select([sys.stdin], [], [], SCAN_SECONDS)
        if not ready:
            continue
        data = os.read(sys.stdin.fileno(), 64)
        if data and b"done" not in data:
            continue
        # "done": Ray was shut down, so whatever is left (a worker still starting up) is a leftover;
        # end of file without it: the driver died.  Either way, nothing of the instance stays.
        end_processes(tracked)
        return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is for the driver, not for us
    sys.exit(watch({int(a) for a in sys.argv[1:]}))
