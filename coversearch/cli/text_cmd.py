"""`coversearch search` (covers by the words printed on them) and `coversearch check-metadata`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from coversearch.cli.app import app, print_json, state
from coversearch.cli.index_cmd import wide_console
from coversearch.query.text import DEFAULT_MIN_SCORE, CoverTexts, catalogue_from_manifest, catalogue_from_store, \
    check_metadata, search_text
from coversearch.store import Store


@app.command("search")
def search_command(
    ctx: typer.Context,
    query: str = typer.Argument(..., help='Words printed on the cover, e.g. "demon days" (OCR slips and missing spaces are forgiven).'),
    k: int = typer.Option(10, "-k", "--top", min=1, help="How many results."),
    genre: str = typer.Option(None, "--genre", "-g", help="Only albums of this genre."),
    min_score: float = typer.Option(DEFAULT_MIN_SCORE, "--min-score", min=0.0, max=1.0,
                                    help="Least similarity shown (1: printed exactly; one wrong letter in ten: 0.9)."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Find covers whose printed text matches QUERY (needs `ingest --features text`)."""
    with Store.open(state(ctx).db, read_only=True) as store:
        hits = search_text(store, query, k=k, genre=genre, min_score=min_score)
    if json_out:
        print_json({"query": query, "genre": genre, "k": k, "min_score": min_score, "hits": hits})
        return
    table = Table(title=f"covers that say {query!r}" + (f", genre {genre}" if genre else ""))
    for name, justify in (("rank", "right"), ("album id", "right"), ("score", "right"), ("matched", "left"),
                          ("genres", "left"), ("path", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for hit in hits:
        table.add_row(str(hit["rank"]), str(hit["album_id"]), f"{hit['score']:.2f}", " | ".join(hit["matched"]),
                      ", ".join(hit["genres"]), hit["path"] or "")
    wide_console().print(table)
    if not hits:
        typer.echo("no cover's text matches", err=True)


@app.command("check-metadata")
def check_metadata_command(
    ctx: typer.Context,
    manifest: Path = typer.Option(None, "--manifest", help="CSV with path and artist and/or title columns (default: the artist / title the ingest stored)."),
    show_all: bool = typer.Option(False, "--all", help="List every album (default: the mismatches)."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List covers whose printed text contradicts their artist / title (covers with no legible text: unknown)."""
    with Store.open(state(ctx).db, read_only=True) as store:
        texts = CoverTexts.from_store(store)
        if manifest is not None:
            catalogue, missing = catalogue_from_manifest(store, manifest)
        else:
            catalogue, missing = catalogue_from_store(store), []
    verdicts = check_metadata(texts, catalogue)
    counts = {v: sum(x.verdict == v for x in verdicts) for v in ("mismatch", "unknown", "match")}
    shown = verdicts if show_all else [v for v in verdicts if v.verdict == "mismatch"]
    if json_out:
        print_json({"checked": len(verdicts), **counts, "not_in_store": missing, "albums": [v.to_dict() for v in shown]})
        return
    for path in missing[:5]:
        typer.echo(f"note: {path} is not in the store", err=True)
    if len(missing) > 5:
        typer.echo(f"note: {len(missing) - 5} more manifest paths are not in the store", err=True)
    table = Table(title=f"{len(verdicts)} albums checked: {counts['mismatch']} mismatch, {counts['unknown']} unknown "
                        f"(no legible text), {counts['match']} match")
    for name in ("album id", "verdict", "score", "cover says", "artist", "title", "path"):
        table.add_column(name, overflow="fold")
    for v in shown:
        table.add_row(str(v.album_id), v.verdict, f"{v.score:.2f}", v.cover_text, v.artist or "", v.title or "", v.path)
    wide_console().print(table)
