"""Report sections for looking: "why this genre" heat maps (``classify/explain.py``) for the
most confident test covers of each genre, and the catalogue map (``layout/map.py``)."""

from __future__ import annotations

import html
import io
from pathlib import Path

from coversearch.errors import CoverSearchError
from coversearch.plots import PALETTE, plot_png
from coversearch.store import Store
from coversearch.imaging.thumbs import decode_album

EXPLAIN_SIDE = 240  # the heat maps are shown (and embedded) at this width


def explain_section(page, store: Store, model_dir: Path, model_name: str | None, vgg16_weights, notes: list[str]) -> None:
    from PIL import Image

    from coversearch.classify.explain import model_embedder, most_confident_test_albums, occlusion
    from coversearch.classify.model import TrainedModel, latest_default_model

    page.add('<section id="explanations"><h2>Why this genre</h2>')
    try:
        name = model_name or latest_default_model(model_dir)
        model = TrainedModel.load(model_dir, name)
        picks = most_confident_test_albums(store, model)
        embedder = model_embedder(model, vgg16_weights)
    except CoverSearchError as exc:
        notes.append(f"no genre explanations: {exc}")
        page.add(f"<p>No explanations: {html.escape(str(exc))}</p></section>")
        return
    page.add(f"<p>For each genre, the test cover that model <b>{html.escape(name)}</b> gives that genre most confidently, "
             "with its occlusion map: each of 49 overlapping patches (a quarter of each side) was hidden under the cover's "
             "mean colour and the cover re-scored through the whole pipeline; brighter regions lowered the genre's "
             "probability most. The map shows what the features and model react to, not what makes a cover belong to a "
             'genre.</p><div class="grid explanations">')
    albums = store.albums([a for a, _ in picks.values()])
    for genre, (album_id, p) in picks.items():
        rgb = decode_album(store, albums[album_id])
        if rgb is None:
            notes.append(f"album {album_id} ({genre}) could not be read at its stored paths: no explanation")
            continue
        found = occlusion(model, embedder, rgb, genre)
        shown = Image.open(io.BytesIO(found.png(rgb)))
        shown.thumbnail((EXPLAIN_SIDE, EXPLAIN_SIDE))
        buf = io.BytesIO()
        shown.convert("RGB").save(buf, "JPEG", quality=85)
        page.add(f'<figure class="explain" data-album-id="{album_id}" data-genre="{html.escape(genre)}">'
                 f'{page.img(buf.getvalue(), "image/jpeg", f"why {genre}: album {album_id}", "explain")}'
                 f"<figcaption>{html.escape(genre)} {p:.0%}: album #{album_id}</figcaption></figure>")
    page.add("</div></section>")


def map_section(page, store: Store, feature: str, notes: list[str], thumbs: int = 48) -> None:
    """The catalogue map as one picture: every album a dot coloured by genre, and ``thumbs`` covers
    (one per occupied cell of a grid over the map) drawn where they lie."""
    import numpy as np
    from PIL import Image

    from coversearch.layout.map import catalogue_map
    from coversearch.imaging.thumbs import find_thumbnail
    from coversearch.layout.map import METHOD_LABELS

    page.add('<section id="map"><h2>Map of the catalogue</h2>')
    try:
        layout = catalogue_map(store, feature, save=False)
    except CoverSearchError as exc:
        notes.append(f"no map: {exc}")
        page.add(f"<p>No map: {html.escape(str(exc))}</p></section>")
        return
    genres_of = store.first_genres(layout.album_ids)
    genres = sorted(set(genres_of.values()))
    colour = [PALETTE[genres.index(genres_of[a]) % len(PALETTE)] if a in genres_of else "#999" for a in layout.album_ids.tolist()]
    side = max(2, int(np.ceil(np.sqrt(thumbs))))
    cells: dict[tuple[int, int], int] = {}
    for i, (x, y) in enumerate(layout.xy):
        cells.setdefault((min(int(x * side), side - 1), min(int(y * side), side - 1)), i)
    chosen = list(cells.values())[:thumbs]
    albums = store.albums([int(layout.album_ids[i]) for i in chosen])
    pictures = []
    for i in chosen:
        data = find_thumbnail(store, albums[int(layout.album_ids[i])])
        if data is not None:
            img = Image.open(io.BytesIO(data)).convert("RGB")
            img.thumbnail((48, 48))
            pictures.append((layout.xy[i], np.asarray(img)))

    def draw(ax):
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        ax.figure.set_size_inches(10, 10)
        ax.scatter(layout.xy[:, 0], layout.xy[:, 1], s=3, c=colour, linewidths=0)
        for (x, y), pixels in pictures:
            ax.add_artist(AnnotationBbox(OffsetImage(pixels, zoom=0.9), (x, y), frameon=False))
        for g in genres:
            ax.scatter([], [], s=30, c=PALETTE[genres.index(g) % len(PALETTE)], label=g)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(1.03, -0.03)  # as on the page: y grows downwards
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{len(layout.album_ids):,} albums, {label} of {layout.feature}")

    label = METHOD_LABELS.get(layout.method, layout.method)
    for note in layout.notes:
        notes.append(f"map: {note}")
    page.add(f"<p>Every album laid out in 2-D by {label} of its {html.escape(layout.feature)} vectors "
             f"({'the cached layout' if layout.cache == 'hit' else 'laid out now'}), coloured by genre, with "
             f"{len(pictures)} covers drawn where they lie. <code>coversearch map</code> writes the pan-and-zoom version.</p>")
    page.add('<div class="mapfig">' + page.img(plot_png(draw), "image/png", "map of the catalogue", "plot map") + "</div></section>")
