"""``GET /api/text?q=WORDS``: covers whose printed text matches, as ``coversearch search`` ranks them."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, jsonify, request

from coversearch.errors import CoverSearchError
from coversearch.query.text import DEFAULT_MIN_SCORE, MAX_QUERY_CHARS, search_text
from coversearch.web.params import DEFAULT_K, MAX_K, BadRequest, genre_arg, int_arg


def text_search(engine, query: str | None, k: int, genre: str | None, min_score: float) -> dict[str, Any]:
    started = time.perf_counter()
    snap = engine.snapshot
    if snap.texts is None:
        raise BadRequest("the store has no text read from covers: run `coversearch ingest ROOT --features text`")
    if not query or not query.strip():
        raise BadRequest("no words: give ?q=WORDS (words printed on the cover)")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}, not {k}")
    with engine.lock:  # the snapshot's DuckDB connection is shared
        hits = search_text(snap.store, query, k=k, genre=genre, min_score=min_score, texts=snap.texts)
    for hit in hits:
        hit.pop("path", None)  # the page gets thumbnails, never server paths
        hit["thumb"] = f"/thumb/{hit['album_id']}.jpg"
    return {"query": query, "genre": genre, "k": k, "min_score": min_score, "hits": hits,
            "snapshot": snap.loaded_at, "seconds": {"total": round(time.perf_counter() - started, 4)}}


def register_text_route(app: Flask, engine) -> None:
    @app.get("/api/text")
    def api_text():
        try:
            text = request.args.get("min_score")
            try:
                min_score = DEFAULT_MIN_SCORE if text in (None, "") else float(text)
            except ValueError:
                raise BadRequest(f"min_score must be a number from 0 to 1, not {text!r}") from None
            if not 0.0 <= min_score <= 1.0:
                raise BadRequest(f"min_score must be a number from 0 to 1, not {min_score}")
            return jsonify(text_search(engine, request.args.get("q"), int_arg("k", DEFAULT_K, 1, MAX_K),
                                       genre_arg(engine.snapshot), min_score))
        except BadRequest as exc:
            return jsonify({"error": str(exc), "status": exc.status}), exc.status
        except CoverSearchError as exc:
            return jsonify({"error": str(exc), "status": 400}), 400
