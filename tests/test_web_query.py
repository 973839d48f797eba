"""One embedding per upload: the web query computes every vector it needs (searched feature, the
model's features, the duplicate check) in one forward pass, searches each index once, and lets
concurrent uploads share a forward pass."""

from __future__ import annotations

import threading

import pytest

from coversearch.features.vgg16 import loaded_backbones


@pytest.fixture(scope="module")
def engine_app(web_store, vgg16_weights, tmp_path_factory):  # noqa: F811
    from coversearch.web import create_app

    db, models, root = web_store
    app = create_app(db, models, tmp_path_factory.mktemp("no-indexes"), vgg16_weights)
    return app, app.extensions["coversearch"], root


def _upload(app, path, **form):
    with open(path, "rb") as fh:
        answer = app.test_client().post("/api/query", data={"image": (fh, path.name), **form})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _forwarded() -> int:
    return sum(b.images_forwarded for b in loaded_backbones() if b.built)


def test_an_hsv_upload_with_a_duplicate_check_runs_vgg16_once(engine_app, covers5_dir):
    app, engine, _ = engine_app
    assert "vgg16" in engine.snapshot.searchers  # the duplicate check's vgg16 rule applies
    upload = sorted((covers5_dir / "Rock").iterdir())[950]
    before = _forwarded()
    answer = _upload(app, upload, feature="hsv", model="xgb-layers")  # a model over vgg16-layers too
    assert _forwarded() - before == 1
    assert answer["duplicates"] is not None and answer["duplicates"]["rules"]
    assert answer["similar"]["feature"].startswith("hsv") and len(answer["genres"]) == 5


def test_a_vgg16_upload_searches_the_vgg16_index_once(engine_app, monkeypatch):
    app, engine, root = engine_app
    index = engine.snapshot.searchers["vgg16"].index
    searches = []
    real = index.search
    monkeypatch.setattr(index, "search", lambda *args, **kw: searches.append(args[1]) or real(*args, **kw))
    stored = sorted((root / "Pop").iterdir())[0]
    answer = _upload(app, stored, feature="vgg16", k="3", model="knn-vgg16")
    assert len(searches) == 1  # the similar covers and the duplicate check from one search
    assert len(answer["similar"]["results"]) == 3 and answer["similar"]["k"] == 3
    assert answer["duplicates"]["verdict"] == "exact-duplicate"
    assert answer["similar"]["results"][0]["distance"] == pytest.approx(0, abs=1e-5)


def test_concurrent_uploads_share_forward_passes_and_get_their_own_answers(engine_app, covers5_dir):
    app, engine, _ = engine_app
    uploads = [sorted((covers5_dir / g).iterdir())[960] for g in ("Country", "Electronic", "HipHop", "Pop", "Rock", "Rock")]
    alone = {p: _upload(app, p, feature="vgg16", model="xgb-layers") for p in set(uploads)}
    runs_before, served_before = engine.forward.batches, engine.forward.uploads
    answers: dict[int, dict] = {}
    start = threading.Barrier(len(uploads))

    def client(i, path):
        start.wait()
        answers[i] = _upload(app, path, feature="vgg16", model="xgb-layers")

    threads = [threading.Thread(target=client, args=(i, p)) for i, p in enumerate(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert engine.forward.uploads - served_before == len(uploads)
    assert engine.forward.batches - runs_before <= len(uploads)
    for i, path in enumerate(uploads):  # batching changes no answer
        ours, want = answers[i], alone[path]
        assert [h["album_id"] for h in ours["similar"]["results"]] == [h["album_id"] for h in want["similar"]["results"]]
        assert [g["genre"] for g in ours["genres"]] == [g["genre"] for g in want["genres"]]
        assert ours["duplicates"]["verdict"] == want["duplicates"]["verdict"]
