"""`coversearch map`: lay the catalogue out in 2-D (cached in the store) and write a map page."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, print_json, state
from coversearch.errors import CoverSearchError
from coversearch.fsutil import check_output, write_atomic
from coversearch.store import Store


@app.command("map")
def map_command(
    ctx: typer.Context,
    feature: str = typer.Option("vgg16", "--feature", "-f", help="Feature space to lay out (vgg16, hsv, ...)."),
    out: Path = typer.Option(Path("map.html"), "--out", "-o", help="Map page to write (thumbnails go to a folder beside it)."),
    recompute: bool = typer.Option(False, "--recompute", help="Lay out again even when the cached layout is current."),
    thumbs: bool = typer.Option(True, "--thumbs/--no-thumbs", help="Write the thumbnails the page shows when zoomed in."),
    neighbours: int = typer.Option(8, "--neighbours", min=0, max=50, help="Nearest covers a click shows (0: none)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Lay every album out in 2-D by its FEATURE vectors (PCA; cached in the store until an ingest or
    remove changes the vectors) and write a pan-and-zoom map page."""
    from coversearch.layout.map import catalogue_map
    from coversearch.layout.neighbours import nearest_albums
    from coversearch.imaging.thumbs import album_thumbnail
    from coversearch.web.map_view import map_data, standalone_html

    check_output(out, "--out")
    thumb_dir = out.parent / f"{out.stem}_thumbs"
    if thumbs and (thumb_dir.is_symlink() or (thumb_dir.exists() and not thumb_dir.is_dir())):
        raise CoverSearchError(f"cannot write the thumbnails to {thumb_dir}: it is there and not a folder")
    # Writable: the layout is cached in the store (a writer waits for no one unless --lock-timeout says so).
    with Store.open(state(ctx).db, create=False) as store:
        layout = catalogue_map(store, feature, recompute=recompute)
        genres_of = store.first_genres(layout.album_ids)
        near = nearest_albums(store, feature, neighbours) if neighbours else None
        written = 0
        if thumbs:
            thumb_dir.mkdir(exist_ok=True)
            albums = store.albums(layout.album_ids.tolist())
            for album_id in layout.album_ids.tolist():
                target = thumb_dir / f"{album_id}.jpg"
                if not target.exists():
                    write_atomic(target, album_thumbnail(store, albums[album_id]))
                    written += 1
    data = map_data(layout, genres_of, f"{thumb_dir.name}/{{id}}.jpg", near)
    text = standalone_html(data, f"{Path(state(ctx).db).name}, {layout.feature}")
    write_atomic(out, text, option="--out")
    summary = layout.summary() | {"out": str(out), "bytes": len(text.encode("utf-8")), "thumbs_dir": str(thumb_dir) if thumbs else None,
                                  "thumbs_written": written}
    if json_out:
        print_json(summary)
        return
    for note in layout.notes:
        typer.echo(f"note: {note}", err=True)
    how = {"hit": "cached layout", "computed": "new layout", "recomputed": "layout recomputed"}[layout.cache]
    typer.echo(f"wrote {out} ({summary['bytes'] / 1e6:.1f} MB, {len(layout.album_ids):,} albums, {how}, "
               f"{layout.method} in {layout.seconds:.2f} s; {written} thumbnails written to {thumb_dir if thumbs else '-'})")
