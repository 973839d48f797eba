"""Hostile and careless use of the CLI, as issue 26 found it (points 1-3, 7, 9-11, 15, 17-20).

Real files throughout: named pipes, sockets, device nodes, symlinks, /proc, a damaged Parquet
file, flat-colour covers next to real covers5 covers.  Each case gets one clear ``error:`` line
and changes nothing it should not; what could hang or eat memory (a pipe, /dev/zero) runs in a
subprocess with a timeout and a memory cap.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, Cli, copy_covers, one_line_error, run_cli
from coversearch.classify.recipes import Recipe
from coversearch.classify.split import make_split
from coversearch.classify.train import train_model
from coversearch.features.registry import get_extractor
from coversearch import metrics
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store

GENRE_COUNT = 5
PER_GENRE = 8


@pytest.fixture(scope="module")
def base(tmp_path_factory, covers5_dir):
    """A real hsv + phash store of 40 covers (8 per genre) with its split and a small xgboost model."""
    folder = tmp_path_factory.mktemp("hardening-cli")
    root = copy_covers(covers5_dir, folder / "covers", per_genre=PER_GENRE, offset=400)
    db, models = folder / "store.duckdb", folder / "models"
    with Store.open(db) as store:
        ingest(store, read_folder(root), [get_extractor("hsv"), get_extractor("phash")])
        make_split(store)
        train_model(store, models, Recipe("xgb", "xgboost", ("hsv",), {"n_estimators": 5}), name="xgb")
    return folder, root


@pytest.fixture
def cli(base, tmp_path) -> Cli:
    """A private copy of the store and model."""
    folder, _ = base
    shutil.copy(folder / "store.duckdb", tmp_path / "store.duckdb")
    shutil.copytree(folder / "models", tmp_path / "models")
    return Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models")


def ok_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def album_count(cli: Cli) -> int:
    return ok_json(cli("stats", "--json"))["albums"]


def store_rows(db: Path) -> dict[str, list]:
    """Every row of the tables a curation or import may touch."""
    with Store.open(db, read_only=True) as store:
        tables = ["albums", "album_genres", "album_files", "feature_sets", *(fs.table for fs in store.feature_sets())]
        return {t: sorted(map(str, store.con.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


def a_cover(covers5_dir, genre: str = "Rock") -> Path:
    return sorted((covers5_dir / genre).iterdir())[3]


def cli_subprocess(db: Path, *args, timeout: float = 120, memory_gib: float | None = None) -> subprocess.CompletedProcess:
    """The CLI in its own interpreter, with a timeout and (``memory_gib``) an address-space cap."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    limit = None
    if memory_gib is not None:
        cap = int(memory_gib * 1024**3)
        limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # noqa: E731
    argv = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, preexec_fn=limit)


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1: remove refuses empty and root-like selectors, and asks before taking more than 10% -----------
def test_remove_refuses_empty_and_root_selectors(cli):
    for selector in ("", "/", "//", " "):
        one_line_error(cli("remove", "--path", selector), "--path")
        one_line_error(cli("remove", "--path", selector, "--dry-run"), "--path")
    one_line_error(cli("remove", "--genre", ""), "--genre")
    assert album_count(cli) == GENRE_COUNT * PER_GENRE


def test_remove_of_more_than_a_tenth_says_how_many_and_needs_yes(cli, base):
    _, root = base
    total = GENRE_COUNT * PER_GENRE
    line = one_line_error(cli("remove", "--genre", "Rock"), f"{PER_GENRE} of {total} albums", "--yes")
    assert "20%" in line
    one_line_error(cli("remove", "--path", root), f"{total} of {total} albums", "--yes")
    assert album_count(cli) == total
    # A dry run needs no --yes and still says what it would do.
    plan = ok_json(cli("remove", "--genre", "Rock", "--dry-run", "--json"))
    assert len(plan["album_ids"]) == PER_GENRE and plan["applied"] is False
    # One album of 40 is under the share: no --yes needed.
    assert ok_json(cli("remove", "--album", 1, "--json"))["applied"] is True
    done = ok_json(cli("remove", "--genre", "Rock", "--yes", "--json"))
    assert done["applied"] is True and album_count(cli) == total - 1 - PER_GENRE


