"""The `text` feature: words read on real covers, stored per cover, searched with OCR slips forgiven,
checked against artist / title; on the CLI, the API (real server on 127.0.0.1) and the page (real
headless Chromium).  The covers are chosen from tests/data/text_ground_truth.tsv, whose words a
person typed by looking at each one."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from badfiles import make_bad_files
from conftest import REPO, one_line_error, serving
from test_web import wait_for

from coversearch.features.text import compact, normalise
from coversearch.query.text import CoverTexts
from coversearch.store import Store

GROUND_TRUTH = REPO / "tests" / "data" / "text_ground_truth.tsv"


def ground_truth() -> list[dict[str, str]]:
    lines = [line for line in GROUND_TRUTH.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def cover_saying(words: str) -> dict[str, str]:
    """The ground-truth row whose legible words are exactly ``words``."""
    (row,) = [r for r in ground_truth() if r["words"] == words]
    return row


GAGA = cover_saying("lady gaga the fame monster")
BOWIE = cover_saying("david bowie hunky dory rca victor")
WALL = cover_saying("pink floyd the wall")
BLANK = [r for r in ground_truth() if not r["words"] and r["artist"]][:2]  # nothing legible printed on them


def semi_global(pattern: str, text: str) -> int:
    """Edit distance of ``pattern`` to its best-matching stretch of ``text``: the textbook table, one cover."""
    prev = [0] * (len(text) + 1)
    for i, ch in enumerate(pattern, start=1):
        cur = [i] + [0] * len(text)
        for j, tc in enumerate(text, start=1):
            cur[j] = min(prev[j - 1] + (ch != tc), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return min(prev)


def link(covers5_dir: Path, rows, dest: Path) -> Path:
    for row in rows:
        genre, name = row["path"].split("/")
        (dest / genre).mkdir(parents=True, exist_ok=True)
        (dest / genre / name).symlink_to(covers5_dir / genre / name)
    return dest


@pytest.fixture(scope="module")
def text_store(tmp_path_factory, covers5_dir):
    """A real store of six real covers (four with clear titles, two with no printed text), hsv + text."""
    from conftest import run_cli

    base = tmp_path_factory.mktemp("text-store")
    root = link(covers5_dir, [GAGA, BOWIE, WALL, *BLANK], base / "covers")
    db = base / "store.duckdb"
    result = run_cli("ingest", root, "--features", "hsv,text", "--quiet", db=db)
    assert result.exit_code == 0, result.output
    with Store.open(db, read_only=True) as store:
        ids = {Path(p).name: a for p, a in store.known_files().items()}
    album = {key: ids[row["path"].split("/")[1]] for key, row in
             (("gaga", GAGA), ("bowie", BOWIE), ("wall", WALL), ("blank0", BLANK[0]), ("blank1", BLANK[1]))}
    return db, root, album


def search(db: Path, *args: str) -> list[dict]:
    from conftest import run_cli

    result = run_cli("search", *args, "--json", db=db)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["hits"]


# -- the searchable forms and the matching, on their own ------------------------------------------------
def test_normalise_folds_case_accents_and_punctuation():
    assert normalise("Déjà  Vu!") == "deja vu"
    assert normalise("N.W.A") == "nwa" and normalise("DON'T STOP") == "dont stop"
    assert normalise("AC/DC") == "ac dc" and compact("AC/DC") == "acdc"
    assert normalise("Motörhead — Ace of Spades") == "motorhead ace of spades"
    assert normalise("   ") == ""


def test_the_all_covers_scan_equals_edit_distance_cover_by_cover():
    rng = random.Random(31)
    alphabet = "abcdeß1"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(60)]
    covers = CoverTexts([(i + 1, '{"lines": []}', t, t) for i, t in enumerate(texts)])
    for _ in range(20):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 9)))
        found, _ = covers.distances(pattern)
        expected = [min(semi_global(pattern, t), len(pattern)) for t in texts]
        assert found.tolist() == expected, pattern


# -- the feature on real covers ---------------------------------------------------------------------------
def test_the_stored_text_of_a_clear_cover_holds_its_words(text_store):
    db, _, album = text_store
    with Store.open(db, read_only=True) as store:
        texts = CoverTexts.from_store(store)
        fs = store.feature_set("text")
        assert fs.kind == "text" and store.embedding_count(fs) == 5  # every album, text or none
    assert "lady gaga" in texts.text_of(album["gaga"]) and "fame monster" in texts.text_of(album["gaga"])
    assert "hunky dory" in texts.text_of(album["bowie"])
    assert "pink floyd" in texts.text_of(album["wall"]) and "wall" in texts.text_of(album["wall"])
    for line in texts.lines(album["gaga"]):
        assert 0.5 <= line["score"] <= 1.0
        assert len(line["box"]) == 4 and all(-2 <= x <= 302 and -2 <= y <= 302 for x, y in line["box"])


def test_search_finds_a_cover_by_a_word_with_a_typo_and_with_the_spaces_removed(text_store):
    db, _, album = text_store
    for query in ("lady gaga", "lady gagga", "famemonster", "the fame monstre", "LADY  GAGA!"):
        hits = search(db, query)
        assert hits and hits[0]["album_id"] == album["gaga"], (query, hits)
        assert any("GAGA" in m.upper() or "MONSTER" in m.upper() for m in hits[0]["matched"]), hits[0]
    assert search(db, "hunky dorry")[0]["album_id"] == album["bowie"]
    assert search(db, "hunkydory")[0]["album_id"] == album["bowie"]
    assert search(db, "zzqxj") == []
    exact = search(db, "hunky dory")[0]["score"]
    assert exact == 1.0 and search(db, "hunky dorry")[0]["score"] < exact


def test_search_keeps_to_the_genre_and_k(text_store):
    db, _, album = text_store
    gaga_genre = GAGA["path"].split("/")[0]
    other = next(r["path"].split("/")[0] for r in (BOWIE, WALL, *BLANK) if r["path"].split("/")[0] != gaga_genre)
    assert search(db, "lady gaga", "--genre", gaga_genre)[0]["album_id"] == album["gaga"]
    assert all(h["album_id"] != album["gaga"] for h in search(db, "lady gaga", "--genre", other))
    assert len(search(db, "a", "-k", "1", "--min-score", "0")) == 1


def test_a_cover_with_no_text_is_never_a_metadata_mismatch(text_store, tmp_path):
    from conftest import run_cli

    db, root, album = text_store
    manifest = tmp_path / "catalogue.csv"
    rows = [(GAGA, "Lady Gaga", "The Fame Monster"), (BOWIE, "Pink Floyd", "The Wall"),  # right, wrong
            (BLANK[0], "Lady Gaga", "The Fame Monster"), (BLANK[1], "Anyone", "Anything")]  # no text: wrong or not
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "artist", "title"])
        for row, artist, title in rows:
            writer.writerow([os.path.relpath(root / row["path"], tmp_path), artist, title])
    result = run_cli("check-metadata", "--manifest", manifest, "--all", "--json", db=db)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    verdict = {v["album_id"]: v for v in report["albums"]}
    assert verdict[album["gaga"]]["verdict"] == "match"
    bowie = verdict[album["bowie"]]
    assert bowie["verdict"] == "mismatch" and bowie["score"] > 0.3 and "HUNKY" in bowie["cover_text"].upper()
    assert bowie["artist"] == "Pink Floyd" and bowie["title"] == "The Wall"
    for key in ("blank0", "blank1"):
        assert verdict[album[key]]["verdict"] == "unknown"
    assert (report["mismatch"], report["unknown"], report["match"]) == (1, 2, 1)
    # Without --all only the mismatches are listed.
    only = json.loads(run_cli("check-metadata", "--manifest", manifest, "--json", db=db).stdout)
    assert [v["album_id"] for v in only["albums"]] == [album["bowie"]]


def test_bad_queries_and_stores_without_text_give_one_clear_error(text_store, tmp_path, covers5_dir):
    from conftest import run_cli

    db, _, _ = text_store
    one_line_error(run_cli("search", "", db=db), "words")
    one_line_error(run_cli("search", "?!...", db=db), "letters or digits")
    one_line_error(run_cli("search", "x" * 201, db=db), "longer than")
    one_line_error(run_cli("search", "gaga", "--genre", "Polka", db=db), "Polka")
    one_line_error(run_cli("index", "build", "--feature", "text", "--kind", "faiss-hnsw", db=db), "coversearch search")
    one_line_error(run_cli("similar", "--album", "1", "--feature", "text", db=db), "coversearch search")
    one_line_error(run_cli("check-metadata", "--manifest", tmp_path / "missing.csv", db=db), "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,genre\nx.jpg,Rock\n")
    one_line_error(run_cli("check-metadata", "--manifest", bad, db=db), "'path' and 'artist'")
    hsv_only = tmp_path / "hsv.duckdb"
    covers = link(covers5_dir, [GAGA], tmp_path / "c")
    assert run_cli("ingest", covers, "--features", "hsv", "--quiet", db=hsv_only).exit_code == 0
    one_line_error(run_cli("search", "gaga", db=hsv_only), "--features text")
    one_line_error(run_cli("check-metadata", db=hsv_only), "--features text")


def test_bad_files_with_the_text_feature_are_error_rows_and_odd_formats_are_read(tmp_path, covers5_dir):
    from conftest import run_cli

    genre, name = GAGA["path"].split("/")
    expected = make_bad_files(covers5_dir / genre / name, tmp_path / "covers" / "Pop")
    db = tmp_path / "store.duckdb"
    result = run_cli("ingest", tmp_path / "covers", "--features", "text", "--json", db=db)
    assert result.exit_code == 0, result.output
    with Store.open(db, read_only=True) as store:
        errors = dict(store.con.execute("SELECT path, reason FROM ingest_errors").fetchall())
        texts = CoverTexts.from_store(store)
        files = store.known_files()
    for file, reason in expected.items():
        path = str(tmp_path / "covers" / "Pop" / file)
        if reason is None:  # grey, CMYK, palette, alpha, WebP copies of the Lady Gaga cover: read like it
            assert path in files, file
            assert "gaga" in texts.text_of(files[path]), (file, texts.text_of(files[path]))
        else:
            assert errors.get(path) == reason, (file, errors.get(path))


def test_adding_text_later_reads_only_the_text(text_store, tmp_path, covers5_dir):
    from conftest import run_cli

    root = link(covers5_dir, [WALL, BOWIE], tmp_path / "covers")
    db = tmp_path / "store.duckdb"
    assert run_cli("ingest", root, "--features", "hsv", "--quiet", db=db).exit_code == 0
    added = json.loads(run_cli("ingest", root, "--features", "hsv,text", "--json", db=db).stdout)
    assert added["embeddings_added"] == {"text": 2} and added["albums_added"] == 0
    again = json.loads(run_cli("ingest", root, "--features", "hsv,text", "--json", db=db).stdout)
    assert again["embeddings_added"] == {}


@pytest.mark.slow
def test_a_killed_text_ingest_resumes(tmp_path, covers5_dir):
    rows = ground_truth()[:40]
    root = link(covers5_dir, rows, tmp_path / "covers")
    db, wal = tmp_path / "store.duckdb", tmp_path / "store.duckdb.wal"
    command = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "ingest", str(root),
               "--features", "text", "--batch-size", "4", "--quiet"]
    seen = []
    for delay in (1, 2, 4, 8, 16):  # killed ever later until a kill lands mid-ingest (each run resumes the last)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while not wal.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Store.open(db) as store:  # opens after every kill
            if not any(fs.name == "text" for fs in store.feature_sets(kind=None)):
                seen.append(0)
                continue
            fs = store.feature_set("text")
            partial = store.embedding_count(fs)
            assert store.album_count() == partial  # each batch's albums and their text commit together
        seen.append(partial)
        if 0 < partial < len(rows):
            break
    assert 0 < seen[-1] < len(rows), f"no kill landed mid-ingest: {seen}"
    assert seen == sorted(seen)
    finish = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert finish.returncode == 0, finish.stderr
    with Store.open(db, read_only=True) as store:
        fs = store.feature_set("text")
        n = store.con.execute(f"SELECT count(*), count(DISTINCT album_id) FROM {fs.table}").fetchone()
        assert n == (len(rows), len(rows)) and store.album_count() == len(rows)


@pytest.mark.slow
def test_ray_ingest_reads_the_same_text_as_local_ingest(text_store, tmp_path):
    from conftest import run_cli

    db, root, _ = text_store
    ray_db = tmp_path / "ray.duckdb"
    result = run_cli("ingest", root, "--engine", "ray", "--features", "text", "--workers", "1", "--json", db=ray_db)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["embeddings_added"] == {"text": 5}

    def texts_by_file(path):
        with Store.open(path, read_only=True) as store:
            texts = CoverTexts.from_store(store)
            return {Path(p).name: (texts.text_of(a), texts.lines(a)) for p, a in store.known_files().items()}

    assert texts_by_file(ray_db) == texts_by_file(db)


# -- the API on a real server, and the page in a real browser ----------------------------------------------
@pytest.fixture(scope="module")
def text_server(text_store, tmp_path_factory):
    db, _, _ = text_store
    with serving(db, tmp_path_factory.mktemp("no-models"), tmp_path_factory.mktemp("no-indexes"), threads=2) as (url, _):
        yield url


def test_api_text_search_answers_as_the_cli(text_server, text_store):
    db, _, album = text_store
    answer = requests.get(f"{text_server}/api/text", params={"q": "famemonster", "k": 3}, timeout=30).json()
    cli = search(db, "famemonster", "-k", "3")
    assert [h["album_id"] for h in answer["hits"]] == [h["album_id"] for h in cli] and cli[0]["album_id"] == album["gaga"]
    assert answer["hits"][0]["thumb"] == f"/thumb/{album['gaga']}.jpg" and "path" not in answer["hits"][0]
    assert answer["hits"][0]["matched"] == cli[0]["matched"]
    for params, needle in (({}, "no words"), ({"q": "gaga", "k": "0"}, "k must"), ({"q": "gaga", "genre": "Polka"}, "Polka"),
                           ({"q": "gaga", "min_score": "2"}, "min_score"), ({"q": "?!"}, "letters or digits")):
        response = requests.get(f"{text_server}/api/text", params=params, timeout=30)
        assert response.status_code == 400 and needle in response.json()["error"], (params, response.text)


def test_page_search_box_shows_covers_and_their_matched_words(browser, text_server, text_store):  # noqa: F811
    from selenium.webdriver.common.by import By

    _, _, album = text_store
    browser.get(text_server + "/")
    box = browser.find_element(By.ID, "text-q")
    box.send_keys("hunky dorry")
    browser.find_element(By.ID, "text-go").click()
    hits = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#text-results figure.text-hit"), what="text hits")
    assert hits[0].get_attribute("data-album-id") == str(album["bowie"])
    assert "HUNKY DORY" in hits[0].find_element(By.CSS_SELECTOR, ".matched").text.upper()
    wait_for(lambda: browser.execute_script(
        "const i = document.querySelector('#text-results img'); return i.complete && i.naturalWidth > 0;"), what="thumbnail")
    box.clear()
    browser.find_element(By.ID, "text-go").click()
    assert "type the words" in wait_for(lambda: browser.find_element(By.ID, "error").text, what="error")
