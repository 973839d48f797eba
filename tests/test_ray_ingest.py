"""`ingest --engine ray` on a local Ray instance: the same store as local ingest, re-runs that add
nothing, and a driver killed with SIGKILL that resumes from its Parquet shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pytest

from badfiles import make_bad_files
from conftest import copy_covers
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store
from test_kill_resume import consistent_counts, expected_counts


@pytest.fixture(scope="module")
def mixed_covers(tmp_path_factory, covers5_dir, cross_genre_duplicates) -> Path:
    """25 real covers, 3 files whose bytes are also filed under another genre, a copy within a
    genre, and the bad and odd files of badfiles.py: 50 files."""
    root = copy_covers(covers5_dir, tmp_path_factory.mktemp("ray") / "covers", per_genre=5, offset=400)
    for electronic, pop in cross_genre_duplicates:
        shutil.copy(electronic, root / "Electronic" / electronic.name)
        shutil.copy(pop, root / "Pop" / pop.name)
    rock = sorted((root / "Rock").iterdir())[0]
    shutil.copy(rock, root / "Rock" / ("copy-of-" + rock.name))
    make_bad_files(sorted((covers5_dir / "Country").iterdir())[0], root / "Country")
    return root


def store_content(db: Path, features=("hsv", "vgg16")) -> dict:
    """Everything ingest decides, keyed by content (sha256) rather than by row order."""
    with Store.open(db, read_only=True) as store:
        con = store.con
        albums = {r[1]: r for r in con.execute(
            "SELECT id, sha256, source_path, source_url, width, height, format FROM albums").fetchall()}
        sha_of = {r[0]: r[1] for r in albums.values()}
        genres = {sha_of[a]: g for a, g in store.genres_by_album().items()}
        files = {p: sha_of[a] for p, a in store.known_files().items()}
        sizes = dict(con.execute("SELECT path, size_bytes FROM album_files").fetchall())
        errors = dict(con.execute("SELECT path, reason FROM ingest_errors").fetchall())
        details = dict(con.execute("SELECT path, detail FROM ingest_errors").fetchall())
        vectors = {}
        for name in features:
            ids, matrix = store.load_embeddings(store.feature_set(name))
            vectors[name] = {sha_of[int(i)]: v for i, v in zip(ids, matrix)}
    return {"albums": albums, "genres": genres, "files": files, "sizes": sizes, "errors": errors,
            "details": details, "vectors": vectors}


def test_ray_ingest_equals_local_ingest_and_a_re_run_adds_nothing(tmp_path, cli, mixed_covers, vgg16_extractor, vgg16_weights):
    local_db = tmp_path / "local.duckdb"
    with Store.open(local_db) as store:
        ingest(store, read_source(mixed_covers), [get_extractor("hsv"), vgg16_extractor], batch_size=8)
    local = store_content(local_db)

    args = ["ingest", mixed_covers, "--engine", "ray", "--features", "hsv,vgg16", "--workers", "2",
            "--batch-size", "8", "--vgg16-weights", vgg16_weights, "--json", "--quiet"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"]["workers"] == 2 and summary["shards_written"] >= 2
    ray = store_content(cli.db)

    assert len(local["albums"]) >= 30 and len(local["errors"]) >= 8 and len(local["files"]) > len(local["albums"])
    for key in ("albums", "genres", "files", "sizes", "errors", "details"):
        assert ray[key] == local[key], key  # album ids too: shards are loaded in listing order
    assert sorted(Counter(local["errors"].values())) == sorted(Counter(ray["errors"].values()))
    for name in ("hsv", "vgg16"):
        assert ray["vectors"][name].keys() == local["vectors"][name].keys()
        for sha, vector in local["vectors"][name].items():
            np.testing.assert_allclose(ray["vectors"][name][sha], vector, atol=1e-5 * max(1.0, float(np.abs(vector).max())), rtol=0)

    # The shards hold every file once, its vectors, and the error rows.
    shards = sorted((cli.db.parent / (cli.db.name + ".shards") / "loaded").glob("*.parquet"))
    rows = duckdb.connect().execute(
        "SELECT path, sha256, error_reason, vector_vgg16 IS NOT NULL FROM read_parquet(?)", [[str(p) for p in shards]]
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted([*local["files"], *local["errors"]])
    assert {r[0]: r[2] for r in rows if r[2]} == local["errors"]

    again = cli(*args)
    assert again.exit_code == 0, again.stderr
    redo = json.loads(again.stdout)
    assert redo["albums_added"] == redo["files_added"] == redo["genre_links_added"] == 0
    assert redo["embeddings_added"] == {}
    assert redo["left_out"] == len(local["files"])  # only the bad files are tried again, as local ingest does
    again_content = store_content(cli.db)
    for key in ("albums", "genres", "files", "sizes", "errors"):
        assert again_content[key] == ray[key], key


def _shard_rows(folder: Path) -> list[str]:
    shards = sorted(folder.glob("*.parquet"))
    if not shards:
        return []
    return [r[0] for r in duckdb.connect().execute("SELECT path FROM read_parquet(?)", [[str(p) for p in shards]]).fetchall()]


def test_driver_killed_mid_run_resumes_from_its_shards(tmp_path, covers5_dir):
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=40, offset=800)
    db = tmp_path / "store.duckdb"
    shards = tmp_path / "shards"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "ingest", str(root), "--engine", "ray",
               "--features", "hsv", "--batch-size", "4", "--shards", str(shards), "--quiet", "--json"]
    full = expected_counts(root)

    # Killed as soon as the first shard reaches the folder; Ray's own processes share its group.
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if any(shards.glob("*.parquet")) or any((shards / "loaded").glob("*.parquet")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the local Ray instance it started
        except ProcessLookupError:
            pass
    before = sorted(_shard_rows(shards) + _shard_rows(shards / "loaded"))
    with Store.open(db) as store:
        counts = consistent_counts(store)
    assert 0 < len(before) < full["album_files"], "the kill should land mid-run"
    assert counts["albums"] < full["albums"]

    finish = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, start_new_session=True)
    assert finish.returncode == 0, finish.stderr[-2000:]
    summary = json.loads(finish.stdout)
    with Store.open(db) as store:
        assert consistent_counts(store) == full
    # Nothing that reached a shard was computed again: every file is in exactly one shard.
    after = _shard_rows(shards / "loaded")
    assert not list(shards.glob("*.parquet"))
    assert sorted(after) == sorted(str(p) for p in root.rglob("*") if p.is_file())
    assert summary["left_out"] == len(before)  # what the killed run wrote was loaded, not listed again
