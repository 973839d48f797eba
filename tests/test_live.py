"""`coversearch serve` while the store changes: the real app on waitress on 127.0.0.1 over a real
(hsv) store, with `ingest` running in another process, `remove` and `label` in this one, reloads by
API and by watching the files; readers waiting for a writer; JSON errors; the pixel limit; the
remote-bind guard; the default model and broken models, on the page in a real browser."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image
from typer.testing import CliRunner

from coversearch.classify.recipes import DEFAULT_RECIPE, Recipe
from coversearch.classify.train import train_model
from coversearch.cli.main import app as cli_app
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store, StoreBusyError
from coversearch.web.server import Reloader
from conftest import REPO, link_covers, run_cli, serving
from test_web import wait_for


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the store for writing and keeps it for ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); time.sleep({seconds})"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


@pytest.fixture(scope="module")
def live_base(tmp_path_factory, covers5_dir):
    """An hsv store of 5 covers per genre and two models of the default recipe (the newer one broken later)."""
    base = tmp_path_factory.mktemp("live")
    db, models = base / "store.duckdb", base / "models"
    with Store.open(db) as store:
        ingest(store, read_source(link_covers(covers5_dir, base / "covers", per_genre=5, offset=800)), [get_extractor("hsv")])
        quick = Recipe(DEFAULT_RECIPE, "xgboost", ("hsv",), {"n_estimators": 3})
        train_model(store, models, quick, name="older-default")
        time.sleep(1.1)  # cards record the second they were trained in
        train_model(store, models, quick, name="newer-default")
        train_model(store, models, Recipe("xgb-hsv", "xgboost", ("hsv",), {"n_estimators": 3}), name="xgb-hsv")
    return base


@pytest.fixture
def live(live_base, tmp_path):
    """A private copy, served on 127.0.0.1 by waitress; yields (url, engine, db, models)."""
    db, models = tmp_path / "store.duckdb", tmp_path / "models"
    shutil.copy(live_base / "store.duckdb", db)
    shutil.copytree(live_base / "models", models)
    with serving(db, models, tmp_path / "indexes", engine_options={"lock_timeout": 0.5}) as (url, engine):
        yield url, engine, db, models


def post(url: str, data: bytes, name: str = "cover.jpg", **form) -> requests.Response:
    return requests.post(f"{url}/api/query", files={"image": (name, data)}, data={"feature": "hsv", **form}, timeout=60)


def cli(db: Path, models: Path, *args):
    return run_cli(*args, db=db, model_dir=models, index_dir=db.parent / "indexes")


def health(url: str) -> dict:
    return requests.get(f"{url}/api/health", timeout=30).json()


def test_ingest_remove_and_label_while_serving(live, covers5_dir, tmp_path):
    url, engine, db, models = live
    first = health(url)
    assert first["status"] == "ok" and first["albums"] == 25 and first["features"] == ["hsv"]
    assert first["indexes"]["hsv"]["kind"] == "exact" and first["loaded_at"] and first["changed_on_disk"] is False
    cover = sorted((covers5_dir / "Pop").iterdir())[0].read_bytes()

    # Queries keep being answered while another process ingests (and holds the write lock).
    new_covers = link_covers(covers5_dir, tmp_path / "new", per_genre=2, offset=900)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ingesting = subprocess.Popen([sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "ingest", str(new_covers),
                                  "--features", "hsv", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    statuses = []
    while ingesting.poll() is None:
        statuses.append(post(url, cover).status_code)
    out, err = ingesting.communicate()
    assert ingesting.returncode == 0, err
    assert json.loads(out)["albums_added"] == 10
    assert statuses and set(statuses) == {200}

    # The snapshot is unchanged until a reload; POST /api/reload picks up the new covers.
    assert health(url)["albums"] == 25 and health(url)["changed_on_disk"] is True
    reloaded = requests.post(f"{url}/api/reload", timeout=60)
    assert reloaded.status_code == 200 and reloaded.json()["albums"] == 35
    newcomer = sorted((new_covers / "Rock").iterdir())[0]
    hit = post(url, newcomer.read_bytes(), k="1").json()["similar"]["results"][0]
    assert hit["distance"] == pytest.approx(0, abs=1e-6)
    new_id = hit["album_id"]

    # remove (a writer in this process: the server holds no lock) and the file watcher reloads.
    reloader = Reloader(engine, watch=True, log=lambda message: None).start()
    try:
        assert cli(db, models, "remove", "--album", new_id).exit_code == 0
        wait_for(lambda: health(url)["albums"] == 34, timeout=30, what="the watcher's reload after remove")
        answer = post(url, newcomer.read_bytes(), k="34").json()
        assert new_id not in [h["album_id"] for h in answer["similar"]["results"]]
        assert requests.get(f"{url}/thumb/{new_id}.jpg", timeout=30).status_code == 404

        target = answer["similar"]["results"][0]["album_id"]
        assert cli(db, models, "label", "--album", target, "--add", "Jazz").exit_code == 0
        wait_for(lambda: "Jazz" in requests.get(f"{url}/api/info", timeout=30).json()["genres"], timeout=30,
                 what="the watcher's reload after label")
    finally:
        reloader.stop()
    jazz = post(url, newcomer.read_bytes(), genre="Jazz", k="1").json()["similar"]["results"]
    assert [h["album_id"] for h in jazz] == [target]
    # Models trained before the ingest keep answering (issue 26, point 4): only their evaluation is out of date.
    final = health(url)
    assert final["models"] == first["models"] and final["default_model"] == first["default_model"] is not None
    assert final["broken_models"] == {} and set(final["stale_models"]) == set(final["models"])
    assert all("evaluation is out of date" in why for why in final["stale_models"].values())
    assert [g["genre"] for g in post(url, cover).json()["genres"]] != []
    assert final["reloads"] >= 3


def test_a_reload_while_another_process_writes_keeps_serving(live, covers5_dir):
    url, engine, db, _ = live
    before = health(url)["loaded_at"]
    holder = hold_write_lock(db, 5)
    try:
        busy = requests.post(f"{url}/api/reload", timeout=60)
        assert busy.status_code == 503
        assert busy.json()["status"] == 503 and "in use" in busy.json()["error"] and before in busy.json()["error"]
        assert post(url, sorted((covers5_dir / "Rock").iterdir())[0].read_bytes()).status_code == 200
        assert health(url)["last_reload_error"]
    finally:
        holder.kill()
        holder.wait()
    assert requests.post(f"{url}/api/reload", timeout=60).status_code == 200
    assert health(url)["last_reload_error"] is None


def test_readers_wait_for_a_writer_then_give_up_clearly(live_base, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(live_base / "store.duckdb", db)
    holder = hold_write_lock(db, 2)
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match=r"in use by another process .*\(waited 0.3 s, --lock-timeout\)"):
            Store.open(db, read_only=True, lock_timeout=0.3)
        assert time.monotonic() - started >= 0.3
        with Store.open(db, read_only=True, lock_timeout=30) as store:  # waits for the holder to finish
            assert store.stats()["albums"] == 25
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()


def tiny_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def test_every_api_error_is_json(live, monkeypatch):
    url, engine, _, _ = live
    hostile = tiny_png(6000, 6000)
    assert len(hostile) < 100_000
    cases = [
        (post(url, hostile, "bomb.png"), 413, "bomb.png is 6000x6000 pixels; the limit is 10,000,000 pixels"),
        (post(url, b"GIF89a junk", "junk.gif"), 400, "junk.gif is not a usable image"),
        (requests.get(f"{url}/api/nothing", timeout=30), 404, "no such page: /api/nothing"),
        (requests.get(f"{url}/api/reload", timeout=30), 405, "GET is not allowed on /api/reload"),
        (requests.post(f"{url}/api/query", data=b"--x\r\nbroken", timeout=30,
                       headers={"Content-Type": "multipart/form-data; boundary=x"}), 400, "no image"),
        (post(url, tiny_png(64, 64), k="99"), 400, "k must be a whole number from 1 to 50"),
    ]
    monkeypatch.setattr(engine, "query", lambda *a, **k: 1 / 0)  # any bug behind the API: JSON, not an HTML page
    cases.append((post(url, tiny_png(64, 64)), 500, "internal error (ZeroDivisionError)"))
    for response, status, fragment in cases:
        assert response.status_code == status, (fragment, response.text)
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert set(body) == {"error", "status"} and body["status"] == status and fragment in body["error"], body


def test_default_model_is_the_newest_default_recipe_and_broken_ones_are_never_chosen(live_base, tmp_path, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    db, models = tmp_path / "store.duckdb", tmp_path / "models"
    shutil.copy(live_base / "store.duckdb", db)
    shutil.copytree(live_base / "models", models)
    for path in (models / "newer-default" / "estimator").iterdir():
        path.write_bytes(path.read_bytes()[:10])  # damaged on disk
    with serving(db, models, tmp_path / "indexes", threads=2) as (url, _):
        info = requests.get(f"{url}/api/info", timeout=30).json()
        assert info["default_model"] == "older-default" and info["models"] == ["older-default", "xgb-hsv"]
        assert list(info["broken_models"]) == ["newer-default"] and "is truncated" in info["broken_models"]["newer-default"]
        assert any("'newer-default' is broken" in note for note in info["notes"])
        refused = post(url, tiny_png(64, 64), model="newer-default")
        assert refused.status_code == 400 and "is truncated" in refused.json()["error"]
        assert post(url, tiny_png(64, 64)).json()["model"] == "older-default"

        browser.get(url + "/")
        options = {o.get_attribute("value"): o for o in browser.find_elements(By.CSS_SELECTOR, "#model option")}
        assert options["older-default"].is_selected() and options["older-default"].text == "older-default (default)"
        assert options["newer-default"].text == "newer-default (broken)" and not options["newer-default"].is_enabled()
        assert "model newer-default is broken" in browser.find_element(By.ID, "broken").text


def test_serve_refuses_a_remote_address_unless_allowed(tmp_path):
    runner = CliRunner()
    base = ["--db", str(tmp_path / "none.duckdb"), "--model-dir", str(tmp_path), "serve"]
    refused = runner.invoke(cli_app, [*base, "--host", "0.0.0.0"])
    assert refused.exit_code != 0
    assert refused.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0 would let other machines reach the server (it has no authentication); pass --allow-remote to do it anyway"
    ]
    allowed = runner.invoke(cli_app, [*base, "--host", "0.0.0.0", "--allow-remote"])
    lines = allowed.stderr.strip().splitlines()
    assert lines[0].startswith("warning: listening on 0.0.0.0") and "error: no store at" in lines[-1]
    for loopback in ("127.0.0.1", "localhost", "::1"):
        assert "allow-remote" not in runner.invoke(cli_app, [*base, "--host", loopback]).stderr
