"""The web page and its JSON API over one warm ``Engine``.

The engine opens the store (read-only), one ``SimilarSearcher`` per feature set (the newest index
for it in the index folder, else exact search), every model in the model folder, and VGG16 once,
at start-up.  A query runs the same library code as the CLI: ``SimilarSearcher`` (as
``coversearch similar``) and ``TrainedModel.predict_proba`` on the model's feature vectors made by
the same extractors as ``classify_images`` (``coversearch classify``).  Queries are serialised
with a lock: the DuckDB connection and the Keras model are shared, and the work is CPU-bound.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, render_template_string, request
from werkzeug.exceptions import RequestEntityTooLarge

from coversearch.classify.calibration import Answer, parse_min_confidence
from coversearch.classify.model import TrainedModel, latest_default_model, list_model_names
from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.base import FeatureExtractor, extract_images
from coversearch.features.images import decode_image
from coversearch.features.registry import FEATURE_NAMES, VGG16_FEATURES, get_extractor
from coversearch.query.similar import DEFAULT_FEATURE, SimilarSearcher
from coversearch.store.thumbs import album_thumbnail
from coversearch.store import Store
from coversearch.web.page import PAGE

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_K = 50
DEFAULT_K = 10


class QueryError(CoverSearchError):
    """A query the user can fix; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


