"""`coversearch serve`: the local web page for classifying covers and finding similar ones."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, state
from coversearch.config import VGG16_WEIGHTS_ENV


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free one)."),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"VGG16 notop weights file (or env {VGG16_WEIGHTS_ENV})."),
) -> None:
    """Serve a page where you drop a cover and see its genres and the most similar stored covers."""
    from werkzeug.serving import make_server

    from coversearch.web import create_app

    st = state(ctx)
    typer.echo(f"loading {st.db}, models from {st.model_dir} ...", err=True)
    web = create_app(st.db, st.model_dir, st.index_dir, vgg16_weights)
    engine = web.extensions["coversearch"]
    for note in engine.notes:
        typer.echo(f"note: {note}", err=True)
    for name, problem in engine.model_errors.items():
        typer.echo(f"note: model {name!r} skipped: {problem}", err=True)
    try:
        server = make_server(host, port, web, threaded=True)
    except OSError as exc:
        from coversearch.errors import CoverSearchError

        raise CoverSearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    typer.echo(f"serving http://{host}:{server.server_port}/ (ready in {engine.startup_seconds:.1f} s; Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
