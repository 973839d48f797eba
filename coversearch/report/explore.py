"""Report sections for looking: "why this genre" heat maps (``classify/explain.py``) for the
most confident test covers of each genre, and the catalogue map (``layout/map.py``)."""

from __future__ import annotations

import html
import io
from pathlib import Path

from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.images import decode_image, read_bytes
from coversearch.store import Store
from coversearch.store.thumbs import candidate_paths

EXPLAIN_SIDE = 240  # the heat maps are shown (and embedded) at this width


def _decode_album(store: Store, album: dict):
    for path in candidate_paths(store, album):
        try:
            return decode_image(read_bytes(path)).rgb
        except (ImageError, OSError):
            continue
    return None


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
        rgb = _decode_album(store, albums[album_id])
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
