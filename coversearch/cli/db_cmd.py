"""`coversearch db`: schema maintenance (opening a store upgrades it too)."""

from __future__ import annotations

import typer

from coversearch.cli.app import app, make_app, print_json, state
from coversearch.store import Store
from coversearch.store.migrate import head_revision

db_app = make_app("Store schema: show or upgrade its revision.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Create the store if needed and apply every pending migration."""
    with Store.open(state(ctx).db) as store:
        typer.echo(f"{store.path}: schema at revision {store.schema_revision()} (latest {head_revision()})")


@db_app.command("revision")
def revision_command(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Show the store's schema revision."""
    with Store.open(state(ctx).db, read_only=True) as store:
        rev = store.schema_revision()
    if json_out:
        print_json({"store": str(state(ctx).db), "revision": rev, "latest": head_revision()})
    else:
        typer.echo(f"{rev} (latest {head_revision()})")
