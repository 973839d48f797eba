"""Hostile input, as issue 14 found it: each case gets one clear error and loses nothing.

Real files throughout: a named pipe, a symlink to /dev/zero, a sparse 200 MB file, a damaged
XGBoost model, a foreign DuckDB database, a real ingest holding the store.  Whatever could hang
or crash the interpreter (the pipe, the damaged booster) runs in a subprocess with a timeout.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, Cli, copy_covers, link_covers, one_line_error
from coversearch.classify.model import CARD, ModelError, TrainedModel
from coversearch.classify.recipes import Recipe
from coversearch.classify.split import make_split
from coversearch.classify.train import train_model
from coversearch.errors import StoreError
from coversearch.features.base import extract_images
from coversearch.imaging.images import decode_image
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store, migrate
from coversearch.store.db import LOCK_TIMEOUT_ENV

XGBOOST = Recipe("xgb", "xgboost", ("hsv",), {"n_estimators": 30})
KNN = Recipe("knn", "knn", ("hsv",), {"k": 3, "index_kind": "exact"})


def cli_subprocess(db: Path, model_dir: Path, *args, timeout: float = 120, memory_gib: int | None = None) -> subprocess.CompletedProcess:
    """The real CLI in its own interpreter: a crash or a hang there cannot take the test run with it.

    ``memory_gib`` caps its address space, so that a regression reading an endless file ends in a
    MemoryError instead of exhausting a shared machine (few native threads keep the cap workable).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    limit = None
    if memory_gib is not None:
        import resource

        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
        cap = memory_gib * 1024**3
        limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # noqa: E731
    argv = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "--model-dir", str(model_dir), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, preexec_fn=limit)


@pytest.fixture(scope="module")
def store(tmp_path_factory, covers5_dir) -> Path:
    """A real hsv store of 40 covers (8 per genre) with its split."""
    root = copy_covers(covers5_dir, tmp_path_factory.mktemp("covers") / "covers", per_genre=8, offset=300)
    path = tmp_path_factory.mktemp("store") / "store.duckdb"
    with Store.open(path) as s:
        ingest(s, read_folder(root), [get_extractor("hsv")])
        make_split(s)
    return path


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    """A model folder holding a small xgboost and a knn model, trained on the store."""
    models = tmp_path_factory.mktemp("models")
    with Store.open(store, read_only=True) as s:
        for recipe in (XGBOOST, KNN):
            train_model(s, models, recipe, name=recipe.name, evaluate=False)
    return models


@pytest.fixture
def models(trained, tmp_path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(trained, copy)
    return copy


@pytest.fixture
def cli_on(store, tmp_path, models) -> Cli:
    db = tmp_path / "store.duckdb"
    shutil.copy(store, db)
    return Cli(db, tmp_path / "indexes", models)


def a_cover(covers5_dir) -> Path:
    return sorted((covers5_dir / "Rock").iterdir())[5]


# -- 1, 5: damaged or edited model files ----------------------------------------------------------
@pytest.mark.parametrize("offset", [29990, 30000])
def test_a_damaged_xgboost_model_is_refused_before_xgboost_reads_it(store, models, covers5_dir, offset):
    # Without the check, 4 bytes flipped at 29990 of this booster segfault classify (exit 139); at
    # 30000 they load and answer with exit 0.
    booster = models / "xgb" / "estimator" / "booster.ubj"
    data = bytearray(booster.read_bytes())
    data[offset : offset + 4] = bytes(b ^ 0xFF for b in data[offset : offset + 4])
    booster.write_bytes(bytes(data))

    commands = [["classify", a_cover(covers5_dir), "--model", "xgb"]] + ([["evaluate", "--model", "xgb"]] if offset == 29990 else [])
    for args in commands:
        run = cli_subprocess(store, models, *args)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
        assert lines == [lines[0]] and lines[0].startswith("error: model 'xgb'"), run.stderr
        assert "estimator/booster.ubj is corrupt" in lines[0]


def test_serve_skips_and_reports_a_model_that_fails_its_check(store, models):
    from coversearch.web.app import Engine

    labels = models / "knn" / "estimator" / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:-8])  # truncated
    engine = Engine(store, models)
    try:
        assert set(engine.snapshot.models) == {"xgb"}
        assert "labels.npy is truncated" in engine.snapshot.broken_models["knn"]
    finally:
        engine.close()


