"""`coversearch report` through the real CLI on a small real store with three quick trained models,
opened in a real headless Chromium: every section is there and every <img> actually loads."""

from __future__ import annotations

import json
import re
from pathlib import Path


from conftest import GENRES, run_cli
from test_web import images_loaded

SECTIONS = ("store", "covers", "similar", "classifiers", "search-benchmark")


def report(db: Path, models: Path, out: Path, *args: str):
    return run_cli("report", "--out", out, *args, db=db, model_dir=models)


def fake_search_bench(folder: Path) -> Path:
    """A search-benchmark results.json (the shape `coversearch bench search` writes: rows of numbers)."""
    folder.mkdir(parents=True)
    rows = [{"kind": kind, "params": p, "recall@10": r, "qps": q}
            for kind, p, r, q in [("faiss-hnsw", "ef=16", 0.91, 9000.0), ("faiss-hnsw", "ef=64", 0.99, 3000.0),
                                  ("annoy", "search_k=100", 0.85, 5000.0), ("annoy", "search_k=1000", 0.97, 900.0)]]
    (folder / "results.json").write_text(json.dumps({"store": "covers5", "queries": 200, "results": rows}))
    return folder


def test_report_opens_in_a_browser_with_every_section_and_image(browser, web_store, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    db, models, _ = web_store
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()  # outputs go into existing folders only (docs/safety.md)
    result = report(db, models, out, "--seed", "7", "--bench-dir", str(fake_search_bench(tmp_path / "search")))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} (")
    html = out.read_text()
    assert "src=\"http" not in html and "src=\"/" not in html and "src=\"file:" not in html  # self-contained

    browser.get(out.as_uri())
    for section in SECTIONS:
        assert browser.find_elements(By.ID, section), f"section {section} is missing"
    count, broken = images_loaded(browser, "img")
    # 5 genres x 5 covers, 3 queries x (1 + 2 x 5), 3 plots, 3 confusion matrices and 3 reliability diagrams (one per model)
    assert count == 25 + 33 + 3 + 3 + 3 and broken == [], broken

    rows = browser.find_elements(By.CSS_SELECTOR, "#covers .genre-row")
    assert [r.find_element(By.TAG_NAME, "h3").text for r in rows] == list(GENRES)
    assert all(len(r.find_elements(By.TAG_NAME, "img")) == 5 for r in rows)
    queries = browser.find_elements(By.CSS_SELECTOR, "#similar .query")
    assert len(queries) == 3
    for q in queries:
        headings = [h.text for h in q.find_elements(By.TAG_NAME, "h4")]
        assert headings == ["hsv v1 (euclidean)", "vgg16 v1 (cosine)"]
        captions = [c.text for c in q.find_elements(By.CSS_SELECTOR, ".feature figcaption")]
        assert len(captions) == 10 and all(re.match(r"\d\. d=\d\.\d{4}", c) for c in captions)
    models_table = browser.find_element(By.CSS_SELECTOR, "#classifiers table").text
    assert all(name in models_table for name in ("knn-vgg16", "xgb-hsv", "xgb-layers")) and "%" in models_table
    assert "(temperature)" in models_table  # each model's test ECE, raw -> calibrated
    bench = browser.find_element(By.ID, "search-benchmark").text
    assert "faiss-hnsw" in bench and "ef=64" in bench and "0.99" in bench
    assert "Country" in browser.find_element(By.ID, "store").text

    # Thumbnails are cached beside the store, one file per album shown.
    thumbs = list(Path(str(db) + ".thumbs").glob("*.jpg"))
    assert len(thumbs) >= 25 and not list(Path(str(db) + ".thumbs").glob(".*.tmp"))


def test_report_is_reproducible_by_seed_and_says_when_there_is_no_benchmark(web_store, tmp_path):  # noqa: F811
    db, models, _ = web_store

    def captions(seed: str) -> list[str]:
        out = tmp_path / f"r{seed}.html"
        result = report(db, models, out, "--seed", seed, "--bench-dir", str(tmp_path / "nothing"))
        assert result.exit_code == 0, result.output
        html = out.read_text()
        assert "No search benchmark results yet" in html
        assert "note: no search benchmark results" in result.stderr
        return re.findall(r"<figcaption>(.*?)</figcaption>", html)

    first = captions("1")
    assert first == captions("1")
    assert first != captions("2")


def test_report_on_a_missing_store_is_one_error_line(tmp_path):
    result = report(tmp_path / "none.duckdb", tmp_path, tmp_path / "r.html")
    assert result.exit_code != 0
    assert result.stderr.strip().startswith("error: no store at") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_report_says_when_covers_cannot_be_read_at_their_stored_paths(covers5_dir, tmp_path):
    from conftest import copy_covers
    from coversearch.features.registry import get_extractor
    from coversearch.ingest.pipeline import ingest
    from coversearch.ingest.readers import read_folder
    from coversearch.store import Store

    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=2, offset=800)
    db = tmp_path / "store.duckdb"
    with Store.open(db) as store:
        ingest(store, read_folder(root), [get_extractor("hsv")])
    root.rename(tmp_path / "moved")  # the data moved after ingest; no thumbnail cached yet
    result = report(db, tmp_path / "models", tmp_path / "r.html", "--bench-dir", str(tmp_path / "none"))
    assert result.exit_code == 0, result.output
    assert "could not be read at their stored paths" in result.output
    assert "could not be read at their stored paths" in (tmp_path / "r.html").read_text()
