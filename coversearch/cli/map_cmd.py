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
    method: str = typer.Option("tsne", "--method", help="tsne: neighbourhoods kept (the default); pca: the two directions of largest variance."),
    rebuild: bool = typer.Option(False, "--rebuild", "--recompute", help="Lay everything out anew, even when the cached layout is current or could be updated."),
    seed: int = typer.Option(0, "--seed", help="Seed of the layout: the same store and seed give the same map."),
    thumbs: bool = typer.Option(True, "--thumbs/--no-thumbs", help="Write the thumbnails the page shows when zoomed in."),
    neighbours: int = typer.Option(8, "--neighbours", min=0, max=50, help="Nearest covers a click shows (0: none)."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates", help="Find near-duplicate groups (phash / vgg16), to colour the map by them."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Lay every album out in 2-D by its FEATURE vectors and write a pan-and-zoom map page.

    The layout (t-SNE by default) is cached in the store.  After an ingest or remove, the next
    `map` places the new albums into the cached layout and drops removed ones, moving no other
    album; it lays everything out anew only with --rebuild or once more than a quarter of the map
    was placed since the last full layout."""
    from coversearch.layout.map import catalogue_map, check_method, duplicate_groups
    from coversearch.layout.neighbours import nearest_albums
    from coversearch.imaging.thumbs import album_thumbnail
    from coversearch.web.map_view import map_data, standalone_html

    check_method(method)
    check_output(out, "--out")
    thumb_dir = out.parent / f"{out.stem}_thumbs"
    if thumbs and (thumb_dir.is_symlink() or (thumb_dir.exists() and not thumb_dir.is_dir())):
        raise CoverSearchError(f"cannot write the thumbnails to {thumb_dir}: it is there and not a folder")
    # Writable: the layout is cached in the store (a writer waits for no one unless --lock-timeout says so).
    with Store.open(state(ctx).db, create=False) as store:
        layout = catalogue_map(store, feature, method=method, rebuild=rebuild, seed=seed)
        genres_of = store.first_genres(layout.album_ids)
        near = nearest_albums(store, feature, neighbours) if neighbours else None
        groups = duplicate_groups(store) if duplicates else None
        written = 0
        if thumbs:
            thumb_dir.mkdir(exist_ok=True)
            albums = store.albums(layout.album_ids.tolist())
            for album_id in layout.album_ids.tolist():
                target = thumb_dir / f"{album_id}.jpg"
                if not target.exists():
                    write_atomic(target, album_thumbnail(store, albums[album_id]))
                    written += 1
    data = map_data(layout, genres_of, f"{thumb_dir.name}/{{id}}.jpg", near, groups)
    text = standalone_html(data, f"{Path(state(ctx).db).name}, {layout.feature}")
    write_atomic(out, text, option="--out")
    summary = layout.summary() | {"out": str(out), "bytes": len(text.encode("utf-8")), "thumbs_dir": str(thumb_dir) if thumbs else None,
                                  "thumbs_written": written, "duplicate_groups": len(groups) if groups is not None else None}
    if json_out:
        print_json(summary)
        return
    for note in layout.notes:
        typer.echo(f"note: {note}", err=True)
    how = {"hit": "cached layout", "computed": "new layout", "recomputed": "laid out anew",
           "updated": f"cached layout updated: {layout.placed_now:,} placed, {layout.removed_now:,} removed"}[layout.cache]
    typer.echo(f"wrote {out} ({summary['bytes'] / 1e6:.1f} MB, {len(layout.album_ids):,} albums, {how}, "
               f"{layout.method} in {layout.seconds:.2f} s; {written} thumbnails written to {thumb_dir if thumbs else '-'})")
