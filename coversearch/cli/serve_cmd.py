"""`coversearch serve`: the web page and JSON API for classifying covers and finding similar ones."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, state
from coversearch.config import VGG16_WEIGHTS_ENV


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only; others need --allow-remote)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free one)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow --host to be an address other machines can reach."),
    host_names: list[str] = typer.Option(
        None, "--host-name", help="A name clients reach the server by (repeatable). Requests whose Host header is not "
        "localhost, an IP address, --host or such a name are refused (DNS rebinding)."),
    threads: int = typer.Option(8, "--threads", min=1, max=256, help="Worker threads of the server (waitress)."),
    dev: bool = typer.Option(False, "--dev", help="Werkzeug's development server instead of waitress (not for production)."),
    reload_interval: float = typer.Option(0, "--reload-interval", min=0, help="Also reload every this many seconds (0: only on changes)."),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Reload when the store, a model or an index changes on disk."),
    max_pixels: int = typer.Option(10_000_000, "--max-pixels", min=1, help="Largest upload in pixels, checked before decoding."),
    decode_slots: int = typer.Option(2, "--decode-slots", min=1, max=64, help="Uploads decoded and embedded at once (bounds memory)."),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"VGG16 notop weights file (or env {VGG16_WEIGHTS_ENV})."),
) -> None:
    """Serve a page where you drop a cover and see its genres and the most similar stored covers.

    The store is copied into memory at start and on every reload (POST /api/reload, --reload-interval,
    or a change on disk), so `ingest`, `remove` and `label` can run while it serves.
    """
    from coversearch.web import create_app
    from coversearch.web.guard import machine_names
    from coversearch.web.server import Reloader, WebServer, check_host, return_freed_memory_to_the_os

    echo = lambda message: typer.echo(message, err=True)  # noqa: E731
    check_host(host, allow_remote, echo)
    return_freed_memory_to_the_os()  # before anything large is allocated
    st = state(ctx)
    echo(f"loading {st.db}, models from {st.model_dir} ...")
    web = create_app(st.db, st.model_dir, st.index_dir, vgg16_weights, max_pixels=max_pixels, decode_slots=decode_slots)
    engine = web.extensions["coversearch"]
    for note in engine.notes:
        echo(f"note: {note}")
    for name, problem in engine.snapshot.broken_models.items():
        echo(f"note: model {name!r} skipped: {problem}")
    names = [*(host_names or []), *(machine_names() if allow_remote else [])]
    server = WebServer(web, host, port, threads=threads, dev=dev, host_names=names)
    reloader = Reloader(engine, watch=watch, interval=reload_interval, log=echo).start()
    kind = "Werkzeug development server" if dev else f"waitress, {threads} threads"
    echo(f"serving http://{host}:{server.port}/ ({kind}; ready in {engine.startup_seconds:.1f} s; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        reloader.stop()
        server.stop()
        engine.close()
