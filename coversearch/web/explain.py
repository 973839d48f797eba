"""``GET /api/explain?album=ID[&model=NAME][&genre=G]``: the occlusion heat map of a stored cover's
top genre (``classify/explain.py``), as a PNG of the cover's size.  It costs one batched pass of
the model's features over 49 masked copies, so it runs only when asked for (a button on the page)."""

from __future__ import annotations

import io

from flask import Flask, Response, jsonify, request

from coversearch.classify.explain import occlusion
from coversearch.errors import CoverSearchError
from coversearch.features.embedder import Embedder
from coversearch.store import Store
from coversearch.web.params import BadRequest, header_text, parse_album_id
from coversearch.imaging.thumbs import decode_album


def explain_album(engine, album_id: int, model_name: str | None, genre: str | None):
    """(PNG bytes, the explanation) for stored album ``album_id``."""
    snap = engine.snapshot
    name = model_name or snap.default_model
    if name is None:
        raise BadRequest("no usable model: train one with `coversearch train` to explain genres")
    if name not in snap.models:
        raise BadRequest(snap.broken_models.get(name) or f"no model named {name!r} (models: {', '.join(sorted(snap.models))})")
    store = Store(snap.store.path, snap.store.con.cursor(), read_only=True)
    try:
        album = store.albums([album_id]).get(album_id)
        if album is None:
            raise BadRequest(f"no album with id {album_id}", 404)
        rgb = decode_album(store, album)
    finally:
        store.close()
    if rgb is None:
        raise BadRequest(f"the image file of album {album_id} is no longer where it was ingested from, or was changed since", 404)
    model = snap.models[name]
    embedder = Embedder(engine.extractors_for(model.card.feature_names).values())
    try:
        with engine.lock:  # the Keras models are shared
            found = occlusion(model, embedder, rgb, genre)
    except CoverSearchError as exc:
        raise BadRequest(str(exc)) from None
    return found.png(rgb), found, name


def register_explain_route(app: Flask, engine) -> None:
    @app.get("/api/explain")
    def api_explain():
        try:
            album_id = parse_album_id(request.args.get("album"))
            png, found, name = explain_album(engine, album_id, request.args.get("model") or None, request.args.get("genre") or None)
        except BadRequest as exc:
            return jsonify({"error": str(exc), "status": exc.status}), exc.status
        # Genre and model names may be in any script: percent-encoded UTF-8 (decodeURIComponent reads them).
        return Response(png, mimetype="image/png", headers={
            "X-Genre": header_text(found.genre), "X-Probability": f"{found.probability:.4f}", "X-Model": header_text(name),
            "Cache-Control": "private, max-age=600"})
