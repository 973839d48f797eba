"""``GET /api/map?feature=NAME``: the catalogue map's data for the page (``web/map_view.py``).

The layout comes from the snapshot: the store's cached t-SNE layout when it is current; when
albums were added or removed since, that layout with the new albums placed into it (seconds);
with no cached layout, one computed now, t-SNE up to ``PAGE_FIT_LIMIT`` albums and PCA above
(a t-SNE layout of 100k albums takes minutes: `coversearch map` makes and caches it).  What is
computed here is kept with the snapshot, never written (the server holds no write lock)."""

from __future__ import annotations

import json
import threading

from flask import Flask, Response, jsonify, request

from coversearch.errors import CoverSearchError
from coversearch.layout.map import catalogue_map, duplicate_groups
from coversearch.web.map_view import map_data

PAGE_FIT_LIMIT = 20_000  # albums the page lays out with t-SNE itself when nothing is cached
PAGE_DUPLICATES_LIMIT = 20_000  # albums up to which the page finds near-duplicate groups for colouring


def register_map_route(app: Flask, engine) -> None:
    cache: dict[tuple[int, str, str], bytes] = {}
    lock = threading.Lock()

    @app.get("/api/map")
    def api_map():
        snap = engine.snapshot
        feature = request.args.get("feature") or snap.default_feature
        if feature not in snap.searchers:
            return jsonify({"error": f"unknown feature {feature!r}; choose from {', '.join(snap.searchers)}", "status": 400}), 400
        key = (id(snap), snap.loaded_at, feature)
        with lock:
            body = cache.get(key)
            if body is None:
                try:
                    with engine.lock:  # the snapshot's DuckDB connection is shared
                        layout = catalogue_map(snap.store, feature, save=False, fit_limit=PAGE_FIT_LIMIT)
                        genres_of = snap.store.first_genres(layout.album_ids)
                        groups = duplicate_groups(snap.store) if len(layout.album_ids) <= PAGE_DUPLICATES_LIMIT else None
                except CoverSearchError as exc:
                    return jsonify({"error": str(exc), "status": 400}), 400
                notes = [n for n in layout.notes if "read-only" not in n]
                data = map_data(layout, genres_of, "/thumb/{id}.jpg", duplicate_groups=groups) | {"cache": layout.cache, "notes": notes}
                body = json.dumps(data, separators=(",", ":")).encode()
                for old in [k for k in cache if k[0] != id(snap)]:
                    del cache[old]  # an older snapshot's maps
                cache[key] = body
        return Response(body, mimetype="application/json")
