"""The page's looking tools as JSON routes over the engine's snapshot: "more like this" for a
stored album, search by colour, genre browse (and the map and explanations, registered by their
own modules).  Each answers as ``/api/query`` does: a similar-covers block with thumbnail URLs,
never server paths; every error is ``{"error", "status"}`` JSON.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
from flask import Flask, jsonify, request

from coversearch.errors import CoverSearchError
from coversearch.query.colour import parse_palette, search_by_colours
from coversearch.store import Store
from coversearch.web.explain import register_explain_route
from coversearch.web.map_routes import register_map_route
from coversearch.web.text_routes import register_text_route
from coversearch.web.params import DEFAULT_K, MAX_K, BadRequest, genre_arg, int_arg, parse_album_id, parse_whole

MAX_BROWSE = 100
DEFAULT_BROWSE = 24



def _album_card(album: dict[str, Any]) -> dict[str, Any]:
    return {"album_id": int(album["id"]), "genres": list(album.get("genres") or []), "artist": album.get("artist"),
            "title": album.get("title"), "thumb": f"/thumb/{int(album['id'])}.jpg"}


def _similar_block(result) -> dict[str, Any]:
    block = result.to_dict()
    for hit in block["results"]:
        hit["thumb"] = f"/thumb/{hit['album_id']}.jpg"
        hit.pop("path", None)
    return block


def more_like_album(engine, album_id: int, feature: str | None, k: int, genre: str | None) -> dict[str, Any]:
    """The stored album and its ``k`` nearest other albums in ``feature``'s space."""
    started = time.perf_counter()
    snap = engine.snapshot
    feature = feature or snap.default_feature
    if feature not in snap.searchers:
        raise BadRequest(f"unknown feature {feature!r}; choose from {', '.join(snap.searchers)}")
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}, not {k}")
    with engine.lock:
        album = snap.store.albums([album_id]).get(album_id)
        if album is None:
            raise BadRequest(f"no album with id {album_id}", 404)
        searcher = snap.searchers[feature]
        # One rule with or without a genre: k may not exceed the other albums there are to show.
        pool = searcher.index.ids if genre is None else snap.store.album_ids_of_known_genre(genre)
        in_index = np.isin(pool, searcher.index.ids)
        itself = bool(np.any(pool[in_index] == album_id))
        available = int(in_index.sum()) - itself
        if k > available:
            of = "" if genre is None else f" of genre {genre!r}"
            raise BadRequest(f"k={k} is more than the {available} other albums{of} with {searcher.feature_set.name} vectors")
        try:
            # The album itself (distance 0) is the query, not a result: one more when it is in the pool.
            result = searcher.search_album(album_id, k + itself, genre)
        except CoverSearchError as exc:
            raise BadRequest(str(exc)) from None
    others = [h for h in result.hits if h.album_id != album_id][:k]
    result.hits = [replace(hit, rank=rank) for rank, hit in enumerate(others, start=1)]
    result.k = k
    return {"query": _album_card(album), "similar": _similar_block(result), "snapshot": snap.loaded_at,
            "seconds": {"total": round(time.perf_counter() - started, 4)}}


def colour_search(engine, text: str | None, k: int, genre: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    snap = engine.snapshot
    palette = parse_palette(text)
    if "hsv" not in snap.searchers:
        raise BadRequest("the store has no hsv vectors: colour search needs `coversearch ingest --features hsv`")
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}, not {k}")
    with engine.lock:
        result = search_by_colours(snap.searchers["hsv"], palette, k, genre)
    return {"palette": [{"colour": c.hex, "share": round(c.share, 4)} for c in palette],
            "similar": _similar_block(result), "snapshot": snap.loaded_at,
            "seconds": {"total": round(time.perf_counter() - started, 4)}}


def browse_genre(engine, genre: str, offset: int, limit: int) -> dict[str, Any]:
    snap = engine.snapshot
    # A cursor of its own, as thumbnails use: browsing need not wait for the queries' lock.
    store = Store(snap.store.path, snap.store.con.cursor(), read_only=True)
    try:
        total, ids = store.albums_of_genre(genre, offset, limit)
        albums = store.albums(ids)
    finally:
        store.close()
    return {"genre": genre, "total": total, "offset": offset, "limit": limit,
            "albums": [_album_card(albums[i]) for i in ids if i in albums], "snapshot": snap.loaded_at}


def register_explore_routes(app: Flask, engine) -> None:
    register_explain_route(app, engine)
    register_map_route(app, engine)
    register_text_route(app, engine)

    def error(message: str, status: int):
        return jsonify({"error": message, "status": status}), status

    def answer(fn):
        try:
            return jsonify(fn())
        except BadRequest as exc:
            return error(str(exc), exc.status)
        except CoverSearchError as exc:
            return error(str(exc), 400)

    @app.get("/api/similar")
    def api_similar():
        def run():
            album = parse_album_id(request.args.get("album"))
            return more_like_album(engine, album, request.args.get("feature") or None, int_arg("k", DEFAULT_K, 1, MAX_K),
                                   genre_arg(engine.snapshot))
        return answer(run)

    @app.get("/api/colours")
    def api_colours():
        return answer(lambda: colour_search(engine, request.args.get("colours"), int_arg("k", DEFAULT_K, 1, MAX_K),
                                            genre_arg(engine.snapshot)))

    @app.get("/api/browse")
    def api_browse():
        def run():
            genre = genre_arg(engine.snapshot)
            if genre is None:
                raise BadRequest(f"no genre: give ?genre=NAME, one of {', '.join(engine.snapshot.genres)}")
            return browse_genre(engine, genre, int_arg("offset", 0, 0, 2**62), int_arg("limit", DEFAULT_BROWSE, 1, MAX_BROWSE))
        return answer(run)
