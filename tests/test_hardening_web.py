"""Hardening round 3, the server and the pictures (issue 26: points 4, 12, 13, 14, 16, 20, 21, 22):
the real app on waitress on 127.0.0.1 over small real stores of covers5 covers, asked what a
hostile or careless client asks; and covers saved rotated with an EXIF orientation tag."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
import requests
from PIL import Image

from conftest import copy_covers, run_cli, serving
from coversearch.classify.recipes import Recipe
from coversearch.classify.split import make_split
from coversearch.classify.train import train_model
from coversearch.features.registry import get_extractor
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.imaging.thumbs import make_thumbnail, placeholder
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store

PER_GENRE = 8
# A genre outside Latin-1: HTTP headers cannot carry it as it is.
GENRE_FOLDERS = {"Rock": "Rock", "Pop": "Pop", "Country": "ロック"}


def _covers(covers5_dir: Path, dest: Path, per_genre: int = PER_GENRE, offset: int = 300) -> Path:
    """Real covers (copies, so tests may change them) under dest/<genre>/, one genre named in Japanese."""
    copy_covers(covers5_dir, dest, per_genre, genres=tuple(GENRE_FOLDERS), offset=offset)
    for source, name in GENRE_FOLDERS.items():
        if source != name:
            (dest / source).rename(dest / name)
    return dest


def _store(folder: Path, covers: Path, *, model: bool = True) -> tuple[Path, Path]:
    db, models = folder / "store.duckdb", folder / "models"
    with Store.open(db) as store:
        ingest(store, read_source(covers), [get_extractor("hsv")])
        if model:
            make_split(store, fractions=(0.6, 0.2, 0.2))
            train_model(store, models, Recipe("xgb-hsv", "xgboost", ("hsv",), {"n_estimators": 5}), name="xgb-hsv")
    return db, models


@pytest.fixture(scope="module")
def site(tmp_path_factory, covers5_dir):
    """(url, engine, db, covers): a store of 24 real covers in Rock, Pop and ロック with hsv vectors and one model."""
    base = tmp_path_factory.mktemp("hardening-web")
    covers = _covers(covers5_dir, base / "covers")
    db, models = _store(base, covers)
    with serving(db, models) as (url, engine):
        yield url, engine, db, covers


def _ids_of_genre(db: Path, genre: str) -> list[int]:
    with Store.open(db, read_only=True) as store:
        return sorted(a for a, g in store.genres_by_album().items() if genre in g)


def _json_error(response: requests.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str), body
    for fragment in fragments:
        assert fragment in body["error"], body
    return body["error"]


def _upload(url: str, name: str, data: bytes, **form) -> requests.Response:
    return requests.post(f"{url}/api/query", files={"image": (name, data)}, data=form, timeout=60)


# -- point 12: every bad parameter is a 400 with a JSON error ---------------------------------------
def test_bad_ids_and_numbers_are_400_json_errors_never_500(site):
    url, _, _, _ = site
    get = lambda path, **params: requests.get(url + path, params=params, timeout=30)  # noqa: E731
    huge = "9" * 40
    cases = [
        (get("/thumb/9223372036854775808.jpg"), "the album id must be a whole number from 1 to 9223372036854775807"),
        (get(f"/thumb/{huge}.jpg"), "the album id must be a whole number"),
        (get("/thumb/１.jpg"), "the album id must be a whole number"),  # full width: not album 1
        (get("/thumb/0.jpg"), "the album id must be a whole number"),
        (get("/api/explain", album="²"), "album must be a whole number"),
        (get("/api/explain", album=huge), "album must be a whole number from 1 to 9223372036854775807"),
        (get("/api/explain", album="9223372036854775808"), "album must be a whole number"),
        (get("/api/explain", album="-1"), "album must be a whole number"),
        (get("/api/similar", album="²"), "album must be a whole number"),
        (get("/api/similar", album="١"), "album must be a whole number"),  # an Arabic-Indic one
        (get("/api/similar", album="1", k="１０"), "k must be a whole number from 1 to 50"),  # full-width digits
        (get("/api/browse", genre="Rock", offset="²"), "offset must be a whole number"),
        (get("/api/browse", genre="Rock", limit=" 5"), "limit must be a whole number"),
        (get("/api/colours", colours="#ff0000", k="1e3"), "k must be a whole number"),
    ]
    for response, fragment in cases:
        _json_error(response, 400, fragment)
    cover = next((site[3] / "Rock").iterdir()).read_bytes()
    _json_error(_upload(url, "a.jpg", cover, k="1_0"), 400, "k must be a whole number from 1 to 50, not '1_0'")
    _json_error(_upload(url, "a.jpg", cover, k=" 3"), 400, "k must be a whole number")


# -- point 20 (web): `1_0` is not album 10, and one k rule with or without a genre ------------------
def test_album_1_0_is_refused_not_read_as_album_10(site):
    url, _, _, _ = site
    assert requests.get(f"{url}/api/similar", params={"album": "10", "k": "3"}, timeout=30).status_code == 200
    _json_error(requests.get(f"{url}/api/similar", params={"album": "1_0"}, timeout=30), 400,
                "album must be a whole number from 1 to 9223372036854775807, not '1_0'")


def test_k_over_the_albums_there_are_is_the_same_400_with_or_without_a_genre(site):
    url, _, db, _ = site
    rock = _ids_of_genre(db, "Rock")
    with Store.open(db, read_only=True) as store:
        total = store.album_count()
    get = lambda **params: requests.get(f"{url}/api/similar", params=params, timeout=30)  # noqa: E731
    album = rock[0]
    # Without a genre: at most every other album; k one more is refused, not quietly cut.
    assert len(get(album=album, k=str(total - 1)).json()["similar"]["results"]) == total - 1
    _json_error(get(album=album, k=str(total)), 400, f"k={total} is more than the {total - 1} other albums with hsv vectors")
    _json_error(get(album=album, k="50"), 400, f"k=50 is more than the {total - 1} other albums with hsv vectors")
    # With the album's own genre: the same rule, counted in the genre.
    answer = get(album=album, k=str(len(rock) - 1), genre="Rock").json()
    assert sorted(h["album_id"] for h in answer["similar"]["results"]) == rock[1:]
    _json_error(get(album=album, k="50", genre="Rock"), 400, f"k=50 is more than the {len(rock) - 1} other albums of genre 'Rock'")
    # With another genre the album is not one of them: all of that genre may be shown.
    pop = _ids_of_genre(db, "Pop")
    answer = get(album=album, k=str(len(pop)), genre="Pop").json()
    assert sorted(h["album_id"] for h in answer["similar"]["results"]) == pop
    _json_error(get(album=album, k=str(len(pop) + 1), genre="Pop"), 400, f"more than the {len(pop)} other albums of genre 'Pop'")


# -- point 13: a genre outside Latin-1 in the explanation's headers --------------------------------
def test_explaining_a_genre_outside_latin_1_answers_with_encoded_headers(site):
    url, _, db, _ = site
    album = _ids_of_genre(db, "ロック")[0]
    response = requests.get(f"{url}/api/explain", params={"album": album, "genre": "ロック"}, timeout=120)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Genre"] == quote("ロック", safe="") and unquote(response.headers["X-Genre"]) == "ロック"
    assert unquote(response.headers["X-Model"]) == "xgb-hsv"
    assert Image.open(io.BytesIO(response.content)).size[0] > 0


# -- point 14: an upload over waitress's own limit gets the same JSON error -------------------------
@pytest.mark.parametrize("megabytes", [12, 40])
def test_uploads_over_every_limit_get_the_json_413(site, megabytes):
    url, _, _, _ = site
    response = _upload(url, "huge.jpg", b"\xff" * (megabytes * 1024 * 1024))
    _json_error(response, 413, "the upload is larger than the 10 MB limit for an image")


def test_a_request_waitress_itself_refuses_answers_json(site):
    url, _, _, _ = site
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:300]
    assert json.loads(body) == {"error": "the upload is larger than the 10 MB limit for an image", "status": 413}


# -- point 22: Host and Origin ----------------------------------------------------------------------
def _raw(url: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict]:
    """One request with exactly these headers (requests would fill in Host itself)."""
    host, port = url.removeprefix("http://").split(":")
    con = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        con.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            con.putheader(name, value)
        if body is not None:
            con.putheader("Content-Length", str(len(body)))
        con.endheaders(body)
        response = con.getresponse()
        data = response.read()
        return response.status, json.loads(data) if response.getheader("Content-Type", "").startswith("application/json") else {}
    finally:
        con.close()


def test_a_foreign_host_header_is_refused_dns_rebinding(site):
    url, _, _, _ = site
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example.com", f"evil.example.com:{port}", "localhost.evil.example"):
        status, body = _raw(url, "GET", "/api/info", {"Host": host})
        assert status == 403 and "this server is not" in body["error"], (host, status, body)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", f"[::1]:{port}"):
        status, body = _raw(url, "GET", "/api/info", {"Host": host})
        assert status == 200 and "albums" in body, (host, status, body)
    status, _ = _raw(url, "GET", "/thumb/1.jpg", {"Host": "evil.example.com"})
    assert status == 403


def test_a_cross_site_post_is_refused_and_the_own_page_post_accepted(site):
    url, engine, _, covers = site
    host = url.removeprefix("http://")
    reloads = engine.reloads
    cross = [{"Host": host, "Origin": "http://evil.example.com"}, {"Host": host, "Origin": "null"},
             {"Host": host, "Referer": "http://evil.example.com/page.html"},
             {"Host": host, "Origin": f"http://localhost:{host.rsplit(':', 1)[1]}"}]  # another origin, same machine
    for headers in cross:
        status, body = _raw(url, "POST", "/api/reload", {**headers, "Content-Type": "application/x-www-form-urlencoded"}, b"")
        assert status == 403 and "from another" in body["error"], (headers, status, body)
    assert engine.reloads == reloads  # nothing was reloaded
    # The page's own POSTs (same origin) and clients that are not browsers (no Origin) are served.
    for headers in ({"Host": host, "Origin": url}, {"Host": host, "Referer": url + "/"}, {"Host": host}):
        status, body = _raw(url, "POST", "/api/reload", headers, b"")
        assert status == 200 and body["status"] == "ok", (headers, status, body)
    assert engine.reloads == reloads + 3
    cover = next((covers / "Rock").iterdir()).read_bytes()
    response = requests.post(f"{url}/api/query", files={"image": ("a.jpg", cover)}, data={"feature": "hsv"},
                             headers={"Origin": "http://evil.example.com"}, timeout=60)
    _json_error(response, 403, "from another site")
    assert requests.post(f"{url}/api/query", files={"image": ("a.jpg", cover)}, data={"feature": "hsv"},
                         headers={"Origin": url}, timeout=60).status_code == 200


def test_names_given_with_host_name_are_accepted(tmp_path, covers5_dir):
    db, models = _store(tmp_path, _covers(covers5_dir, tmp_path / "covers", per_genre=2), model=False)
    with serving(db, models, host_names=["covers.lan"]) as (url, _):
        port = url.rsplit(":", 1)[1]
        assert _raw(url, "GET", "/api/health", {"Host": f"covers.lan:{port}"})[0] == 200
        assert _raw(url, "GET", "/api/health", {"Host": f"other.lan:{port}"})[0] == 403


# -- point 4: an ingest does not switch classification off -----------------------------------------
def test_a_model_keeps_answering_after_albums_are_added_and_says_its_evaluation_is_out_of_date(tmp_path, covers5_dir):
    covers = _covers(covers5_dir, tmp_path / "covers")
    db, models = _store(tmp_path, covers)
    query = sorted((covers5_dir / "Rock").iterdir())[5].read_bytes()  # not in the store
    with serving(db, models) as (url, engine):
        before = _upload(url, "q.jpg", query, feature="hsv").json()
        assert before["model"] == "xgb-hsv" and len(before["genres"]) == 3
        assert before.get("model_problem") is None and before.get("model_note") is None

        # 20 more covers while it serves, then the reload the file watcher would do.
        with Store.open(db) as store:
            more = _covers(covers5_dir, tmp_path / "more", per_genre=7, offset=500)
            ingest(store, read_source(more), [get_extractor("hsv")])
        assert _raw(url, "POST", "/api/reload", {"Host": url.removeprefix("http://")}, b"")[0] == 200
        info = requests.get(f"{url}/api/info", timeout=30).json()
        assert info["albums"] > 24 and info["models"] == ["xgb-hsv"] and info["default_model"] == "xgb-hsv"
        assert "evaluation is out of date" in info["stale_models"]["xgb-hsv"]
        assert any("evaluation is out of date" in note for note in info["notes"])
        after = _upload(url, "q.jpg", query, feature="hsv").json()
        assert after["model"] == "xgb-hsv" and after["genres"] == before["genres"]  # the same model, the same answer
        assert after["model_problem"] is None and "evaluation is out of date" in after["model_note"]
        page = requests.get(url + "/", timeout=30).text
        assert "evaluation is out of date" in page

    listed = run_cli("models", "list", "--json", db=db, model_dir=models)
    assert listed.exit_code == 0, listed.stderr
    state = json.loads(listed.stdout)[0]["store"]
    assert state["state"] == "changed" and "evaluation is out of date" in state["reason"]
    # Evaluating it needs the state it was trained on: refused with the reason.
    evaluated = run_cli("evaluate", "--model", "xgb-hsv", db=db, model_dir=models)
    assert evaluated.exit_code != 0 and "retrain it" in evaluated.stderr


def test_where_no_model_can_answer_the_answer_says_why(tmp_path, covers5_dir):
    covers = _covers(covers5_dir, tmp_path / "covers", per_genre=4)
    db, models = _store(tmp_path, covers)
    # The model's card now names a feature version the store does not have: really unusable.
    card_path = models / "xgb-hsv" / "card.json"
    card = json.loads(card_path.read_text())
    card["features"][0]["version"] = 99
    from coversearch.classify.model import card_checksum

    card["card_sha256"] = card_checksum(card)
    card_path.write_text(json.dumps(card))
    query = sorted((covers5_dir / "Pop").iterdir())[0].read_bytes()
    with serving(db, models) as (url, _):
        answer = _upload(url, "q.jpg", query, feature="hsv").json()
        assert answer["model"] is None and answer["genres"] == []
        assert "no usable model" in answer["model_problem"] and "hsv v99" in answer["model_problem"]
    listed = json.loads(run_cli("models", "list", "--json", db=db, model_dir=models).stdout)[0]["store"]
    assert listed["state"] == "unusable" and "hsv v99" in listed["reason"]
    shutil.rmtree(models)
    with serving(db, models) as (url, _):
        answer = _upload(url, "q.jpg", query, feature="hsv").json()
        assert answer["genres"] == [] and "no usable model" in answer["model_problem"] and "coversearch train" in answer["model_problem"]


# -- point 16: a thumbnail is the album's own picture -----------------------------------------------
def test_a_replaced_source_file_never_becomes_the_albums_thumbnail(tmp_path, covers5_dir):
    covers = _covers(covers5_dir, tmp_path / "covers", per_genre=3)
    db, models = _store(tmp_path, covers, model=False)
    rock = sorted((covers / "Rock").iterdir())
    with Store.open(db, read_only=True) as store:
        albums = store.albums(_ids_of_genre(db, "Rock"))
    by_path = {Path(a["path"]).name: a for a in albums.values()}
    kept, replaced = by_path[rock[0].name], by_path[rock[1].name]
    original_thumb = make_thumbnail(rock[0].read_bytes())
    other = sorted((covers5_dir / "Pop").iterdir())[900].read_bytes()
    with serving(db, models) as (url, _):
        assert requests.get(f"{url}/thumb/{kept['id']}.jpg", timeout=30).content == original_thumb  # cached now
        rock[0].write_bytes(other)  # after its thumbnail was cached: the cache keeps the album's picture
        rock[1].write_bytes(other)  # before: no thumbnail was made yet
        assert requests.get(f"{url}/thumb/{kept['id']}.jpg", timeout=30).content == original_thumb
        shown = requests.get(f"{url}/thumb/{replaced['id']}.jpg", timeout=30).content
        assert shown == placeholder() and shown != make_thumbnail(other)
        assert not (thumbs_dir_of(db) / f"{replaced['sha256']}.jpg").exists()
        explained = requests.get(f"{url}/api/explain", params={"album": replaced["id"]}, timeout=60)
        assert explained.status_code in (400, 404)  # no model here; never an explanation of the other picture


def thumbs_dir_of(db: Path) -> Path:
    with Store.open(db, read_only=True) as store:
        return store.thumbs_dir


# -- point 21: EXIF orientation ---------------------------------------------------------------------
def _saved_rotated(source: Path, dest: Path, orientation: int = 6) -> Path:
    """``source`` stored turned a quarter left with EXIF orientation 6 ("turn right to view"), as a phone saves it."""
    img = Image.open(source).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.transpose(Image.Transpose.ROTATE_90).save(dest, "JPEG", quality=95, exif=exif.tobytes())
    return dest


def _close(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_a_cover_saved_rotated_with_orientation_6_is_decoded_upright(tmp_path, covers5_dir):
    for source in sorted((covers5_dir / "Rock").iterdir())[:20]:
        if Image.open(source).size[0] != Image.open(source).size[1]:
            break
    else:  # covers5 covers are mostly square: make a non-square one so that a wrong turn also shows in the shape
        source = tmp_path / "wide.png"
        Image.open(sorted((covers5_dir / "Rock").iterdir())[0]).convert("RGB").crop((0, 0, 300, 200)).save(source)
    upright = decode_image(read_bytes(source)).rgb
    rotated = decode_image(read_bytes(_saved_rotated(source, tmp_path / "phone.jpg"))).rgb
    assert rotated.shape == upright.shape and _close(rotated, upright) < 6


def test_orientation_is_applied_in_ingest_query_upload_and_thumbnails(tmp_path, covers5_dir):
    """pHash (a picture's layout, unlike the hsv histogram) tells an upright cover from a sideways one."""
    covers = _covers(covers5_dir, tmp_path / "covers", per_genre=4)
    db, models = tmp_path / "store.duckdb", tmp_path / "models"
    features = [get_extractor("hsv"), get_extractor("phash")]
    with Store.open(db) as store:
        ingest(store, read_source(covers), features)
    original = sorted((covers / "Pop").iterdir())[2]
    phone = _saved_rotated(original, tmp_path / "phone.jpg")
    with Store.open(db, read_only=True) as store:
        original_id = store.known_files()[str(original)]
        original_hash = store.vectors_for(store.feature_set("phash"), [original_id])[0]

    # Upload: the phone photo finds its original first, at (nearly) no distance; sideways it is ~32 bits away.
    with serving(db, models) as (url, _):
        hits = _upload(url, "phone.jpg", phone.read_bytes(), feature="phash", k="3").json()["similar"]["results"]
        assert hits[0]["album_id"] == original_id and hits[0]["distance"] <= 2, hits
    # The CLI query as well.
    result = run_cli("similar", phone, "--feature", "phash", "-k", "1", "--json", db=db)
    assert result.exit_code == 0, result.stderr
    top = json.loads(result.stdout)["results"][0]
    assert top["album_id"] == original_id and top["distance"] <= 2

    # Ingest: the rotated file's hash is the original's, its size the displayed one, its thumbnail upright.
    (tmp_path / "phone-covers" / "Pop").mkdir(parents=True)
    shutil.copy(phone, tmp_path / "phone-covers" / "Pop" / "phone.jpg")
    with Store.open(db) as store:
        ingest(store, read_source(tmp_path / "phone-covers"), features)
        phone_id = store.known_files()[str(tmp_path / "phone-covers" / "Pop" / "phone.jpg")]
        phone_hash = store.vectors_for(store.feature_set("phash"), [phone_id])[0]
        row = store.albums([phone_id])[phone_id]
    assert phone_id != original_id and np.count_nonzero(phone_hash != original_hash) <= 2
    assert (row["width"], row["height"]) == Image.open(original).size
    with serving(db, models) as (url, _):
        thumb = np.asarray(Image.open(io.BytesIO(requests.get(f"{url}/thumb/{phone_id}.jpg", timeout=30).content)).convert("RGB"))
    want = np.asarray(Image.open(io.BytesIO(make_thumbnail(original.read_bytes()))).convert("RGB"))
    assert thumb.shape == want.shape and _close(thumb, want) < 8
    sideways = np.asarray(Image.fromarray(want).transpose(Image.Transpose.ROTATE_90))
    assert _close(thumb, sideways) > 3 * _close(thumb, want)
