"""`coversearch similar`: the covers that look most like an image (or a stored album)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from coversearch.cli.app import app, print_json, state
from coversearch.cli.index_cmd import wide_console
from coversearch.config import VGG16_WEIGHTS_ENV
from coversearch.errors import CoverSearchError
from coversearch.query.similar import DEFAULT_K, find_similar
from coversearch.store import Store


@app.command("similar")
def similar_command(
    ctx: typer.Context,
    image: Path = typer.Argument(None, help="Query image file (need not be in the store)."),
    k: int = typer.Option(DEFAULT_K, "-k", "--top", help="How many results."),
    feature: str = typer.Option(None, "--feature", "-f", help="Feature space: vgg16 (default) or hsv."),
    index: str = typer.Option(None, "--index", help="Index name (default: the newest built for the feature, else exact search)."),
    genre: str = typer.Option(None, "--genre", "-g", help="Only albums of this genre."),
    album: int = typer.Option(None, "--album", help="Query with a stored album's vector instead of an image."),
    metric: str = typer.Option(None, "--metric", help="cosine or euclidean (must match the index)."),
    refresh: bool = typer.Option(False, "--refresh", help="Bring a stale index up to date instead of refusing."),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"VGG16 notop weights file (or env {VGG16_WEIGHTS_ENV})."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
    colours: str = typer.Option(
        None, "--colours", "--colors", help='Search by colour instead: 1-3 colours with optional shares, e.g. "#101010:0.6,#c0a000:0.4" (hsv space).'
    ),
    collapse_duplicates: bool = typer.Option(
        False, "--collapse-duplicates", help="One cover per near-duplicate group (the nearest), so k results are k different covers."
    ),
    duplicates: bool = typer.Option(
        False, "--duplicates", help="Instead: is IMAGE already stored (same bytes or a near-duplicate)? As `coversearch check`."
    ),
) -> None:
    """Find the k stored covers nearest to IMAGE (or to --album ID)."""
    if duplicates:
        from coversearch.cli.dedupe_cmd import print_check, run_check

        if image is None or album is not None:
            raise CoverSearchError("--duplicates checks a query IMAGE (not --album)")
        # --feature names the duplicate rule's feature here (default: phash and vgg16).
        result = run_check(ctx, image, feature, None, vgg16_weights)
        print_json(result.to_dict()) if json_out else print_check(result)
        return
    if colours is not None and collapse_duplicates:
        raise CoverSearchError("--collapse-duplicates applies to an IMAGE or --album query, not --colours")
    if colours is not None:
        from coversearch.query.colour import find_by_colours, parse_palette

        if image is not None or album is not None or (feature not in (None, "hsv")):
            raise CoverSearchError("--colours is a query of its own, in the hsv space: give it without IMAGE, --album or --feature")
        palette = parse_palette(colours)  # bad input is refused before the store is opened
        with Store.open(state(ctx).db, read_only=True) as store:
            result = find_by_colours(store, palette, k=k, genre=genre, index_dir=state(ctx).index_dir, index_name=index)
    else:
        result = _similar(ctx, image, album, feature, k, genre, index, metric, refresh, vgg16_weights, collapse_duplicates)
    _print_result(result, json_out)


def _similar(ctx, image, album, feature, k, genre, index, metric, refresh, vgg16_weights, collapse_duplicates=False):
    # The store is only read; --refresh rewrites index files, never the store.
    with Store.open(state(ctx).db, read_only=True) as store:
        return find_similar(
            store,
            image=image,
            album_id=album,
            feature=feature,
            k=k,
            genre=genre,
            index_dir=state(ctx).index_dir,
            index_name=index,
            metric=metric,
            refresh=refresh,
            vgg16_weights=vgg16_weights,
            collapse_duplicates=collapse_duplicates,
        )


def _print_result(result, json_out: bool) -> None:
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)  # plain echo: rich would wrap paths mid-word
    if json_out:
        print_json(result.to_dict())
        return
    source = f"index {result.index_name}" if result.index_name else "exact search"
    title = f"{result.k} nearest to {result.query} ({result.feature}, {result.metric}, {source}, {result.kind})"
    if result.genre:
        title += f", genre {result.genre}"
    table = Table(title=title)
    table.add_column("rank", justify="right")
    table.add_column("album id", justify="right")
    table.add_column("genres")
    table.add_column("distance", justify="right")
    table.add_column("path", overflow="fold")
    for hit in result.hits:
        table.add_row(str(hit.rank), str(hit.album_id), ", ".join(hit.genres), f"{hit.distance:.4f}", hit.path or "")
    wide_console().print(table)
