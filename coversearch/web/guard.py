"""Who may talk to the server: the Host header, and the origin of requests that change state.

The server has no authentication, so two browser tricks must not reach it:

* **DNS rebinding**: a page on ``evil.example`` re-points its name at 127.0.0.1 and then reads the
  API as its own origin.  Its requests carry ``Host: evil.example``, so only the names the server
  is reached by are accepted: ``localhost``, the ``--host`` name, names given with ``--host-name``
  (and, with ``--allow-remote``, this machine's own names).  IP-address Hosts are always accepted:
  a page can only send one when its own origin is that address, which no other site can be.
* **Cross-site requests**: any page may make the browser POST a form to 127.0.0.1 (reloading the
  snapshot, uploading).  Browsers send ``Origin`` (or at least ``Referer``) with such requests, so a
  POST is refused unless they name this server itself; clients that send neither (curl, scripts)
  are not browsers and pass.

Refusals answer 403 with the usual ``{"error", "status"}`` JSON.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

HOST_NAMES = "COVERSEARCH_HOST_NAMES"  # app.config key: extra names the Host header may carry
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allow_host_names(app: Flask, names: Iterable[str]) -> None:
    """Accept these names (besides localhost and IP addresses) in the Host header."""
    known = set(app.config.get(HOST_NAMES, ()))
    known.update(n.strip().lower().rstrip(".") for n in names if n and n.strip())
    app.config[HOST_NAMES] = known


def machine_names() -> set[str]:
    """This machine's own names (for a server other machines may reach)."""
    names = set()
    for get in (socket.gethostname, socket.getfqdn):
        try:
            names.add(get())
        except OSError:
            pass
    return names


def _split_host(value: str) -> tuple[str, str | None] | None:
    """("name or address", "port" or None) of a Host header value, or None when it is malformed."""
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        return host, rest[1:] or None
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, None
    if not port.isdigit():
        return None
    return host, port


def host_allowed(value: str, names: set[str]) -> bool:
    parts = _split_host(value)
    if parts is None or not parts[0]:
        return False
    host = parts[0].lower().rstrip(".")
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        pass
    return host in ("localhost", "localhost.localdomain") or host in names


def _same_origin(url: str, host: str) -> bool:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()


def cross_origin_problem(method: str, host: str, origin: str | None, referer: str | None) -> str | None:
    """Why a state-changing request comes from another site, or None."""
    if method in SAFE_METHODS:
        return None
    if origin is not None:
        if not _same_origin(origin, host):
            return f"{method} from another site ({origin[:100]}) is refused: the server takes it only from its own page"
        return None
    if referer is not None and not _same_origin(referer, host):
        return f"{method} from another page ({referer[:100]}) is refused: the server takes it only from its own page"
    return None


def install_request_guards(app: Flask) -> None:
    app.config.setdefault(HOST_NAMES, set())

    @app.before_request
    def check_host_and_origin():
        host = request.headers.get("Host")
        if host is not None and not host_allowed(host, app.config[HOST_NAMES]):
            message = (f"this server is not {host[:100]!r}: it answers to localhost, its address and the names given "
                       "with --host-name")
            return jsonify({"error": message, "status": 403}), 403
        problem = cross_origin_problem(request.method, host or "", request.headers.get("Origin"), request.headers.get("Referer"))
        if problem:
            return jsonify({"error": problem, "status": 403}), 403
        return None
