"""`coversearch remove` and `coversearch label`: take covers out of the store, fix their genres."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, print_json, state
from coversearch.errors import CoverSearchError
from coversearch.store import Store
from coversearch.genres import check_genre
from coversearch.store.curate import LabelChange, apply_removal, plan_removal, read_label_csv, relabel

# A removal taking more than this share of the store's albums needs --yes.
UNCONFIRMED_SHARE = 0.10
from coversearch.dedupe.stored import keep_current


@app.command("remove")
def remove_command(
    ctx: typer.Context,
    album: list[int] = typer.Option(None, "--album", help="Album id to remove (repeatable)."),
    # Text, not Path: Path("") would quietly become "." (the current folder).
    path: list[str] = typer.Option(None, "--path", help="Remove the album stored at this file, or every album under this folder (repeatable)."),
    genre: str = typer.Option(None, "--genre", help="Remove the albums of this genre (albums that also carry another genre only lose it)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; change nothing."),
    yes: bool = typer.Option(False, "--yes", help=f"Remove even when that is more than {UNCONFIRMED_SHARE:.0%} of the store's albums."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan (and whether it was applied) as JSON."),
) -> None:
    """Remove albums with their files, genres, vectors and split sides, in one transaction.

    A removal of more than 10% of the store's albums is refused without --yes (it says how many)."""
    with Store.open(state(ctx).db, read_only=dry_run, create=False) as store:
        plan = plan_removal(store, album_ids=album or (), paths=path or (), genre=genre)
        total = store.album_count()
        if not dry_run and not yes and len(plan.album_ids) > UNCONFIRMED_SHARE * total:
            raise CoverSearchError(
                f"this would remove {len(plan.album_ids)} of {total} albums ({len(plan.album_ids) / total:.0%}), more than "
                f"{UNCONFIRMED_SHARE:.0%} of the store: add --yes to remove them (--dry-run lists them); nothing was removed"
            )
        if not dry_run:
            apply_removal(store, plan)
            keep_current(store)  # the groups the removed albums were in split or shrink
    if json_out:
        print_json(plan.to_dict() | {"dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    vectors = ", ".join(f"{n} {label}" for label, n in plan.embeddings.items() if n) or "no"
    typer.echo(
        f"{verb} {len(plan.album_ids)} albums ({plan.files} files, {plan.genre_links} genre links, {vectors} vectors, "
        f"{plan.split_assignments} split sides)"
    )
    if plan.unlinked:
        typer.echo(f"{'would unlink' if dry_run else 'unlinked'} genre {plan.genre!r} from {len(plan.unlinked)} albums that keep another genre")
    if not dry_run and plan.album_ids:
        typer.echo("indexes built before are now stale (`coversearch index refresh`); models trained before refuse this store "
                   "until retrained", err=True)


@app.command("label")
def label_command(
    ctx: typer.Context,
    album: list[int] = typer.Option(None, "--album", help="Album id to relabel (repeatable)."),
    add: str = typer.Option(None, "--add", help="Genre to add to the albums."),
    remove: str = typer.Option(None, "--remove", help="Genre to take off the albums."),
    csv_file: Path = typer.Option(None, "--csv", help="Bulk changes: a CSV with columns album_id,action,genre (action add or remove)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would change; change nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Add or remove genres of stored albums (one transaction; vectors, indexes and splits are untouched)."""
    if csv_file is not None:
        if album or add or remove:
            raise CoverSearchError("give either --csv FILE or --album ID with --add/--remove, not both")
        changes = read_label_csv(csv_file)
    else:
        if not album or (add is None) == (remove is None):
            raise CoverSearchError("give --album ID (repeatable) and one of --add GENRE or --remove GENRE, or --csv FILE")
        action, genre = ("add", add) if add is not None else ("remove", remove)
        changes = [LabelChange(a, action, check_genre(genre)) for a in album]
    with Store.open(state(ctx).db, read_only=dry_run, create=False) as store:
        result = relabel(store, changes, dry_run=dry_run)
    if json_out:
        print_json(result.to_dict() | {"dry_run": dry_run})
        return
    verb = "would add" if dry_run else "added"
    typer.echo(f"{verb} {len(result.added)} genre links, {'would remove' if dry_run else 'removed'} {len(result.removed)}; "
               f"{len(result.unchanged)} already so")
    if result.new_genres:
        typer.echo(f"note: new genre(s) in the store: {', '.join(result.new_genres)}", err=True)