def test_edited_or_mixed_up_model_files_are_one_clear_error(cli_on, covers5_dir):
    cover = a_cover(covers5_dir)
    card_path = cli_on.model_dir / "xgb" / CARD
    card = json.loads(card_path.read_text())
    card["classes"] = card["classes"][::-1]  # a reversed genre list would mislabel every answer
    card_path.write_text(json.dumps(card, indent=2))
    one_line_error(cli_on("classify", cover, "--model", "xgb"), "card.json was edited or damaged")

    labels = cli_on.model_dir / "knn" / "estimator" / "labels.npy"
    stored = np.load(labels)
    np.save(labels, np.roll(stored, 1))  # same size, permuted
    one_line_error(cli_on("evaluate", "--model", "knn"), "estimator/labels.npy is corrupt")

    listed = json.loads(cli_on("models", "list", "--json").stdout)
    problems = {m["name"]: m["files"] for m in listed}
    assert "edited or damaged" in problems["xgb"] and "corrupt" in problems["knn"]


def test_a_model_saved_before_checksums_still_loads_as_unverified(cli_on, covers5_dir):
    card_path = cli_on.model_dir / "knn" / CARD
    card = json.loads(card_path.read_text())
    for key in ("files", "card_sha256"):
        card.pop(key)
    card_path.write_text(json.dumps(card, indent=2))
    assert TrainedModel.load(cli_on.model_dir, "knn").verified is False
    result = cli_on("classify", a_cover(covers5_dir), "--model", "knn", "--json")
    assert result.exit_code == 0, result.stderr
    assert "note: model 'knn' was saved before coversearch recorded file checksums" in result.stderr
    listed = {m["name"]: m["files"] for m in json.loads(cli_on("models", "list", "--json").stdout)}
    assert listed == {"knn": "unverified", "xgb": "verified"}
    # Half a record is not an old model but an edited one.
    card["files"] = {}
    card_path.write_text(json.dumps(card, indent=2))
    with pytest.raises(ModelError, match="edited or damaged"):
        TrainedModel.load(cli_on.model_dir, "knn")


# -- 7, 10, 12: what train is asked, checked before any work ---------------------------------------
@pytest.mark.parametrize(
    "args, needles",
    [
        (["--method", "xgboost", "-f", "hsv", "-p", "n_estimators=-1"], ["xgboost parameter n_estimators=-1", ">= 1"]),
        (["--method", "xgboost", "-f", "hsv", "-p", "n_estimators=many"], ["n_estimators='many'", "an integer"]),
        (["--method", "xgboost", "-f", "hsv", "-p", "subsample=0"], ["subsample=0", "> 0"]),
        (["--method", "dense", "-f", "hsv", "-p", "dropout=1.5"], ["dense parameter dropout=1.5", "< 1"]),
        (["--method", "knn", "-f", "hsv", "-p", "k=0"], ["knn parameter k=0"]),
        (["--method", "ensemble", "-f", "hsv", "-p",
          'members=[{"method": "xgboost", "params": {"max_depth": -2}, "columns": [0, 512]}]'], ["max_depth=-2"]),
        (["--method", "bogus"], ["unknown method 'bogus'"]),
        (["--method", "xgboost", "-f", "hsv", "--name", "./../escaped"], ["bad model name"]),
        (["--method", "xgboost", "-f", "hsv", "--name", "../../evil"], ["bad model name"]),
    ],
)
def test_train_refuses_bad_methods_parameters_and_names_first(cli_on, args, needles):
    before = sorted(p.name for p in cli_on.model_dir.parent.rglob("*"))
    one_line_error(cli_on("train", *args), *needles)
    assert sorted(p.name for p in cli_on.model_dir.parent.rglob("*")) == before  # nothing written anywhere


def test_classify_refuses_a_model_name_that_leaves_the_model_folder(cli_on, covers5_dir):
    one_line_error(cli_on("classify", a_cover(covers5_dir), "--model", "../models/xgb"), "bad model name")