# -- 2, 11: outputs are regular files, checked before the work -------------------------------------
def _evaluate(cli, out):
    return cli("evaluate", "--model", "xgb", "--png", out)


def _explain(cli, out, cover):
    return cli("classify", cover, "--model", "xgb", "--explain", out)


OUTPUTS = {
    "export": lambda cli, out, cover: cli("export", "--feature", "hsv", "--out", out),
    "map": lambda cli, out, cover: cli("map", "--feature", "hsv", "--method", "pca", "--no-thumbs", "--out", out),
    "dedupe": lambda cli, out, cover: cli("dedupe", "-f", "phash", "-q", "--csv", out),
    "evaluate": lambda cli, out, cover: _evaluate(cli, out),
    "explain": _explain,
    "report": lambda cli, out, cover: cli("report", "--per-genre", 1, "--queries", 1, "--out", out),
}


def _special_files(folder: Path) -> dict[str, Path]:
    """A named pipe, a socket, a folder, a symlink to a regular file and (as root) a device node."""
    made = {}
    made["fifo"] = folder / "pipe"
    os.mkfifo(made["fifo"])
    made["socket"] = folder / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(made["socket"]))
    server.close()
    made["folder"] = folder / "dir"
    made["folder"].mkdir()
    (folder / "target.bin").write_bytes(b"keep me")
    made["symlink"] = folder / "link"
    made["symlink"].symlink_to(folder / "target.bin")
    if os.geteuid() == 0:
        made["device"] = folder / "null-device"
        os.mknod(made["device"], stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return made


def _kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return next(name for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                                        (stat.S_ISDIR, "folder"), (stat.S_ISCHR, "device"), (stat.S_ISREG, "file")) if test(mode))


@pytest.mark.parametrize("command", OUTPUTS)
def test_outputs_refuse_pipes_sockets_devices_folders_and_symlinks(cli, covers5_dir, tmp_path, command):
    folder = tmp_path / "outs"
    folder.mkdir()
    made = _special_files(folder)
    for kind, path in made.items():
        result = OUTPUTS[command](cli, path, a_cover(covers5_dir))
        line = one_line_error(result, str(path))
        assert result.stdout == "", (command, kind, result.stdout)  # refused before any work or output
        assert _kind(path) == kind, (command, kind, line)
    assert (folder / "target.bin").read_bytes() == b"keep me"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in made.values()), "target.bin"])  # no temporary left


@pytest.mark.parametrize("command", OUTPUTS)
def test_unwritable_outputs_are_one_line_before_the_work(cli, covers5_dir, command):
    result = OUTPUTS[command](cli, Path("/proc") / f"coversearch-{command}.out", a_cover(covers5_dir))
    one_line_error(result, "cannot write", f"/proc/coversearch-{command}.out")
    assert result.stdout == ""


@pytest.mark.parametrize("command", OUTPUTS)
def test_outputs_replace_a_regular_file_whole_with_mode_0644(cli, covers5_dir, tmp_path, command):
    out = tmp_path / f"{command}.out"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    result = OUTPUTS[command](cli, out, a_cover(covers5_dir))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"old" and stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".{command}")) == []


def test_dedupe_csv_to_a_folder_is_one_line(cli, tmp_path):
    one_line_error(cli("dedupe", "-f", "phash", "-q", "--csv", tmp_path), "is a folder")


