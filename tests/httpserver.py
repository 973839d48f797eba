"""A real HTTP server on 127.0.0.1 for tests, with scriptable misbehaviour.

Tests talk to it over real sockets (no mocked HTTP layer).  Files under ``root`` are served as
they are; ``route(path, *replies)`` scripts a path instead: the n-th request gets the n-th reply
(the last one repeats).  Every request is logged with how many body bytes went out and whether
the reply was sent completely, so tests can check retries and early cut-offs.

    with TestServer(root=tmp_path / "site") as srv:
        srv.route("/flaky.jpg", Reply(500), Reply(body=jpeg))
        srv.url("/flaky.jpg")
"""

from __future__ import annotations

import mimetypes
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line (a slow server)
    chunk_size: int = 8192
    chunk_delay: float = 0.0  # seconds between body chunks (a dripping server)
    repeat: int = 1  # body sent this many times (a large body without holding it in memory)
    length: int | None = None  # Content-Length to announce; None -> the real length
    omit_length: bool = False  # no Content-Length: the body ends when the connection closes
    hold: threading.Event | None = None  # once hold_after bytes are out, wait for this event
    hold_after: int = 0


@dataclass
class RequestRecord:
    path: str
    status: int
    sent: int = 0  # body bytes written
    completed: bool = False  # the whole body went out
    at: float = field(default_factory=time.monotonic)  # when the request arrived
    done: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        reply = owner._reply_for(path)
        record = RequestRecord(path, reply.status)
        owner._log(record)
        try:
            self._send(reply, record)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, OSError):
            self.close_connection = True  # the client went away (cut off, timed out, killed)
        finally:
            record.done.set()

    def _send(self, reply: Reply, record: RequestRecord) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        total = len(reply.body) * reply.repeat
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if reply.omit_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(total if reply.length is None else reply.length))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        for _ in range(reply.repeat):
            for start in range(0, len(reply.body), reply.chunk_size):
                if reply.hold is not None and record.sent >= reply.hold_after:
                    reply.hold.wait(30)
                chunk = reply.body[start : start + reply.chunk_size]
                self.wfile.write(chunk)
                record.sent += len(chunk)
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
        self.wfile.flush()
        if reply.length is not None and reply.length != total:
            self.close_connection = True  # announced more than we sent: hang up mid-body
        record.completed = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a slow reply must not block shutdown
    block_on_close = False
    owner: TestServer


class TestServer:
    """Context manager running the server in a background thread on an ephemeral port."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path | None = None):
        self.root = Path(root).resolve() if root is not None else None
        self._routes: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.log: list[RequestRecord] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> TestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + (path if path.startswith("/") else "/" + path)

    def route(self, path: str, *replies: Reply) -> str:
        """Script ``path``; returns its URL."""
        with self._lock:
            self._routes[path] = list(replies)
        return self.url(path)

    def requests_to(self, path: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if r.path == path]

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self.log.append(record)

    def _reply_for(self, path: str) -> Reply:
        with self._lock:
            n = self.hits[path]
            self.hits[path] += 1
            replies = self._routes.get(path)
        if replies:
            return replies[min(n, len(replies) - 1)]
        return self._static(path)

    def _static(self, path: str) -> Reply:
        if self.root is not None:
            candidate = (self.root / path.lstrip("/")).resolve()
            if candidate.is_relative_to(self.root) and candidate.is_file():
                ctype = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
                return Reply(body=candidate.read_bytes(), content_type=ctype)
        return Reply(404, b"<html><body>404 Not Found</body></html>", content_type="text/html")
