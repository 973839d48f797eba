"""Serving the app: waitress (a production WSGI server) or Werkzeug's development server, the
loopback guard, and the thread that reloads the engine's snapshot when the files change.

waitress because it is pure Python (no compiler, no C extension: it installs wherever the rest
does, Linux or not), runs a fixed pool of worker threads in one process (so VGG16, the models and
the FAISS indexes are loaded once and shared, where gunicorn's worker processes would each load
their own), and buffers request bodies before a worker sees them (a slow client cannot pin a
worker thread).  The work per request is CPU-bound and serialised by the engine, so more
processes would buy nothing on these machines but more memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import json
import socket
import sys
import threading
import time
from typing import Callable, Iterable

from flask import Flask

from coversearch.errors import CoverSearchError, StoreError
from coversearch.store import StoreBusyError
from coversearch.web.guard import allow_host_names
from coversearch.web.snapshot import files_signature

DEFAULT_THREADS = 8
WATCH_SECONDS = 1.0  # how often the files are checked for changes


def return_freed_memory_to_the_os(threshold: int = 4 * 1024 * 1024) -> bool:
    """Make glibc give large freed blocks back to the OS at once (True if it could be set).

    By default glibc raises its mmap threshold after each large free (up to 32 MB), after which
    blocks of decoded images come from per-thread arenas and stay there when freed: with 8
    worker threads the server kept about 600 MB after eight 10 Mpx uploads decoded one at a time,
    against about 210 MB with a fixed threshold (benchmarks/bench_web.py --parts hostile).
    """
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD = -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_host(host: str, allow_remote: bool, warn: Callable[[str], None]) -> None:
    """Refuse a name that does not resolve, and a non-loopback address unless allowed; warn when it is."""
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise CoverSearchError(f"--host {host!r} is neither an address nor a name this machine can resolve ({reason})") from None
    if is_loopback(host):
        return
    if not allow_remote:
        raise CoverSearchError(
            f"--host {host} would let other machines reach the server (it has no authentication); "
            "pass --allow-remote to do it anyway"
        )
    warn(f"warning: listening on {host}: any machine that can reach it can upload images and trigger reloads")


def _json_error_channel():
    """waitress's connection class with its own error answers (a body over its limit, a malformed
    request) in the app's ``{"error", "status"}`` JSON instead of plain text."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    from coversearch.web.app import TOO_LARGE_MESSAGE

    class JsonErrorTask(ErrorTask):
        def execute(self):
            error = self.request.error
            message = TOO_LARGE_MESSAGE if error.code == 413 else f"{error.reason.lower()}: {error.body}"
            body = json.dumps({"error": message, "status": error.code}).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel


class WebServer:
    """One listening server over ``app``: waitress with ``threads`` workers, or Werkzeug with ``dev``."""

    def __init__(self, app: Flask, host: str, port: int, *, threads: int = DEFAULT_THREADS, dev: bool = False,
                 host_names: Iterable[str] = ()):
        """``host_names``: names besides ``host`` and localhost that clients reach the server by (the Host header is checked)."""
        self.dev = dev
        allow_host_names(app, [host, *host_names])
        try:
            if dev:
                from werkzeug.serving import make_server

                self._server = make_server(host, port, app, threaded=True)
                self.port = self._server.server_port
            else:
                from waitress import create_server

                # A request body is buffered whole (up to the app's limit, then it is refused) before a worker takes it.
                self._server = create_server(app, host=host, port=port, threads=threads, ident="coversearch",
                                             max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 1024 * 1024)
                self._server.channel_class = _json_error_channel()  # waitress's own refusals as JSON too
                self.port = self._server.effective_port
        except OSError as exc:
            raise CoverSearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.host = host
        self._stopping = False

    def serve_forever(self) -> None:
        if self.dev:
            self._server.serve_forever()
            return
        try:
            self._server.run()
        except OSError:
            if not self._stopping:
                raise
            # stop() from another thread closed the sockets under waitress's select(): that is the way out.

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="coversearch-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopping = True
        if self.dev:
            self._server.shutdown()
            self._server.server_close()
        else:
            try:
                self._server.close()
            except OSError:
                pass  # already closed (waitress closes itself on Ctrl-C)
            self._server.task_dispatcher.shutdown()


class Reloader:
    """Reloads the engine when its files change (``watch``) and every ``interval`` seconds (0: never)."""

    def __init__(self, engine, *, watch: bool = True, interval: float = 0.0, log: Callable[[str], None] | None = None):
        self.engine = engine
        self.watch = watch
        self.interval = interval
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_logged = False
        self._failed_signature: tuple | None = None  # files that failed to load: wait for them to change again

    def start(self) -> "Reloader":
        if self.watch or self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="coversearch-reloader", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(WATCH_SECONDS):
            due = self.interval > 0 and time.monotonic() - last >= self.interval
            changed = self.watch and self.engine.changed_on_disk() and self._failed_signature != self._signature()
            if not due and not changed:
                continue
            self.reload_once("interval" if due else "files changed")
            last = time.monotonic()

    def _signature(self) -> tuple:
        return files_signature(self.engine.store_path, self.engine.model_dir, self.engine.index_dir)

    def reload_once(self, why: str) -> bool:
        """One attempt without waiting for the lock: a writer still at work means trying again later."""
        try:
            snap = self.engine.reload(lock_timeout=0)
        except StoreBusyError:
            if not self._busy_logged:
                self.log(f"reload ({why}) postponed: the store is being written; serving the snapshot of {self.engine.snapshot.loaded_at}")
                self._busy_logged = True
            return False
        except (CoverSearchError, StoreError) as exc:
            self._failed_signature = self._signature()
            self.log(f"reload ({why}) failed: {exc}; serving the snapshot of {self.engine.snapshot.loaded_at}")
            return False
        self._busy_logged = False
        self._failed_signature = None
        self.log(f"reloaded ({why}): {snap.albums} albums, {len(snap.models)} models, in {snap.load_seconds:.1f} s")
        return True