def test_models_list_names_the_folder_so_a_copy_is_its_own_model(cli_on, covers5_dir):
    shutil.copytree(cli_on.model_dir / "xgb", cli_on.model_dir / "xgb-copy")
    listed = json.loads(cli_on("models", "list", "--json").stdout)
    assert sorted(m["name"] for m in listed) == ["knn", "xgb", "xgb-copy"]
    assert {m["name"]: m["card_name"] for m in listed}["xgb-copy"] == "xgb"
    assert "xgb-copy (card: xgb)" in cli_on("models", "list").stdout
    result = cli_on("classify", a_cover(covers5_dir), "--model", "xgb-copy", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["model"] == "xgb-copy"


# -- 11: leftovers of killed builds ---------------------------------------------------------------
KILLED_BUILD = """
import os, signal, sys
from coversearch.fsutil import staged_folder
with staged_folder(sys.argv[1], sys.argv[2]) as staging:
    (staging / "half-written").write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_build(parent: Path, name: str) -> Path:
    run = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(parent), name], env={**os.environ, "PYTHONPATH": str(REPO)},
                         timeout=60)
    assert run.returncode == -9
    (left,) = [p for p in parent.iterdir() if p.name.startswith(f".{name}.staging-")]
    return left


def test_leftovers_of_killed_builds_are_listed_then_cleaned_by_the_next_build(cli_on):
    models, indexes = cli_on.model_dir, cli_on.index_dir
    dead_model = killed_build(models, "xgb")
    dead_index = killed_build(indexes, "hsv-exact")
    # Written before process ids were part of the name: age decides (older than this process).
    old = indexes / ".hsv-exact.old-1a2b3c4d"
    old.mkdir()
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    recent = models / ".knn.staging-abc123_x"  # as new as this process: maybe a build still running
    recent.mkdir()

    shown = cli_on("models", "list", "--json").stderr.splitlines()
    assert sorted(shown) == sorted([
        f"leftover {dead_model.name}: unfinished build of 'xgb' (removed by the next build)",
        f"leftover {recent.name}: unfinished build of 'knn' (held by a running process)",
    ])
    listed = json.loads(cli_on("index", "list", "--json").stdout)["leftovers"]
    assert {lo["folder"] for lo in listed} == {dead_index.name, old.name}

    assert cli_on("index", "build", "--feature", "hsv", "--kind", "exact").exit_code == 0
    assert not dead_index.exists() and not old.exists()
    assert cli_on("train", "--method", "knn", "-f", "hsv", "-p", "index_kind=exact", "--name", "knn2").exit_code == 0
    assert not dead_model.exists() and recent.exists()
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == [recent.name]


# -- 8, 9: only ingest (and db upgrade) create or change a store -----------------------------------
def digest(path: Path) -> bytes:
    return path.read_bytes()


def test_commands_refuse_a_foreign_duckdb_file_and_leave_it_byte_identical(tmp_path, covers5_dir):
    foreign = tmp_path / "other.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE invoices (id INTEGER, total DOUBLE)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.close()
    before = digest(foreign)
    cli = Cli(foreign, tmp_path / "indexes", tmp_path / "models")
    for args in (["stats"], ["db", "revision"], ["similar", a_cover(covers5_dir), "-f", "hsv"], ["train", "--method", "knn", "-f", "hsv"],
                 ["split", "make"], ["index", "build", "--feature", "hsv", "--kind", "exact"], ["db", "upgrade"]):
        one_line_error(cli(*args), "not a coversearch store", "invoices")
        assert digest(foreign) == before, args
    with pytest.raises(StoreError, match="not a coversearch store"):
        Store.open(foreign)
    assert digest(foreign) == before


def test_readers_never_migrate_an_older_store(tmp_path):
    path = tmp_path / "old.duckdb"
    migrate.upgrade(path, "0001")
    before = digest(path)
    cli = Cli(path, tmp_path / "indexes", tmp_path / "models")
    one_line_error(cli("stats"), "schema revision 0001", "coversearch db upgrade")
    assert digest(path) == before
    assert cli("db", "upgrade").exit_code == 0
    assert json.loads(cli("stats", "--json").stdout)["schema_revision"] == migrate.head_revision()


@pytest.mark.parametrize("args", [["train"], ["train", "--method", "knn", "-f", "hsv"], ["split", "make"], ["stats"]])
def test_only_ingest_creates_a_store(tmp_path, args):
    cli = Cli(tmp_path / "missing.duckdb", tmp_path / "indexes", tmp_path / "models")
    one_line_error(cli(*args), "no store at")
    assert not cli.db.exists() and not cli.model_dir.exists()


# -- 13: a store held by an ingest -----------------------------------------------------------------
def test_readers_are_told_an_ingest_holds_the_store(tmp_path, covers5_dir, monkeypatch):
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0")  # readers wait 30 s for a writer by default: meet it at once here
    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=200)
    cli = Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models")
    assert cli("db", "upgrade").exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-m", "coversearch.cli.main", "--db", str(cli.db), "ingest", str(root), "--features", "hsv",
         "--batch-size", "8", "--quiet"],
        env=env, cwd=REPO, stderr=subprocess.PIPE, text=True,
    )
    wal = Path(f"{cli.db}.wal")  # appears with the ingest's first commit: it holds the store from then on
    try:
        deadline = time.time() + 120
        while writer.poll() is None and not wal.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert wal.exists(), "the ingest never wrote"
        result = cli("stats", "--json")
        assert writer.poll() is None, "the ingest ended before the reader met it"
        line = one_line_error(result, f"an ingest (PID {writer.pid}) is writing store", "retry when it finishes")
        assert "one writer at a time" not in line
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0, writer.stderr.read()
    assert json.loads(cli("stats", "--json").stdout)["albums"] > 900


# -- 2, 3: ingest reads only regular files of sane size; bad manifest rows are rows ---------------
def test_pipes_devices_and_huge_files_become_error_rows_and_the_run_completes(tmp_path, covers5_dir):
    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=2)
    os.mkfifo(root / "Rock" / "pipe.jpg")
    (root / "Pop" / "zero.jpg").symlink_to("/dev/zero")
    with open(root / "Country" / "huge.jpg", "wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: 200 MB by stat, no disk used
    db = tmp_path / "store.duckdb"
    run = cli_subprocess(db, tmp_path / "models", "ingest", root, "--features", "hsv", "--json", timeout=120, memory_gib=3)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["files_added"] == 10 and summary["errors_by_reason"] == {"not-a-file": 2, "too-large": 1}
    with Store.open(db, read_only=True) as s:
        rows = dict(s.con.execute("SELECT path, reason || ': ' || detail FROM ingest_errors").fetchall())
    assert "named pipe" in rows[str(root / "Rock" / "pipe.jpg")]
    assert "character device" in rows[str(root / "Pop" / "zero.jpg")]
    assert "209,715,200 bytes" in rows[str(root / "Country" / "huge.jpg")]

    small = Cli(tmp_path / "small.duckdb", tmp_path / "indexes", tmp_path / "models")
    result = small("ingest", root, "--features", "hsv", "--max-file-bytes", "1000", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["errors_by_reason"]["too-large"] == 11


def test_a_manifest_row_with_a_nul_byte_is_an_error_row_and_the_valid_rows_are_stored(tmp_path, covers5_dir):
    covers = sorted((covers5_dir / "Pop").iterdir())[:3]
    manifest = tmp_path / "covers.csv"
    lines = ["path,genre", f"{covers[0]},Pop", f"{covers[1]}\0.jpg,Pop", f"{covers[2]},Pop", f"{covers5_dir / 'Pop'},Pop"]
    manifest.write_text("\n".join(lines) + "\n")
    cli = Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models")
    result = cli("ingest", manifest, "--features", "hsv", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["albums_added"] == 2 and summary["errors_by_reason"] == {"bad-manifest-line": 1, "not-a-file": 1}
    with Store.open(cli.db, read_only=True) as s:
        rows = set(s.con.execute("SELECT path, detail FROM ingest_errors").fetchall())
    assert rows == {(str(covers5_dir / "Pop"), "a folder, not a regular file"), (f"{manifest}:3", "NUL byte in the line")}


# -- 4: 16-bit images ------------------------------------------------------------------------------
def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_a_16_bit_png_lands_next_to_its_8_bit_twin(covers5_dir):
    grey8 = np.asarray(Image.open(a_cover(covers5_dir)).convert("L"))
    sixteen = Image.fromarray(grey8.astype(np.uint16) * 257)  # the same picture on 16 bits
    assert sixteen.mode == "I;16"
    decoded16, decoded8 = decode_image(encoded(sixteen)), decode_image(encoded(Image.fromarray(grey8)))
    assert decoded16.mode == "I;16"
    np.testing.assert_array_equal(decoded16.rgb, decoded8.rgb)
    as_32_bit = decode_image(encoded(Image.fromarray(grey8.astype(np.int32) * 257), "TIFF"))
    assert as_32_bit.mode == "I"  # 32-bit integers holding 16-bit values
    np.testing.assert_array_equal(as_32_bit.rgb, decoded8.rgb)
    hsv = get_extractor("hsv")
    v16, v8 = extract_images(hsv, [decoded16.rgb, decoded8.rgb])
    assert float(np.linalg.norm(v16 - v8)) < 0.01


# -- 6: index manifests that cannot be read ---------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "not-json", "missing", "no-files"])
def test_an_index_with_an_unreadable_manifest_is_reported_not_skipped(cli_on, covers5_dir, damage):
    assert cli_on("index", "build", "--feature", "hsv", "--kind", "faiss-hnsw").exit_code == 0
    manifest = cli_on.index_dir / "hsv-faiss-hnsw" / "manifest.json"
    if damage == "empty":
        manifest.write_text("")
    elif damage == "not-json":
        manifest.write_text("{\"format_version\": 1,")
    elif damage == "missing":
        manifest.unlink()
    else:
        data = json.loads(manifest.read_text())
        data["files"] = {}
        manifest.write_text(json.dumps(data))
    result = cli_on("similar", a_cover(covers5_dir), "-f", "hsv", "-k", "3")
    if damage == "no-files":
        one_line_error(result, "index 'hsv-faiss-hnsw' records no checksum for ids.npy, index.faiss")
    else:
        one_line_error(result, "index 'hsv-faiss-hnsw'", "exists but is unreadable")
