"""Ray as the commands use it: a cluster joined without hanging, a local instance sized to this
machine and never left running after its driver is gone.

* ``check_reachable``: ``ray.init(address=...)`` retries an address where nothing listens for
  minutes.  A TCP connection is tried first (``JOIN_PROBE_SECONDS``), and Ray itself gets one
  attempt, so a wrong address fails in seconds and one where something else answers in about
  ``JOIN_SECONDS``.
* ``check_local_cpus``: Ray's logical CPUs are only a count; asking a local instance for more than
  the machine's cores starts that many worker processes on too few cores.
* ``LocalInstanceWatch``: a watchdog process (``ray_watchdog.py``) that ends what a local instance
  started when its driver dies without shutting it down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from coversearch.errors import CoverSearchError

JOIN_PROBE_SECONDS = 5.0
JOIN_SECONDS = 60  # the stated bound on a join that fails: probe, then Ray's single attempt (~40 s)


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_local_cpus(workers: int, cpus_per_worker: int, cores: int | None = None) -> None:
    """Refuse actors that would reserve more CPUs than this machine has (a local instance)."""
    cores = machine_cores() if cores is None else cores
    needed = workers * cpus_per_worker
    if needed > cores:
        fix = (f"--cpus-per-worker can be at most {cores}" if cpus_per_worker > cores
               else f"use at most --workers {cores // cpus_per_worker} with --cpus-per-worker {cpus_per_worker}")
        raise CoverSearchError(
            f"--workers {workers} x --cpus-per-worker {cpus_per_worker} = {needed} CPUs, but this machine has {cores}: "
            f"{fix} (or join a larger cluster with --address)"
        )


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port", "[v6]:port" or "ray://host:port"; None for forms Ray resolves itself."""
    text = address.strip()
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme != "ray":
            return None
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def _ray_bootstrap(address: str) -> tuple[str, int] | None:
    """Where Ray will connect for ``address`` (it replaces a loopback host by this node's address)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        canonical = canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001 - a private helper: any failure just means "probe the address as given"
        return None
    return _host_port(canonical) if canonical else None


def check_reachable(address: str, timeout: float = JOIN_PROBE_SECONDS) -> None:
    """Refuse, within ``timeout`` seconds per address, an address where nothing accepts a connection."""
    given = _host_port(address)
    if given is None:
        return  # "auto" and the like: Ray finds the address itself
    targets = [given]
    if not address.startswith("ray://") and (canonical := _ray_bootstrap(address)) not in (None, given):
        targets.append(canonical)
    problems = []
    for host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or type(exc).__name__}")
    raise CoverSearchError(f"cannot join the Ray cluster at {address}: nothing answers ({'; '.join(problems)})")


@contextmanager
def one_join_attempt() -> Iterator[None]:
    """Ray retries a driver's first connection 20 times (about 40 s each); once is enough for a
    cluster that is up.  Only for the join: a local start reads the same setting."""
    key = "RAY_gcs_server_port_wait_time_s"
    before = os.environ.get(key)
    if before is None:
        os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def child_pids(pid: int | None = None) -> set[int]:
    """The live children of ``pid`` (default: this process), from /proc."""
    pid = os.getpid() if pid is None else pid
    found = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                text = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            found.add(int(name))
    return found


class LocalInstanceWatch:
    """The watchdog of the processes a local ``ray.init`` started (``started``: their pids)."""

    def __init__(self, started: set[int]):
        self.process: subprocess.Popen | None = None
        if not started or not Path("/proc").is_dir():
            return  # nothing to watch, or no /proc to watch it with (not Linux)
        script = Path(__file__).with_name("ray_watchdog.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), *map(str, sorted(started))],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C is the driver's
        )

    @classmethod
    def start(cls, init: Callable[[], object]) -> "LocalInstanceWatch":
        """Run ``init`` (a local ``ray.init``) and watch the processes it started."""
        before = child_pids()
        init()
        return cls(child_pids() - before)

    def stop(self) -> None:
        """Ray was shut down here: the watchdog ends what is left of the instance, then leaves."""
        if self.process is None:
            return
        try:
            self.process.stdin.write(b"done")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