# -- 3: flat covers are near-duplicates only of covers with the same pixels -------------------------
def _jpeg(path: Path, rgb: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


@pytest.fixture(scope="module")
def flat_store(tmp_path_factory, covers5_dir):
    """Flat and two-tone covers (a 300 px and a 1 px black, a 300 px and a 1 px white, red, two halves)
    among 10 real covers, with phash; returns (db, {name: album id})."""
    folder = tmp_path_factory.mktemp("flat")
    root = copy_covers(covers5_dir, folder / "covers", per_genre=2, offset=700)
    black, white = np.zeros((300, 300, 3), np.uint8), np.full((300, 300, 3), 255, np.uint8)
    left, top = black.copy(), black.copy()
    left[:, 150:] = 255
    top[150:] = 255
    files = {
        "black": _jpeg(root / "Pop" / "black.jpg", black, quality=90),
        "black-1px": _jpeg(root / "Rock" / "black-1px.png", np.zeros((1, 1, 3), np.uint8)),
        "white": _jpeg(root / "Pop" / "white.jpg", white, quality=90),
        "white-1px": _jpeg(root / "Rock" / "white-1px.png", np.full((1, 1, 3), 255, np.uint8)),
        "red": _jpeg(root / "Pop" / "red.png", np.tile(np.array([200, 20, 20], np.uint8), (300, 300, 1))),
        "left-white": _jpeg(root / "Country" / "left.png", left),
        "bottom-white": _jpeg(root / "Country" / "bottom.png", top),
    }
    db = folder / "store.duckdb"
    with Store.open(db) as store:
        ingest(store, read_folder(root), [get_extractor("phash")])
        ids = {name: store.album_id_for_sha256(hashlib.sha256(p.read_bytes()).hexdigest()) for name, p in files.items()}
    return db, ids, files


def test_flat_covers_group_only_with_the_same_pixels(flat_store, tmp_path):
    db, ids, _ = flat_store
    found = ok_json(run_cli("dedupe", "-f", "phash", "--json", db=db, index_dir=tmp_path))
    groups = sorted(sorted(m["album_id"] for m in g["members"]) for g in found["groups"])
    assert sorted([ids["black"], ids["black-1px"]]) in groups
    assert sorted([ids["white"], ids["white-1px"]]) in groups
    for group in groups:
        assert not ({ids["black"], ids["white"]} <= set(group)), groups
        assert not ({ids["left-white"], ids["bottom-white"]} <= set(group)), groups
        assert ids["red"] not in group, groups
    # An explicit, unverified threshold follows the same rule.
    loose = ok_json(run_cli("dedupe", "-f", "phash", "-t", "8", "--json", db=db, index_dir=tmp_path))
    for group in loose["groups"]:
        members = {m["album_id"] for m in group["members"]}
        assert not ({ids["black"], ids["white"]} <= members) and ids["red"] not in members


def test_check_of_a_flat_cover_finds_only_the_same_colour(flat_store, tmp_path):
    db, ids, files = flat_store
    grey = _jpeg(tmp_path / "grey.png", np.full((300, 300, 3), 128, np.uint8))
    assert ok_json(run_cli("check", grey, "-f", "phash", "--json", db=db, index_dir=tmp_path))["verdict"] == "new"
    black = _jpeg(tmp_path / "black-again.png", np.zeros((500, 400, 3), np.uint8))
    check = ok_json(run_cli("check", black, "-f", "phash", "--json", db=db, index_dir=tmp_path))
    assert check["verdict"] == "near-duplicate"
    assert {m["album_id"] for m in check["matches"]} == {ids["black"], ids["black-1px"]}


def test_ingest_reports_a_flat_cover_only_as_a_copy_of_the_same_colour(flat_store, tmp_path):
    db, ids, _ = flat_store
    copy = tmp_path / "store.duckdb"
    shutil.copy(db, copy)
    new = tmp_path / "new"
    _jpeg(new / "Pop" / "grey.png", np.full((300, 300, 3), 128, np.uint8))
    _jpeg(new / "Pop" / "black-again.jpg", np.zeros((320, 320, 3), np.uint8), quality=80)
    result = ok_json(run_cli("ingest", new, "--features", "phash", "--report-duplicates", "--json", db=copy, index_dir=tmp_path))
    found = result["near_duplicates"]["found"]
    assert {Path(d["path"]).name for d in found} == {"black-again.jpg"}, found
    assert {d["duplicate_of"] for d in found} == {ids["black"], ids["black-1px"]}


# -- 7: label --csv reads regular files only, streamed ----------------------------------------------
def test_label_csv_refuses_devices_and_pipes_without_reading(base, tmp_path):
    folder, _ = base
    db = tmp_path / "store.duckdb"
    shutil.copy(folder / "store.duckdb", db)
    one_error_line(cli_subprocess(db, "label", "--csv", "/dev/zero", timeout=60, memory_gib=2), "/dev/zero", "not a regular file")
    pipe = tmp_path / "labels.csv"
    os.mkfifo(pipe)
    one_error_line(cli_subprocess(db, "label", "--csv", pipe, timeout=60, memory_gib=2), "named pipe")


@pytest.mark.slow
def test_label_csv_of_a_million_rows_is_streamed(base, tmp_path):
    folder, _ = base
    db = tmp_path / "store.duckdb"
    shutil.copy(folder / "store.duckdb", db)
    big = tmp_path / "big.csv"
    with open(big, "w") as fh:
        fh.write("album_id,action,genre\n")
        for i in range(1_000_000):
            fh.write(f"{i % 40 + 1},add,Rock\n")
    assert big.stat().st_size > 10_000_000
    # The CLI in a child that reports its own peak resident memory when it ends: VmHWM, which starts
    # afresh at exec (ru_maxrss would keep the forking pytest process's peak).
    probe = ("import re, runpy, sys\n"
             "sys.argv = ['coversearch', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('coversearch.cli.main', run_name='__main__')\n"
             "finally:\n    status = open('/proc/self/status').read()\n"
             "    print('peak-kib', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run([sys.executable, "-c", probe, "--db", str(db), "label", "--csv", str(big), "--dry-run"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_kib = int(proc.stderr.split("peak-kib")[-1].split()[0])
    assert peak_kib < 300 * 1024, f"peak {peak_kib / 1024:.0f} MiB"  # about 160 MiB here; 520 MiB when each row was kept as objects
    assert "would add 32 genre links" in proc.stdout and "; 40 already so" in proc.stdout, proc.stdout


# -- 9: huge ids and ragged CSV rows are one line ----------------------------------------------------
def test_huge_album_ids_and_ragged_rows_are_one_line(cli, tmp_path):
    huge = "99999999999999999999"
    before = store_rows(cli.db)
    one_line_error(cli("remove", "--album", huge), f"no album with id {huge}")
    one_line_error(cli("label", "--album", huge, "--add", "Pop"), f"no album with id {huge}")
    rows = tmp_path / "labels.csv"
    rows.write_text(f"album_id,action,genre\n1,add,Jazz\n{huge},add,Pop\n")
    one_line_error(cli("label", "--csv", rows), "labels.csv line 3", f"no album with id {huge}")
    rows.write_text("album_id,action,genre\n,,,extra\n")
    one_line_error(cli("label", "--csv", rows), "labels.csv line 2", "4 fields", "3")
    rows.write_text("album_id,action,genre\n1,add\n")
    one_line_error(cli("label", "--csv", rows), "labels.csv line 2", "2 fields")
    assert store_rows(cli.db) == before


# -- 10, 19, 20: import refuses damaged pages, huge values, zero vectors, folders --------------------
def _parquet(path: Path, sql: str, **kw) -> Path:
    con = duckdb.connect()
    options = ", ".join(f"{k} {v}" for k, v in {"FORMAT": "parquet", **kw}.items())
    con.execute(f"COPY ({sql}) TO '{path}' ({options})")
    con.close()
    return path


def _sha256s(db: Path) -> list[str]:
    with Store.open(db, read_only=True) as store:
        return [r[0] for r in store.con.execute("SELECT sha256 FROM albums ORDER BY id").fetchall()]


def test_import_of_a_damaged_page_or_huge_values_is_one_line(cli, tmp_path):
    shas = _sha256s(cli.db)
    values = "SELECT sha256, [{x}::DOUBLE, 1.0, 2.0] AS vector FROM (SELECT unnest({shas}) AS sha256)"
    before = store_rows(cli.db)
    huge = _parquet(tmp_path / "huge.parquet", values.format(x="1e300", shas=shas))
    one_line_error(cli("import", huge, "--feature", "ext"), "huge.parquet", "float32")
    good = _parquet(tmp_path / "good.parquet",
                    f"SELECT sha256, [random(), random(), random()] AS vector FROM (SELECT unnest({shas}) AS sha256), range(2000)",
                    COMPRESSION="uncompressed", ROW_GROUP_SIZE=100000)
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = os.urandom(4000)  # a data page, not the footer
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(bytes(data))
    one_line_error(cli("import", damaged, "--feature", "ext"), "damaged.parquet")
    assert store_rows(cli.db) == before


def test_import_refuses_zero_vectors_under_cosine(cli, tmp_path):
    shas = _sha256s(cli.db)
    before = store_rows(cli.db)
    zeros = _parquet(tmp_path / "zeros.parquet",
                     f"SELECT sha256, (CASE WHEN sha256 = '{shas[3]}' THEN [0.0, 0.0, 0.0] ELSE [1.0, 2.0, 3.0] END)::FLOAT[] AS vector "
                     f"FROM (SELECT unnest({shas}) AS sha256)")
    one_line_error(cli("import", zeros, "--feature", "ext", "--metric", "cosine"), "zero", "cosine")
    assert store_rows(cli.db) == before
    # Under the euclidean metric a zero vector is a point like any other.
    assert ok_json(cli("import", zeros, "--feature", "ext", "--metric", "euclidean", "--json"))["added"] == len(shas)


def test_import_of_a_folder_says_it_is_a_folder(cli, tmp_path):
    one_line_error(cli("import", tmp_path, "--feature", "ext"), "is a folder")


# -- 15: commands that change a store refuse a --db that does not exist ------------------------------
def test_changing_commands_refuse_a_missing_store(tmp_path):
    db = tmp_path / "nothing.duckdb"
    labels = tmp_path / "labels.csv"
    labels.write_text("album_id,action,genre\n1,add,Pop\n")
    vectors = _parquet(tmp_path / "v.parquet", "SELECT 'abc' AS sha256, [1.0, 2.0] AS vector")
    for args in (["remove", "--album", 1], ["label", "--album", 1, "--add", "Pop"], ["label", "--csv", labels],
                 ["import", vectors, "--feature", "ext"]):
        one_line_error(run_cli(*args, db=db), f"no store at {db}")
        assert not db.exists() and not Path(f"{db}.wal").exists(), args


# -- 17: CSV parsed strictly, with physical line numbers ---------------------------------------------
def test_label_csv_is_parsed_strictly(cli, tmp_path):
    before = store_rows(cli.db)
    rows = tmp_path / "labels.csv"
    rows.write_text("album_id,action,genre,album_id\n1,add,Jazz,2\n")
    one_line_error(cli("label", "--csv", rows), "album_id", "more than once")
    rows.write_text('album_id,action,genre\n1,add,"Po\np"\n')
    one_line_error(cli("label", "--csv", rows), "labels.csv line 2")
    rows.write_text('album_id,action,genre\n1,add,Jazz\n2,add,"Pop\n')
    one_line_error(cli("label", "--csv", rows), "labels.csv line 3", "quote")
    # U+2028 inside a field is not a line break: the bad row below is line 3 of the file.
    rows.write_text("album_id,action,genre,note\n1,add,Jazz,a\u2028b\n777777,add,Jazz,c\n", encoding="utf-8")
    one_line_error(cli("label", "--csv", rows), "labels.csv line 3", "no album with id 777777")
    rows.write_bytes(b"album_id,action,genre\n1,add,Jazz\n2,add,Jazz\xff\n")
    one_line_error(cli("label", "--csv", rows), "labels.csv line 3", "UTF-8")
    rows.write_bytes(b"album_id,action,genre\r1,add,Jazz\r777777,add,Jazz\r")  # lone \r line ends
    one_line_error(cli("label", "--csv", rows), "labels.csv line 3", "no album with id 777777")
    assert store_rows(cli.db) == before


# -- 18: genre names are normalised and checked in one place ------------------------------------------
def test_genre_names_are_normalised_and_invisible_characters_refused(cli, tmp_path, covers5_dir):
    before = store_rows(cli.db)
    one_line_error(cli("label", "--album", 1, "--add", "Pop\u200b"), "Pop")
    one_line_error(cli("label", "--album", 1, "--add", "P" * 100_000), "long")
    one_line_error(cli("label", "--album", 1, "--add", "Pop\u00a0Rock"), "Pop")
    rows = tmp_path / "labels.csv"
    rows.write_text("album_id,action,genre\n1,add,Ro\u202eck\n", encoding="utf-8")
    one_line_error(cli("label", "--csv", rows), "labels.csv line 2")
    assert store_rows(cli.db) == before
    decomposed = unicodedata.normalize("NFD", "Électronique")
    assert decomposed != "Électronique"
    assert ok_json(cli("label", "--album", 1, "--add", decomposed, "--json"))["added"] == [{"album_id": 1, "genre": "Électronique"}]
    again = ok_json(cli("label", "--album", 1, "--add", "Électronique", "--json"))
    assert again["added"] == [] and len(again["unchanged"]) == 1

    # Ingest: a genre folder with an invisible character, a manifest line with one; the NFD folder name is stored NFC.
    root = tmp_path / "more"
    cover = a_cover(covers5_dir, "Country")
    for genre in ("Pop\u200b", decomposed):
        (root / genre).mkdir(parents=True)
    shutil.copy(cover, root / "Pop\u200b" / "a.jpg")
    shutil.copy(a_cover(covers5_dir, "HipHop"), root / decomposed / "b.jpg")
    summary = ok_json(cli("ingest", root, "--features", "hsv", "--json"))
    assert summary["albums_added"] == 1 and summary["errors_by_reason"] == {"bad-genre": 1}
    with Store.open(cli.db, read_only=True) as store:
        genres = {g for (g,) in store.con.execute("SELECT DISTINCT genre FROM album_genres").fetchall()}
    assert "Électronique" in genres and decomposed not in genres and not any("\u200b" in g for g in genres)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,genre\n{a_cover(covers5_dir, 'Pop')},Pop\u2066\n", encoding="utf-8")
    summary = ok_json(cli("ingest", manifest, "--features", "hsv", "--json"))
    assert summary["albums_added"] == 0 and summary["errors_by_reason"] == {"bad-genre": 1}
    with Store.open(cli.db, read_only=True) as store:
        genres = {g for (g,) in store.con.execute("SELECT DISTINCT genre FROM album_genres").fetchall()}
    assert not any("\u2066" in g for g in genres)


# -- 20: the small things -------------------------------------------------------------------------------
def test_evaluate_png_is_written_at_the_path_given(cli, tmp_path):
    one_line_error(_evaluate(cli, tmp_path), "is a folder")
    assert not (tmp_path.parent / f"{tmp_path.name}.png").exists()
    out = tmp_path / "confusion"  # no suffix: written as given, not as confusion.png
    summary = ok_json(cli("evaluate", "--model", "xgb", "--png", out, "--json"))
    assert summary["confusion_png"] == str(out) and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "confusion.png").exists()


def test_serve_names_a_host_it_cannot_resolve(cli):
    line = one_line_error(cli("serve", "--host", "bad host"), "bad host")
    assert "other machines" not in line and "resolve" in line


def test_distances_are_never_negative_zero():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2000, 64)).astype(np.float32)
    d = metrics.pair_distances(vectors, vectors, metrics.COSINE)
    assert (d >= 0).all() and not np.signbit(d).any()
    assert "-0.0" not in json.dumps([round(float(x), 5) for x in d])
