"""`coversearch stats`: what the store holds."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from coversearch.cli.app import app, print_json, state
from coversearch.store import Store


@app.command("stats")
def stats_command(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Albums, albums per genre, feature sets with counts, errors by reason."""
    with Store.open(state(ctx).db, read_only=True) as store:
        stats = store.stats()
    if json_out:
        print_json(stats)
        return
    console = Console()
    console.print(f"store [bold]{stats['store']}[/] (schema {stats['schema_revision']})")
    console.print(f"{stats['albums']} albums in {stats['files']} files; {stats['albums_with_several_genres']} with several genres")
    genres = Table(title="albums per genre")
    genres.add_column("genre")
    genres.add_column("albums", justify="right")
    for genre, n in stats["albums_per_genre"].items():
        genres.add_row(genre, str(n))
    console.print(genres)
    sets = Table(title="feature sets")
    for col in ("name", "version", "kind", "dim", "embeddings", "model"):
        sets.add_column(col)
    for fs in stats["feature_sets"]:
        sets.add_row(fs["name"], str(fs["version"]), fs["kind"], str(fs["dim"]), str(fs["embeddings"]), fs["model_fingerprint"] or "-")
    console.print(sets)
    errors = Table(title=f"ingest errors ({stats['errors']})")
    errors.add_column("reason")
    errors.add_column("files", justify="right")
    for reason, n in stats["errors_by_reason"].items():
        errors.add_row(reason, str(n))
    console.print(errors)
