"""The web page and its JSON API over one ``Engine``: warm extractors and a swappable snapshot.

The engine builds each feature extractor once (VGG16 included) and answers from a ``Snapshot``
(``snapshot.py``): an in-memory copy of the store with its searchers and models, so the server
holds no lock on the store file between reloads.  ``reload`` loads a new snapshot beside the old
one and swaps it in; queries already running finish on the one they started with.

A query decodes the upload once and embeds it once for everything the answer needs (an
``Embedder``: one VGG16 pass serves the searched feature, the model's features and the duplicate
check alike; uploads arriving together share that pass, ``SharedForward``), then runs the same
library code as the CLI, searching each feature's index once: ``SimilarSearcher.search_vector``
(as ``coversearch similar``), ``TrainedModel.predict_proba`` on the model's features (as
``coversearch classify``) and ``check_image`` on the vectors already computed (as ``coversearch check``).

Memory per upload is bounded: the body by ``MAX_UPLOAD_BYTES``; the pixels by ``max_pixels``,
checked from the image header before anything is decoded; and at most ``decode_slots`` uploads
are decoded at once (an RGBA PNG costs about 21 bytes per pixel while it is decoded), so N
concurrent hostile uploads cost at most decode_slots x 21 x max_pixels bytes of pixels, whatever
N: an upload holds its slot until its network inputs (and, for the duplicate check, its
keypoint-sized greyscale) are made, not while it waits for the network.  Search, classification
and the duplicate check run one at a time under a lock: the snapshot's DuckDB connection is
shared, and the work is CPU-bound.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, render_template_string, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from coversearch.classify.calibration import Answer, parse_min_confidence
from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.base import FeatureExtractor, extract_images
from coversearch.features.embedder import Embedder
from coversearch.features.keypoints import keypoint_grey
from coversearch.imaging.images import decode_image, image_header
from coversearch.features.registry import get_extractor
from coversearch.store import StoreBusyError
from coversearch.dedupe.rules import DEFAULT_RULE_FEATURES, default_rules
from coversearch.dedupe.check import CHECK_K, check_image
from coversearch.dedupe.evidence import draw_evidence, group_evidence
from coversearch.dedupe.stored import group_map, read_result
from coversearch.imaging.thumbs import album_thumbnail
from coversearch.web.explore import register_explore_routes
from coversearch.web.guard import install_request_guards
from coversearch.web.page import PAGE
from coversearch.web.params import DEFAULT_K, MAX_ALBUM_ID, MAX_K, BadRequest, parse_whole
from coversearch.web.snapshot import Snapshot, files_signature

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Covers are rarely over 3000 x 3000 (9 Mpx); 10 Mpx keeps one RGBA decode near 210 MB.
DEFAULT_MAX_PIXELS = 10_000_000
DEFAULT_DECODE_SLOTS = 2
DECODE_WAIT_SECONDS = 60  # an upload waiting longer than this for a decode slot gets 503


class QueryError(CoverSearchError):
    """A query the user can fix; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


TOO_LARGE_MESSAGE = f"the upload is larger than the {_mib(MAX_UPLOAD_BYTES)} limit for an image"


