"""`coversearch serve`: the real Flask app on 127.0.0.1 over a small real store (hsv + vgg16, two
quick models), driven by a real headless Chromium through the page, and by HTTP through its JSON
API, whose answers must equal the library's (`find_similar`, `classify_images`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests

from coversearch.classify.model import TrainedModel
from coversearch.classify.apply import classify_images
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.query.similar import find_similar
from coversearch.store import Store
from conftest import GENRES, link_covers, serving  # noqa: F401  (browser and web_store: session fixtures in conftest.py)

def images_loaded(driver, selector: str) -> tuple[int, list[str]]:
    """(how many <img> match, the src starts of those not loaded: complete with naturalWidth > 0)."""
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll(arguments[0])];"
        "return [imgs.length, imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 60))];",
        selector,
    )


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# -- the server --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(web_store, vgg16_extractor, vgg16_weights, tmp_path_factory):
    """The real app on waitress (what `coversearch serve` runs), on 127.0.0.1: (url, engine)."""
    db, models, _ = web_store
    with serving(db, models, tmp_path_factory.mktemp("no-indexes"), vgg16_weights) as running:
        yield running


def a_cover(covers5_dir: Path, genre: str = "Rock", i: int = 0) -> Path:
    """A real cover that is not in the small store (the store holds files 300..307 of each genre)."""
    return sorted((covers5_dir / genre).iterdir())[i]


def post(url: str, path: Path, **form) -> requests.Response:
    with open(path, "rb") as fh:
        return requests.post(f"{url}/api/query", files={"image": (path.name, fh)}, data=form, timeout=60)


def upload_in_page(driver, url: str, path: Path, feature: str | None = None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(url + "/")
    if feature:
        Select(driver.find_element(By.ID, "feature")).select_by_value(feature)
    field = driver.find_element(By.ID, "file")
    driver.execute_script("arguments[0].style.display = 'block';", field)
    field.send_keys(str(path))


# -- the page in a real browser ----------------------------------------------------------------------
@pytest.mark.parametrize("feature", ["vgg16", "hsv"])
def test_page_shows_genres_and_similar_thumbnails(browser, server, covers5_dir, feature):
    from selenium.webdriver.common.by import By

    url, _ = server
    upload_in_page(browser, url, a_cover(covers5_dir, "HipHop", 3), feature)
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#similar img")) == 10 or browser.find_element(By.ID, "error").text,
             what="results")
    assert browser.find_element(By.ID, "error").text == ""
    wait_for(lambda: not images_loaded(browser, "#similar img, #preview")[1], what="thumbnails to load")
    count, broken = images_loaded(browser, "#similar img, #preview")
    assert count == 11 and broken == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#genres .genre")
    assert sorted(r.get_attribute("data-genre") for r in rows) == sorted(GENRES)
    assert all(r.text.strip().endswith("%") for r in rows)
    assert "10 similar covers by " + feature in browser.find_element(By.ID, "status").text


def test_page_shows_a_clear_error_for_a_non_image(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image at all\n")
    upload_in_page(browser, url, text)
    message = wait_for(lambda: browser.find_element(By.ID, "error").text, what="the error message")
    assert message == "error: notes.jpg is not a usable image (not-an-image: not a recognised image format)"
    assert browser.find_elements(By.CSS_SELECTOR, "#similar img") == []


def test_page_refuses_an_oversized_upload(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff" * (11 * 1024 * 1024))
    upload_in_page(browser, url, big)
    message = wait_for(lambda: browser.find_element(By.ID, "error").text, what="the error message")
    assert "larger than the 10 MB limit" in message
    assert browser.find_elements(By.CSS_SELECTOR, "#similar img") == []


def test_page_refuses_an_image_over_the_pixel_limit(browser, server, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    url, _ = server
    bomb = tmp_path / "bomb.png"
    Image.new("L", (6000, 6000)).save(bomb, optimize=True)  # a few KB that would decode to 36 Mpx
    upload_in_page(browser, url, bomb)
    message = wait_for(lambda: browser.find_element(By.ID, "error").text, what="the error message")
    assert message == "error: bomb.png is 6000x6000 pixels; the limit is 10,000,000 pixels"
    assert browser.find_elements(By.CSS_SELECTOR, "#similar img") == []


# -- the JSON API --------------------------------------------------------------------------------------
def test_api_refuses_an_oversized_upload_with_413(server, tmp_path):
    url, _ = server
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff" * (11 * 1024 * 1024))
    response = post(url, big)
    assert response.status_code == 413
    assert response.json()["error"] == "the upload is larger than the 10 MB limit for an image"


@pytest.mark.parametrize("feature,genre", [("vgg16", None), ("hsv", None), ("vgg16", "Pop"), ("hsv", "Country")])
def test_api_answers_like_find_similar(server, web_store, covers5_dir, vgg16_extractor, feature, genre):
    url, _ = server
    db, _, _ = web_store
    image = a_cover(covers5_dir, "Electronic", 5)
    form = {"feature": feature, "k": "5", **({"genre": genre} if genre else {})}
    response = post(url, image, **form)
    assert response.status_code == 200, response.text
    got = response.json()["similar"]
    with Store.open(db, read_only=True) as store:
        want = find_similar(store, image=image, feature=feature, k=5, genre=genre, extractor=vgg16_extractor if feature == "vgg16" else None)
    assert [h["album_id"] for h in got["results"]] == [h.album_id for h in want.hits]
    assert [h["distance"] for h in got["results"]] == pytest.approx([h.distance for h in want.hits], abs=1e-5)
    assert [h["genres"] for h in got["results"]] == [h.genres for h in want.hits]
    assert got["feature"] == want.feature and got["metric"] == want.metric
    if genre:
        assert all(genre in h["genres"] for h in got["results"])
    thumb = requests.get(url + got["results"][0]["thumb"], timeout=30)
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize("model", ["xgb-hsv", "knn-vgg16", "xgb-layers"])
def test_api_genres_equal_classify_images(server, web_store, covers5_dir, vgg16_weights, model):
    url, _ = server
    db, models, _ = web_store
    image = a_cover(covers5_dir, "Country", 2)
    response = post(url, image, model=model, feature="hsv")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == model
    with Store.open(db, read_only=True) as store:
        (want,) = classify_images(store, TrainedModel.load(models, model), [image], vgg16_weights=vgg16_weights)
    assert [g["genre"] for g in answer["genres"]] == [g for g, _ in want.genres]
    assert [g["probability"] for g in answer["genres"]] == pytest.approx([p for _, p in want.genres], abs=1e-5)


def test_a_stored_calibration_is_applied_identically_by_cli_api_and_page(browser, server, web_store, covers5_dir, tmp_path):
    """The temperature in the model folder, applied by hand to the estimator's raw probabilities,
    is what `classify --json`, the API and the page all show; "unknown" keeps the ranked genres."""
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from conftest import Cli
    from coversearch.features.base import extract_images
    from coversearch.imaging.images import decode_image

    url, _ = server
    db, models, _ = web_store
    image = a_cover(covers5_dir, "Pop", 4)
    model = TrainedModel.load(models, "xgb-hsv")
    temperature = json.loads((models / "xgb-hsv" / "calibration.json").read_text())["temperature"]
    raw = model.estimator.predict_proba(extract_images(get_extractor("hsv"), [decode_image(image.read_bytes()).rgb]))[0]
    by_hand = raw.astype(float) ** (1 / temperature) / np.sum(raw.astype(float) ** (1 / temperature))
    want = {g: by_hand[i] for i, g in enumerate(model.classes)}
    assert np.abs(by_hand - raw).max() > 0.01  # the calibration changes what is shown

    cli = Cli(db, tmp_path / "no-indexes", models)
    out = json.loads(cli("classify", image, "--model", "xgb-hsv", "--json").stdout)
    cli_genres = {g["genre"]: g["probability"] for g in out["results"][0]["genres"]}
    api = post(url, image, model="xgb-hsv", feature="hsv").json()
    api_genres = {g["genre"]: g["probability"] for g in api["genres"]}
    assert cli_genres == pytest.approx(want, abs=1e-4) and api_genres == pytest.approx(want, abs=1e-6)
    assert api["answer"] == out["results"][0]["answer"] and api["min_confidence"] == out["min_confidence"] == model.card.min_confidence
    assert api["calibration"] == "temperature"

    browser.get(url + "/")  # every field set before the file is picked: one request
    Select(browser.find_element(By.ID, "feature")).select_by_value("hsv")
    Select(browser.find_element(By.ID, "model")).select_by_value("xgb-hsv")
    browser.find_element(By.ID, "min_confidence").send_keys("1")
    field = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].style.display = 'block';", field)
    field.send_keys(str(image))
    wait_for(lambda: browser.find_element(By.ID, "answer").text.startswith("unknown") and "xgb-hsv" in browser.find_element(By.ID, "model-name").text,
             what="the page's answer")
    rows = browser.find_elements(By.CSS_SELECTOR, "#genres .genre")
    page = {r.get_attribute("data-genre"): float(r.find_element(By.CLASS_NAME, "p").text.rstrip("%")) / 100 for r in rows}
    assert page == pytest.approx(want, abs=6e-4)
    assert [r.get_attribute("data-genre") for r in rows] == sorted(want, key=want.get, reverse=True)
    assert "below 100.0%" in browser.find_element(By.ID, "answer").text
    with_one = post(url, image, model="xgb-hsv", feature="hsv", min_confidence="1").json()
    with_zero = post(url, image, model="xgb-hsv", feature="hsv", min_confidence="0").json()
    assert (with_one["answer"], with_zero["answer"]) == ("unknown", max(want, key=want.get))
    assert with_one["genres"] == with_zero["genres"] == api["genres"]

    # A threshold outside [0, 1] typed into the page: the API's one error line, and no answer shown.
    field = browser.find_element(By.ID, "min_confidence")
    field.clear()
    field.send_keys("1.5", Keys.TAB)  # leaving the field asks again
    message = wait_for(lambda: browser.find_element(By.ID, "error").text, what="the error message")
    assert message == "error: min_confidence must be a number from 0 to 1 (a probability), not '1.5'"
    assert not browser.find_element(By.ID, "results").is_displayed()


def test_api_errors_are_clear_json(server, covers5_dir, tmp_path):
    url, engine = server
    cover = a_cover(covers5_dir)
    text = tmp_path / "a.png"
    text.write_bytes(b"")
    cases = [
        (post(url, text), 400, "a.png is not a usable image (empty-file"),
        (requests.post(f"{url}/api/query", data={"k": "3"}, timeout=30), 400, "no image"),
        (post(url, cover, feature="colour"), 400, "unknown feature 'colour'"),
        (post(url, cover, genre="Jazz"), 400, "unknown genre 'Jazz'"),
        (post(url, cover, k="0"), 400, "k must be a whole number from 1 to 50"),
        (post(url, cover, k="ten"), 400, "k must be a whole number"),
        (post(url, cover, model="nope"), 400, "no model named 'nope'"),
        (post(url, cover, min_confidence="1.5"), 400, "min_confidence must be a number from 0 to 1 (a probability), not '1.5'"),
        (post(url, cover, min_confidence="most"), 400, "min_confidence must be a number from 0 to 1"),
        (post(url, cover, genre="Rock", k="9"), 400, "k=9 is more than the 8 albums of genre 'Rock'"),
        (requests.get(f"{url}/api/query", timeout=30), 405, "GET is not allowed"),
        (requests.get(f"{url}/thumb/999999.jpg", timeout=30), 404, "no album with id 999999"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (fragment, response.text)
        assert fragment in response.json()["error"], response.json()
    info = requests.get(f"{url}/api/info", timeout=30).json()
    assert info["models"] == ["knn-vgg16", "xgb-hsv", "xgb-layers"] and set(info["features"]) == {"hsv", "vgg16", "vgg16-layers"}
    assert info["max_upload_bytes"] == 10 * 1024 * 1024


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    import ipaddress

    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
                found.add(str(ipaddress.ip_address(raw)))
    return found


def test_serve_binds_to_localhost_by_default(tmp_path, covers5_dir):
    """`coversearch serve` with no --host listens on 127.0.0.1 only: read from the kernel's socket table."""
    import subprocess
    import sys

    db = tmp_path / "store.duckdb"
    with Store.open(db) as store:
        ingest(store, read_source(link_covers(covers5_dir, tmp_path / "covers", per_genre=2)), [get_extractor("hsv")])
    server = subprocess.Popen(
        [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "--model-dir", str(tmp_path / "models"),
         "--index-dir", str(tmp_path / "indexes"), "serve", "--port", "0", "--no-watch"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        for line in server.stderr:  # "serving http://127.0.0.1:PORT/ (...)" once it listens
            if line.startswith("serving http://"):
                port = int(line.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                break
        assert port is not None, "the server never said it was serving"
        assert _listening_addresses(port) == {"127.0.0.1"}
        assert requests.get(f"http://127.0.0.1:{port}/api/health", timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_missing_store(tmp_path):
    from typer.testing import CliRunner

    from coversearch.cli.main import app

    result = CliRunner().invoke(app, ["--db", str(tmp_path / "none.duckdb"), "--model-dir", str(tmp_path), "serve"])
    assert result.exit_code != 0 and "error: no store at" in result.stderr