class Engine:
    """The store, searchers, models and VGG16, loaded once; ``query`` answers one uploaded image."""

    def __init__(
        self,
        store_path: str | os.PathLike,
        model_dir: str | os.PathLike,
        index_dir: str | os.PathLike | None = None,
        vgg16_weights: str | os.PathLike | None = None,
        *,
        vgg16_extractor: FeatureExtractor | None = None,
    ):
        started = time.perf_counter()
        self.store = Store.open(store_path, read_only=True)
        self.model_dir = Path(model_dir)
        self.lock = threading.Lock()
        self.notes: list[str] = []
        names = [fs.name for fs in self.store.feature_sets() if fs.name in FEATURE_NAMES]
        if not names:
            raise CoverSearchError(f"the store {store_path} has no feature vectors; run `coversearch ingest` first")
        self.genres = [g for (g,) in self.store.con.execute("SELECT DISTINCT genre FROM album_genres ORDER BY genre").fetchall()]

        # Models first: they say whether VGG16 is needed even when the store's vgg16 is not searched.
        self.models: dict[str, TrainedModel] = {}
        self.model_errors: dict[str, str] = {}
        for name in list_model_names(self.model_dir):
            try:
                model = TrainedModel.load(self.model_dir, name)
                model.check_store(self.store)
                self.models[name] = model
            except CoverSearchError as exc:
                self.model_errors[name] = str(exc)
        try:
            default = latest_default_model(self.model_dir)
            self.default_model = default if default in self.models else None
        except CoverSearchError:
            self.default_model = None
        if self.default_model is None and self.models:
            self.default_model = sorted(self.models)[0]
        if not self.models:
            self.notes.append(f"no usable model in {self.model_dir}: genres are not predicted (train one with `coversearch train`)")

        wanted = ["hsv", *names, *(f for m in self.models.values() for f in m.card.feature_names)]
        needed = dict.fromkeys(f for f in wanted if f in FEATURE_NAMES)  # others make their model unusable below
        self.extractors: dict[str, FeatureExtractor] = {}
        for feature in needed:
            if feature == "vgg16" and vgg16_extractor is not None:
                extractor = vgg16_extractor
            else:
                extractor = get_extractor(feature, vgg16_weights=vgg16_weights)
            if feature in VGG16_FEATURES:
                # Build and run the network now (the first call is slow), not on the first upload.
                extract_images(extractor, [np.zeros((32, 32, 3), dtype=np.uint8)])
            self.extractors[feature] = extractor

        self.searchers: dict[str, SimilarSearcher] = {}
        for name in names:
            try:
                searcher = SimilarSearcher.open(self.store, feature=name, index_dir=index_dir)
            except CoverSearchError as exc:  # e.g. a stale index: search exactly rather than not at all
                self.notes.append(f"{name}: {exc}; using exact search")
                searcher = SimilarSearcher.exact(self.store, name)
            searcher.use_extractor(self.extractors[name])
            self.searchers[name] = searcher
        for name, model in list(self.models.items()):
            for ref in model.card.features:
                ex = self.extractors.get(ref.name)
                if ex is None or ex.version != ref.version or ex.model_fingerprint() != ref.model_fingerprint:
                    self.model_errors[name] = f"model {name!r} needs {ref.name} v{ref.version} from {ref.model_fingerprint}"
                    del self.models[name]
                    break
        if self.default_model not in self.models:
            self.default_model = sorted(self.models)[0] if self.models else None
        self.default_feature = DEFAULT_FEATURE if DEFAULT_FEATURE in self.searchers else names[0]
        self.startup_seconds = time.perf_counter() - started

    def close(self) -> None:
        self.store.close()

    def info(self) -> dict[str, Any]:
        return {
            "store": str(self.store.path),
            "albums": self.store.con.execute("SELECT count(*) FROM albums").fetchone()[0],
            "features": {name: {"label": s.feature_set.label, "metric": s.index.metric, "kind": s.index.kind,
                                "index": s.manifest.name if s.manifest else None} for name, s in self.searchers.items()},
            "default_feature": self.default_feature,
            "models": sorted(self.models),
            "default_model": self.default_model,
            "unusable_models": self.model_errors,
            "genres": self.genres,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "max_k": MAX_K,
            "notes": self.notes,
            "startup_seconds": round(self.startup_seconds, 2),
        }

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
    ) -> dict[str, Any]:
        """``min_confidence`` None: the model's own threshold for "unknown"."""
        started = time.perf_counter()
        feature = feature or self.default_feature
        if feature not in self.searchers:
            raise QueryError(f"unknown feature {feature!r}; choose from {', '.join(self.searchers)}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
        if genre and genre not in self.genres:
            raise QueryError(f"unknown genre {genre!r}; choose from {', '.join(self.genres)}")
        model_name = model or self.default_model
        if model_name is not None and model_name not in self.models:
            reason = self.model_errors.get(model_name) or f"no model named {model_name!r} (models: {', '.join(sorted(self.models)) or 'none'})"
            raise QueryError(reason)
        if len(data) > MAX_UPLOAD_BYTES:
            raise QueryError(f"the image is {len(data):,} bytes; the limit is {_mib(MAX_UPLOAD_BYTES)}", 413)
        try:
            decoded = decode_image(data)
        except ImageError as exc:
            raise QueryError(f"{filename} is not a usable image ({exc.reason}: {exc.detail})") from None

        suffix = Path(filename).suffix if Path(filename).suffix.lower() in {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"} else ".img"
        fd, tmp = tempfile.mkstemp(prefix="coversearch-query-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            with self.lock:
                searcher = self.searchers[feature]
                vectors: dict[str, np.ndarray] = {}
                try:
                    # = SimilarSearcher.search_image, keeping the query vector for the classifier too.
                    vectors[feature] = searcher.vector_for_image(tmp)
                    result = searcher.search_vector(vectors[feature], k, genre or None, label=filename)
                except CoverSearchError as exc:
                    raise QueryError(str(exc)) from None
                search_seconds = time.perf_counter() - started
                answer = self._classify(model_name, decoded.rgb, vectors, min_confidence) if model_name else None
        finally:
            os.unlink(tmp)
        similar = result.to_dict()
        similar["query"] = filename
        for hit in similar["results"]:
            hit["thumb"] = f"/thumb/{hit['album_id']}.jpg"
            hit.pop("path", None)  # the server's file layout is not the page's business
        return {
            "query": {"filename": filename, "width": decoded.width, "height": decoded.height, "format": decoded.format},
            "model": model_name,
            "answer": answer.genre if answer else None,  # the top genre, or "unknown" below min_confidence
            "confidence": round(answer.confidence, 6) if answer else None,
            "min_confidence": (self.models[model_name].card.min_confidence if min_confidence is None else min_confidence)
            if model_name else None,
            "calibration": (self.models[model_name].card.calibration or {}).get("method", "none") if model_name else None,
            "genres": [{"genre": g, "probability": round(p, 6)} for g, p in (answer.ranked if answer else [])],
            "similar": similar,
            "seconds": {"search": round(search_seconds, 4), "total": round(time.perf_counter() - started, 4)},
        }

    def _classify(self, name: str, rgb: np.ndarray, vectors: dict[str, np.ndarray], min_confidence: float | None) -> Answer:
        """What ``classify_images`` computes for one image, with the warm extractors."""
        model = self.models[name]
        for ref in model.card.features:  # reuse the vector the search already computed
            if ref.name not in vectors:
                vectors[ref.name] = extract_images(self.extractors[ref.name], [rgb])[0]
        return model.answer(model.features_matrix(vectors), min_confidence)[0]

    def thumbnail(self, album_id: int) -> bytes | None:
        with self.lock:
            album = self.store.albums([album_id]).get(album_id)
            return album_thumbnail(self.store, album) if album else None


def create_app(
    store_path: str | os.PathLike,
    model_dir: str | os.PathLike,
    index_dir: str | os.PathLike | None = None,
    vgg16_weights: str | os.PathLike | None = None,
    *,
    vgg16_extractor: FeatureExtractor | None = None,
) -> Flask:
    """The Flask app over a warm engine (everything is loaded here, before the first request)."""
    engine = Engine(store_path, model_dir, index_dir, vgg16_weights, vgg16_extractor=vgg16_extractor)
    app = Flask("coversearch.web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 64 * 1024  # the file plus the small form fields
    app.extensions["coversearch"] = engine

    def error(message: str, status: int):
        return jsonify({"error": message, "status": status}), status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return error(f"the upload is larger than the {_mib(MAX_UPLOAD_BYTES)} limit for an image", 413)

    @app.errorhandler(404)
    def not_found(_exc):
        return error(f"no such page: {request.path}", 404)

    @app.errorhandler(405)
    def bad_method(_exc):
        return error(f"{request.method} is not allowed on {request.path}", 405)

    @app.get("/")
    def index():
        return render_template_string(PAGE, info=engine.info())

    @app.get("/api/info")
    def api_info():
        return jsonify(engine.info())

    @app.post("/api/query")
    def api_query():
        upload = request.files.get("image")
        if upload is None or not upload.filename:
            return error("no image: send the file in the form field 'image'", 400)
        data = upload.read(MAX_UPLOAD_BYTES + 1)
        k_text = request.form.get("k") or str(DEFAULT_K)
        try:
            k = int(k_text)
        except ValueError:
            return error(f"k must be a whole number from 1 to {MAX_K}, not {k_text!r}", 400)
        try:
            min_confidence = parse_min_confidence(request.form.get("min_confidence"), "min_confidence")
            answer = engine.query(
                data,
                upload.filename,
                feature=request.form.get("feature") or None,
                k=k,
                genre=request.form.get("genre") or None,
                model=request.form.get("model") or None,
                min_confidence=min_confidence,
            )
        except QueryError as exc:
            return error(str(exc), exc.status)
        except CoverSearchError as exc:
            return error(str(exc), 400)
        return jsonify(answer)

    @app.get("/thumb/<int:album_id>.jpg")
    def thumb(album_id: int):
        data = engine.thumbnail(album_id)
        if data is None:
            return error(f"no album with id {album_id}", 404)
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})

    return app