class SharedForward:
    """Concurrent uploads share one batched embedding: each thread prepares its own inputs, then
    whoever finds the network idle runs it once for every input waiting at that moment, while the
    others wait for their vectors."""

    def __init__(self):
        self._cond = threading.Condition()
        self._waiting: list[dict[str, Any]] = []
        self._running = False
        self.batches = 0  # forward runs, and the uploads they served (benchmarks read them)
        self.uploads = 0

    def extract(self, embedder: Embedder, prepared: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
        job: dict[str, Any] = {"embedder": embedder, "prepared": prepared, "names": names, "done": False}
        with self._cond:
            self._waiting.append(job)
            while not job["done"] and self._running:
                self._cond.wait()
            if job["done"]:
                return self._outcome(job)
            self._running = True
            # Inputs prepared by another embedder (one made before a reload added features) wait for their own run.
            batch = [j for j in self._waiting if j["embedder"] is embedder]
            self._waiting = [j for j in self._waiting if j["embedder"] is not embedder]
        try:
            found = embedder.extract([j["prepared"] for j in batch], [j["names"] for j in batch])
            outcome = [("vectors", vectors) for vectors in found]
        except BaseException as exc:  # every upload of the batch gets the error, not just this one
            outcome = [("error", exc)] * len(batch)
        with self._cond:
            for j, (kind, value) in zip(batch, outcome):
                j[kind] = value
                j["done"] = True
            self._running = False
            self.batches += 1
            self.uploads += len(batch)
            self._cond.notify_all()
        return self._outcome(job)

    @staticmethod
    def _outcome(job: dict[str, Any]) -> dict[str, np.ndarray]:
        if "error" in job:
            raise job["error"]
        return job["vectors"]


def _keypoint_pixels(rgb: np.ndarray) -> np.ndarray:
    """The upload as keypoint verification first makes it, as three equal channels: ``keypoints``
    finds the same points in it as in ``rgb``, and the full pixels can go before the upload waits
    for the network."""
    return np.repeat(keypoint_grey(rgb)[:, :, None], 3, axis=2)


class Engine:
    """Extractors built once, a snapshot to answer from, and the limits on uploads."""

    def __init__(
        self,
        store_path: str | os.PathLike,
        model_dir: str | os.PathLike,
        index_dir: str | os.PathLike | None = None,
        vgg16_weights: str | os.PathLike | None = None,
        *,
        lock_timeout: float | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_slots: int = DEFAULT_DECODE_SLOTS,
    ):
        started = time.perf_counter()
        self.store_path = Path(store_path)
        self.model_dir = Path(model_dir)
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.vgg16_weights = vgg16_weights
        self.lock_timeout = lock_timeout
        if max_pixels < 1 or decode_slots < 1:
            raise CoverSearchError("max_pixels and decode_slots must be at least 1")
        self.max_pixels = int(max_pixels)
        self.decode_slots = threading.BoundedSemaphore(decode_slots)
        self.lock = threading.Lock()  # the shared models and DuckDB connection: one query at a time
        self._reload_lock = threading.Lock()
        self._extractor_lock = threading.Lock()
        self.extractors: dict[str, FeatureExtractor] = {}
        self._embedder = Embedder([])  # over every extractor built: one input format for SharedForward
        self.forward = SharedForward()
        self.reloads = 0
        self.last_reload_error: str | None = None
        self.snapshot = Snapshot.load(self.store_path, self.model_dir, self.index_dir, self.extractors_for, lock_timeout=lock_timeout)
        self.startup_seconds = time.perf_counter() - started

    @property
    def notes(self) -> list[str]:
        return self.snapshot.notes

    def extractors_for(self, features: list[str]) -> dict[str, FeatureExtractor]:
        """The extractors for ``features``, each built (and its network run once) the first time it is asked for."""
        with self._extractor_lock:
            for feature in features:
                if feature in self.extractors:
                    continue
                extractor = get_extractor(feature, vgg16_weights=self.vgg16_weights)
                # Build and run its network now (the first call is slow), not on the first upload;
                # heads on a backbone already run cost nothing here.
                extract_images(extractor, [np.zeros((32, 32, 3), dtype=np.uint8)])
                self.extractors[feature] = extractor
                self._embedder = Embedder(self.extractors.values())
            return {f: self.extractors[f] for f in features}

    # -- reloading ---------------------------------------------------------------------------------
    def reload(self, lock_timeout: float | None = None) -> Snapshot:
        """Load a new snapshot and swap it in; on any failure the current one stays and the error is raised."""
        with self._reload_lock:
            try:
                fresh = Snapshot.load(self.store_path, self.model_dir, self.index_dir, self.extractors_for,
                                      lock_timeout=self.lock_timeout if lock_timeout is None else lock_timeout)
            except CoverSearchError as exc:
                self.last_reload_error = str(exc)
                raise
            self.snapshot = fresh  # the old one is freed when its last query finishes
            self.reloads += 1
            self.last_reload_error = None
            return fresh

    def changed_on_disk(self) -> bool:
        return files_signature(self.store_path, self.model_dir, self.index_dir) != self.snapshot.signature

    def close(self) -> None:
        self.snapshot.close()

    def info(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "store": str(snap.store.path),
            "albums": snap.albums,
            "features": {name: {"label": s.feature_set.label, "metric": s.index.metric, "kind": s.index.kind,
                                "index": s.manifest.name if s.manifest else None} for name, s in snap.searchers.items()},
            "default_feature": snap.default_feature,
            "models": sorted(snap.models),
            "default_model": snap.default_model,
            "broken_models": snap.broken_models,
            "stale_models": snap.stale_models,
            "genres": snap.genres,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "max_pixels": self.max_pixels,
            "max_k": MAX_K,
            "text_search": snap.texts is not None,
            "notes": snap.notes,
            "loaded_at": snap.loaded_at,
            "startup_seconds": round(self.startup_seconds, 2),
        }

    def health(self) -> dict[str, Any]:
        return self.snapshot.health() | {"reloads": self.reloads, "last_reload_error": self.last_reload_error,
                                         "changed_on_disk": self.changed_on_disk()}

    # -- one query ---------------------------------------------------------------------------------
    def query(
        self,
        data: bytes,
        filename: str = "upload",
        *,
        feature: str | None = None,
        k: int = DEFAULT_K,
        genre: str | None = None,
        model: str | None = None,
        min_confidence: float | None = None,
        collapse_duplicates: bool = False,
    ) -> dict[str, Any]:
        """``min_confidence`` None: the model's own threshold for "unknown"; ``collapse_duplicates``:
        one similar cover per near-duplicate group."""
        started = time.perf_counter()
        snap = self.snapshot  # the whole query answers from this one state
        feature = feature or snap.default_feature
        if feature not in snap.searchers:
            raise QueryError(f"unknown feature {feature!r}; choose from {', '.join(snap.searchers)}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
        if genre and genre not in snap.genres:
            raise QueryError(f"unknown genre {genre!r}; choose from {', '.join(snap.genres)}")
        model_name = model or snap.default_model
        if model_name is not None and model_name not in snap.models:
            reason = snap.broken_models.get(model_name) or f"no model named {model_name!r} (models: {', '.join(sorted(snap.models)) or 'none'})"
            raise QueryError(reason)
        if len(data) > MAX_UPLOAD_BYTES:
            raise QueryError(f"the image is {len(data):,} bytes; the limit is {_mib(MAX_UPLOAD_BYTES)}", 413)
        try:
            width, height, _ = image_header(data)
        except ImageError as exc:
            raise QueryError(f"{filename} is not a usable image ({exc.reason}: {exc.detail})") from None
        if width * height > self.max_pixels:
            raise QueryError(f"{filename} is {width}x{height} pixels; the limit is {self.max_pixels:,} pixels", 413)

        rule_features = [f for f in DEFAULT_RULE_FEATURES if f in snap.searchers]  # default_rules' features
        names = list(dict.fromkeys([feature, *(snap.models[model_name].card.feature_names if model_name else []),
                                    *rule_features]))
        embedder = self._embedder
        if not self.decode_slots.acquire(timeout=DECODE_WAIT_SECONDS):
            raise QueryError("the server is busy with other uploads; try again shortly", 503)
        try:  # the slot is held until the decoded pixels are no longer needed
            try:
                decoded = decode_image(data, max_pixels=self.max_pixels)
            except ImageError as exc:
                raise QueryError(f"{filename} is not a usable image ({exc.reason}: {exc.detail})") from None
            query_info = {"filename": filename, "width": decoded.width, "height": decoded.height, "format": decoded.format}
            prepared = embedder.prepare(decoded.rgb, names)
            pixels = _keypoint_pixels(decoded.rgb) if rule_features else None
            del decoded
        finally:
            self.decode_slots.release()
        vectors = self.forward.extract(embedder, prepared, names)
        with self.lock:
            # Each feature's index is searched once: the similar covers (collapsed or not) and the
            # duplicate check take their neighbours from the same search.
            searches = {f: s.for_one_request(min(CHECK_K, len(s.index)) if f in rule_features else 0)
                        for f, s in snap.searchers.items()}
            try:
                group_of = self._group_map(snap) if collapse_duplicates else None
                result = searches[feature].search_vector(vectors[feature], k, genre or None, label=filename, group_of=group_of)
            except CoverSearchError as exc:
                raise QueryError(str(exc)) from None
            search_seconds = time.perf_counter() - started
            answer = self._classify(snap, model_name, vectors, min_confidence) if model_name else None
            duplicates = self._check_duplicates(snap, data, pixels, filename, vectors, searches)
        similar = result.to_dict()
        similar["query"] = filename
        for hit in similar["results"]:
            hit["thumb"] = f"/thumb/{hit['album_id']}.jpg"
            hit.pop("path", None)  # the server's file layout is not the page's business
        return {
            "query": query_info,
            "model": model_name,
            "answer": answer.genre if answer else None,  # the top genre, or "unknown" below min_confidence
            "confidence": round(answer.confidence, 6) if answer else None,
            "min_confidence": (snap.models[model_name].card.min_confidence if min_confidence is None else min_confidence)
            if model_name else None,
            "calibration": (snap.models[model_name].card.calibration or {}).get("method", "none") if model_name else None,
            "genres": [{"genre": g, "probability": round(p, 6)} for g, p in (answer.ranked if answer else [])],
            "similar": similar,
            "snapshot": snap.loaded_at,
            "duplicates": duplicates,
            "seconds": {"search": round(search_seconds, 4), "total": round(time.perf_counter() - started, 4)},
        }

    def _group_map(self, snap: Snapshot) -> dict[int, int]:
        """The snapshot's near-duplicate groups (album -> group key), read once per snapshot."""
        if snap.group_of is None:
            snap.group_of = group_map(snap.store)
        return snap.group_of

    def duplicate_evidence(self, album_id: int, picture: bool = False) -> tuple[dict[str, Any], bytes | None] | None:
        """The near-duplicate group holding ``album_id`` with each pair's figures (and the evidence
        PNG with ``picture``), as `coversearch dedupe --evidence`; None when it is in no group."""
        snap = self.snapshot
        with self.lock:
            if snap.dedupe is None:
                snap.dedupe = read_result(snap.store)
            group = next((g for g in snap.dedupe.groups if any(m.album_id == album_id for m in g.members)), None)
            if group is None:
                return None
            group, evidence = group_evidence(snap.store, snap.dedupe, group.group)
            png = draw_evidence(snap.store, group, evidence) if picture else None
        figures = {"group": group.group, "members": [m.album_id for m in group.members], "pairs": [e.to_dict() for e, _ in evidence],
                   "picture": f"/duplicates/{album_id}/evidence.png"}
        return figures, png

    def _check_duplicates(
        self, snap: Snapshot, data: bytes, pixels: np.ndarray | None, filename: str, vectors: dict[str, np.ndarray],
        searchers: dict[str, Any],
    ) -> dict[str, Any] | None:
        """The duplicate verdict for an upload (as `coversearch check`) from its vectors and this
        request's searches, or None without phash/vgg16 vectors."""
        rules = default_rules(snap.store)
        if not rules or pixels is None:
            return None
        try:
            check = check_image(snap.store, filename, rules, data=data, rgb=pixels, label=filename,
                                searchers=searchers, vectors=vectors)
        except CoverSearchError as exc:
            raise QueryError(str(exc)) from None
        answer = check.to_dict()
        answer["summary"] = check.summary.replace(f" ({check.matches[0].path})", "") if check.matches else check.summary
        for match in answer["matches"]:
            match["thumb"] = f"/thumb/{match['album_id']}.jpg"
            match.pop("path", None)
        answer.pop("notes", None)
        return answer

    def _classify(self, snap: Snapshot, name: str, vectors: dict[str, np.ndarray], min_confidence: float | None) -> Answer:
        """What ``classify_images`` computes for one image, from the vectors already embedded."""
        model = snap.models[name]
        return model.answer(model.features_matrix(vectors), min_confidence)[0]

    def thumbnail(self, album_id: int) -> bytes | None:
        snap = self.snapshot
        # A cursor of its own: thumbnails need not wait for the queries' lock.
        store = snap.store.cursor()
        try:
            album = store.albums([album_id]).get(album_id)
            return album_thumbnail(store, album) if album else None
        finally:
            store.close()


def create_app(*engine_args: Any, **engine_options: Any) -> Flask:
    """The Flask app over a warm ``Engine(*engine_args, **engine_options)`` (everything is loaded here,
    before the first request).

    Every error answers JSON ``{"error": message, "status": code}``, with the HTTP status code.
    """
    engine = Engine(*engine_args, **engine_options)
    app = Flask("coversearch.web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 64 * 1024  # the file plus the small form fields
    app.extensions["coversearch"] = engine
    install_request_guards(app)  # Host and Origin checks before any route

    def error(message: str, status: int):
        return jsonify({"error": message, "status": status}), status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return error(TOO_LARGE_MESSAGE, 413)

    @app.errorhandler(404)
    def not_found(_exc):
        return error(f"no such page: {request.path}", 404)

    @app.errorhandler(405)
    def bad_method(_exc):
        return error(f"{request.method} is not allowed on {request.path}", 405)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error(exc.description or exc.name, exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        app.logger.exception("error answering %s %s", request.method, request.path)
        return error(f"internal error ({type(exc).__name__}); the server log has the details", 500)

    @app.get("/")
    def index():
        return render_template_string(PAGE, info=engine.info())

    @app.get("/api/info")
    def api_info():
        return jsonify(engine.info())

    @app.get("/api/health")
    def api_health():
        return jsonify(engine.health())

    @app.post("/api/reload")
    def api_reload():
        try:
            engine.reload()
        except StoreBusyError as exc:
            return error(f"{exc}; still answering from the snapshot loaded at {engine.snapshot.loaded_at}", 503)
        except CoverSearchError as exc:
            return error(f"reload failed: {exc}; still answering from the snapshot loaded at {engine.snapshot.loaded_at}", 500)
        return jsonify(engine.health())

    @app.post("/api/query")
    def api_query():
        upload = request.files.get("image")
        if upload is None or not upload.filename:
            return error("no image: send the file in the form field 'image'", 400)
        data = upload.read(MAX_UPLOAD_BYTES + 1)
        try:
            k = parse_whole("k", request.form.get("k") or str(DEFAULT_K), 1, MAX_K)
            min_confidence = parse_min_confidence(request.form.get("min_confidence"), "min_confidence", empty_is_default=True)
            answer = engine.query(
                data,
                upload.filename,
                feature=request.form.get("feature") or None,
                k=k,
                genre=request.form.get("genre") or None,
                model=request.form.get("model") or None,
                min_confidence=min_confidence,
                collapse_duplicates=(request.form.get("collapse_duplicates") or "").lower() in ("1", "true", "on", "yes"),
            )
        except (QueryError, BadRequest) as exc:
            return error(str(exc), exc.status)
        except CoverSearchError as exc:
            return error(str(exc), 400)
        # Why there are no genres (never just an empty list), and whether the model predates the store's albums.
        snap = engine.snapshot
        answer["model_problem"] = None if answer["genres"] else snap.model_problem(answer["model"])
        answer["model_note"] = snap.stale_models.get(answer["model"]) if answer["model"] else None
        return jsonify(answer)

    @app.get("/thumb/<album>.jpg")
    def thumb(album: str):
        try:  # ASCII digits: Werkzeug's int converter would also read "１" (full width) as album 1
            album_id = parse_whole("the album id", album, 1, MAX_ALBUM_ID)
        except BadRequest as exc:
            return error(str(exc), exc.status)
        data = engine.thumbnail(album_id)
        if data is None:
            return error(f"no album with id {album_id}", 404)
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/api/duplicates/<int:album_id>")
    def api_duplicates(album_id: int):
        found = engine.duplicate_evidence(album_id)
        if found is None:
            return error(f"album {album_id} is in no near-duplicate group", 404)
        return jsonify(found[0])

    @app.get("/duplicates/<int:album_id>/evidence.png")
    def duplicate_evidence(album_id: int):
        found = engine.duplicate_evidence(album_id, picture=True)
        if found is None:
            return error(f"album {album_id} is in no near-duplicate group", 404)
        return Response(found[1], mimetype="image/png")

    register_explore_routes(app, engine)  # more like this, colours, genre browse
    return app
