"""Both ingest engines run the same per-batch step: bytes found at two paths are embedded once on
Ray too, and `--report-duplicates` prints the same report on either engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import copy_covers, run_cli
from coversearch.bench.transforms import transformed_jpeg
from coversearch.store import Store

pytestmark = pytest.mark.slow  # a local Ray instance per run

VOLATILE = ("seconds", "images_per_second", "engine", "shards_written", "shards_resumed")  # timings and the engine's own hand-off


def _steady(summary: dict) -> dict:
    """The summary without timings (the duplicate groups' placement times its stages too)."""
    out = {k: v for k, v in summary.items() if k not in VOLATILE}
    if "duplicate_groups" in out:
        out["duplicate_groups"] = {k: v for k, v in out["duplicate_groups"].items() if k not in ("seconds", "stages")}
    return out


def _ingest(db: Path, root: Path, engine: str, *args):
    more = ["--engine", "ray", "--workers", "2"] if engine == "ray" else []
    return run_cli("ingest", root, *more, *args, db=db, index_dir=db.parent / f"idx-{db.stem}")


def test_same_bytes_under_two_genres_are_embedded_once_on_either_engine(tmp_path, covers5_dir, vgg16_weights):
    # Batches of two, two actors: each copy lands in another batch, mapped by another Ray task.
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=3, genres=("Pop", "Rock"), offset=700)
    pop = sorted((root / "Pop").iterdir())
    shutil.copy(pop[0], root / "Rock" / "z-same-bytes-as-pop.jpg")
    shutil.copy(pop[1], root / "Pop" / "z-copy-within-pop.jpg")
    unique = 6
    summaries = {}
    for engine in ("local", "ray"):
        db = tmp_path / f"{engine}.duckdb"
        result = _ingest(db, root, engine, "--features", "vgg16,vgg16-layers", "--batch-size", "2",
                         "--vgg16-weights", vgg16_weights, "--json", "--quiet")
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["images_forwarded"] == unique, engine  # one pass per unique image, both heads on it
        assert summary["embeddings_added"] == {"vgg16": unique, "vgg16-layers": unique}
        assert summary["albums_added"] == unique and summary["files_added"] == 8
        with Store.open(db, read_only=True) as store:
            album = store.known_files()[str(root / "Rock" / "z-same-bytes-as-pop.jpg")]
            assert store.known_files()[str(pop[0])] == album
            assert store.genres_by_album([album])[album] == ["Pop", "Rock"]
        summaries[engine] = _steady(summary)
    assert summaries["ray"] == summaries["local"]


def test_report_duplicates_is_the_same_on_both_engines(tmp_path, covers5_dir):
    base = tmp_path / "base.duckdb"
    stored = copy_covers(covers5_dir, tmp_path / "stored", per_genre=4, genres=("Pop", "Rock"), offset=500)
    assert _ingest(base, stored, "local", "--features", "hsv,phash", "--quiet").exit_code == 0
    new = tmp_path / "new"
    (new / "Pop").mkdir(parents=True)
    (new / "Rock").mkdir()
    original = sorted((stored / "Pop").iterdir())[0]
    with Image.open(original) as img:
        (new / "Pop" / "small.jpg").write_bytes(transformed_jpeg(img, "resize-50"))
        (new / "Rock" / "grey.jpg").write_bytes(transformed_jpeg(img, "greyscale"))
    shutil.copy(new / "Pop" / "small.jpg", new / "Rock" / "small-again.jpg")
    shutil.copy(sorted((covers5_dir / "Rock").iterdir())[900], new / "Rock" / "stranger.jpg")

    outputs = {}
    for engine in ("local", "ray"):
        runs = {}
        for form in ("--json", "--quiet"):  # the report as data, and as the table people read
            db = tmp_path / f"{engine}{form}.duckdb"
            shutil.copy(base, db)
            result = _ingest(db, new, engine, "--features", "hsv,phash", "--batch-size", "1", "--report-duplicates", form)
            assert result.exit_code == 0, result.stderr
            runs[form] = result.stdout
        outputs[engine] = runs
    local = json.loads(outputs["local"]["--json"])
    ray = json.loads(outputs["ray"]["--json"])
    found = local["near_duplicates"]["found"]
    stored_before = [d for d in found if not d["same_run"]]
    assert sorted(Path(d["path"]).name for d in stored_before) == ["grey.jpg", "small.jpg"]
    assert {Path(d["duplicate_path"]).name for d in stored_before} == {original.name}
    # The two copies arrived in one run: listed against each other too (the later as the copy).
    assert all({Path(d["path"]).name, Path(d["duplicate_path"]).name} == {"grey.jpg", "small.jpg"} for d in found if d["same_run"])
    assert ray["near_duplicates"] == local["near_duplicates"]
    assert _steady(ray) == _steady(local)
    assert outputs["ray"]["--quiet"] == outputs["local"]["--quiet"]
    assert "2 new covers nearly duplicate stored ones or each other" in outputs["local"]["--quiet"]
