"""``GET /api/map?feature=NAME``: the catalogue map's data for the page (``web/map_view.py``).

The layout comes from the snapshot: the store's cached one when it is current, else computed
now (PCA, about a second per 100k albums) and kept with the snapshot, never written (the server
holds no write lock; `coversearch map` caches it in the store)."""

from __future__ import annotations

import json
import threading

from flask import Flask, Response, jsonify, request

from coversearch.errors import CoverSearchError
from coversearch.layout.map import catalogue_map
from coversearch.web.map_view import map_data


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
                        layout = catalogue_map(snap.store, feature, save=False)
                        genres_of = snap.store.first_genres(layout.album_ids)
                except CoverSearchError as exc:
                    return jsonify({"error": str(exc), "status": 400}), 400
                data = map_data(layout, genres_of, "/thumb/{id}.jpg") | {"cache": layout.cache}
                body = json.dumps(data, separators=(",", ":")).encode()
                for old in [k for k in cache if k[0] != id(snap)]:
                    del cache[old]  # an older snapshot's maps
                cache[key] = body
        return Response(body, mimetype="application/json")
