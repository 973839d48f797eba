"""Parquet out and in: export round-trips bit-identically; bad files change nothing; the index
layer, `similar` and the classifiers use an imported feature set like any other."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

from conftest import copy_covers
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store


@pytest.fixture(scope="module")
def hsv_covers(tmp_path_factory, covers5_dir):
    """12 real covers per genre (60 files, 59 albums), ingested with hsv: the store file and its folder."""
    base = tmp_path_factory.mktemp("parquet")
    root = copy_covers(covers5_dir, base / "covers", per_genre=12, offset=200)
    db = base / "hsv.duckdb"
    with Store.open(db) as store:
        ingest(store, read_folder(root), [get_extractor("hsv")])
    return db, root


@pytest.fixture
def store_cli(cli, hsv_covers):
    cli.db.write_bytes(hsv_covers[0].read_bytes())
    return cli


def exported(path) -> dict[str, np.ndarray]:
    con = duckdb.connect()
    cols = con.execute("SELECT * FROM read_parquet(?) ORDER BY album_id", [str(path)]).fetchnumpy()
    cols["vector"] = np.stack(cols["vector"]).astype(np.float32)
    return cols


def snapshot(db) -> dict:
    """Everything an import could change: feature sets and every table's rows."""
    with Store.open(db, read_only=True) as store:
        tables = [t for (t,) in store.con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        return {t: store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}


def test_export_then_import_round_trips_bit_identically(store_cli, tmp_path):
    out = tmp_path / "hsv.parquet"
    result = store_cli("export", "--feature", "hsv", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    first = exported(out)
    n = len(first["album_id"])
    assert json.loads(result.stdout)["rows"] == n == 59  # 60 files, one pair of them the same bytes
    assert set(first) == {"album_id", "sha256", "path", "genres", "vector"}
    assert all(len(g) >= 1 for g in first["genres"])

    result = store_cli("import", out, "--feature", "hsv-copy", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["dim"], summary["metric"], summary["matched_by"]) == (n, 512, "euclidean", "sha256")

    again = tmp_path / "copy.parquet"
    assert store_cli("export", "--feature", "hsv-copy", "--out", again).exit_code == 0
    second = exported(again)
    assert first["vector"].tobytes() == second["vector"].tobytes()
    for column in ("album_id", "sha256", "path"):
        assert list(first[column]) == list(second[column])
    assert [list(g) for g in first["genres"]] == [list(g) for g in second["genres"]]
    with Store.open(store_cli.db, read_only=True) as store:
        a = store.load_embeddings(store.feature_set("hsv"))
        b = store.load_embeddings(store.feature_set("hsv-copy"))
        assert np.array_equal(a[0], b[0]) and a[1].tobytes() == b[1].tobytes()

    # Importing the same file again adds nothing and changes nothing.
    before = snapshot(store_cli.db)
    result = store_cli("import", out, "--feature", "hsv-copy", "--json")
    assert result.exit_code == 0, result.stderr
    assert (json.loads(result.stdout)["added"], json.loads(result.stdout)["unchanged"]) == (0, n)
    assert snapshot(store_cli.db) == before


def test_import_matches_by_path_and_extends_a_set(store_cli, tmp_path):
    """Vectors from another model (here: a random projection), keyed by file path, in two parts."""
    with Store.open(store_cli.db, read_only=True) as store:
        ids, hsv = store.load_embeddings(store.feature_set("hsv"))
        paths = dict(store.con.execute("SELECT album_id, path FROM album_files").fetchall())
    vectors = (hsv @ np.random.default_rng(0).standard_normal((512, 32))).astype(np.float32)
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest($1) AS path, unnest($2) AS vector", [[paths[i] for i in ids], vectors])
    for part, where in (("a", "rowid < 40"), ("b", "rowid >= 20")):  # 20 rows in both
        con.execute(f"COPY (SELECT * FROM v WHERE {where}) TO '{tmp_path / part}.parquet' (FORMAT parquet)")
    result = store_cli("import", tmp_path / "a.parquet", "--feature", "proj32", "--model-fingerprint", "proj:0", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["matched_by"] == "path" and json.loads(result.stdout)["added"] == 40
    result = store_cli("import", tmp_path / "b.parquet", "--feature", "proj32", "--model-fingerprint", "proj:0", "--json")
    assert (json.loads(result.stdout)["added"], json.loads(result.stdout)["unchanged"]) == (len(ids) - 40, 20)
    with Store.open(store_cli.db, read_only=True) as store:
        fs = store.feature_set("proj32")
        assert (fs.dim, fs.model_fingerprint, fs.params["metric"]) == (32, "proj:0", "cosine")
        got_ids, got = store.load_embeddings(fs)
        assert np.array_equal(got_ids, ids) and np.array_equal(got, vectors)


def test_similar_index_and_classifiers_use_an_imported_feature(store_cli, tmp_path, covers5_dir):
    out = tmp_path / "hsv.parquet"
    assert store_cli("export", "--feature", "hsv", "--out", out).exit_code == 0
    assert store_cli("import", out, "--feature", "colour").exit_code == 0

    def neighbours(feature: str, *extra: str) -> list[int]:
        result = store_cli("similar", "--album", "7", "--feature", feature, "-k", "5", "--json", *extra)
        assert result.exit_code == 0, result.stderr
        return [hit["album_id"] for hit in json.loads(result.stdout)["results"]]

    # The imported copy of hsv carries hsv's metric, so exact search gives hsv's own answer.
    assert neighbours("colour") == neighbours("hsv")
    assert neighbours("colour")[0] == 7
    built = store_cli("index", "build", "--feature", "colour", "--kind", "faiss-hnsw", "--json")
    assert built.exit_code == 0, built.stderr
    assert json.loads(built.stdout)["metric"] == "euclidean"
    assert neighbours("colour", "--index", "colour-faiss-hnsw") == neighbours("hsv")

    query = sorted((covers5_dir / "Rock").iterdir())[0]
    refused = store_cli("similar", query, "--feature", "colour")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: ") and "imported" in refused.stderr and "--album" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    trained = store_cli("train", "--method", "knn", "--feature", "colour", "-p", "index_kind=exact", "--name", "knn-colour", "--json")
    assert trained.exit_code == 0, trained.stderr
    evaluated = store_cli("evaluate", "--model", "knn-colour", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    refused = store_cli("classify", query, "--model", "knn-colour")
    assert refused.exit_code == 1 and "imported" in refused.stderr


def _write(con, path, sql: str) -> None:
    con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")


BAD_INPUTS = {
    # name: (SELECT over the exported file `e`, import options, text the error must contain)
    "unknown-album": ("SELECT sha256, vector FROM e UNION ALL SELECT repeat('0', 64), vector FROM e WHERE album_id = 1",
                      [], "name no album in the store"),
    "ragged": ("SELECT sha256, CASE WHEN album_id = 5 THEN vector[1:100] ELSE vector END AS vector FROM e", [],
               "different lengths"),
    "nan": ("SELECT sha256, CASE WHEN album_id = 3 THEN list_transform(vector, lambda x: 'nan'::FLOAT) "
            "ELSE vector END AS vector FROM e", [], "NaN, infinite"),
    "inf": ("SELECT sha256, CASE WHEN album_id = 3 THEN list_transform(vector, lambda x: x + 'inf'::FLOAT) "
            "ELSE vector END AS vector FROM e", [], "NaN, infinite"),
    "null-vector": ("SELECT sha256, CASE WHEN album_id = 4 THEN NULL ELSE vector END AS vector FROM e", [], "no vector"),
    "no-vector-column": ("SELECT sha256, vector AS embedding FROM e", [], "no 'vector' column"),
    "no-key-column": ("SELECT album_id, vector FROM e", [], "neither a 'sha256' nor a 'path'"),
    "text-vector": ("SELECT sha256, 'abc' AS vector FROM e", [], "not a list of numbers"),
    "two-vectors-one-album": ("SELECT sha256, vector FROM e UNION ALL "
                              "SELECT sha256, list_transform(vector, lambda x: x + 1) FROM e WHERE album_id = 2", [],
                              "different vectors"),
    "empty": ("SELECT sha256, vector FROM e WHERE false", [], "no rows"),
    "dim-clash": ("SELECT sha256, vector[1:64] AS vector FROM e", [], "exists with dim 512"),
    "metric-clash": ("SELECT sha256, vector FROM e", ["--metric", "cosine"], "exists with dim 512, metric euclidean"),
    "other-vectors": ("SELECT sha256, list_transform(vector, lambda x: x * 2) AS vector FROM e", [],
                      "already have other"),
    "builtin-name": ("SELECT sha256, vector FROM e", ["--feature", "vgg16"], "computed by coversearch itself"),
    "not-parquet": (None, [], "cannot read"),
}


def test_bad_parquet_inputs_each_give_one_clear_error_and_change_nothing(store_cli, tmp_path):
    good = tmp_path / "hsv.parquet"
    assert store_cli("export", "--feature", "hsv", "--out", good).exit_code == 0
    assert store_cli("import", good, "--feature", "colour").exit_code == 0  # "colour" exists for the clash cases
    con = duckdb.connect()
    con.execute(f"CREATE VIEW e AS SELECT * FROM read_parquet('{good}')")
    before = snapshot(store_cli.db)
    for name, (sql, options, needle) in BAD_INPUTS.items():
        path = tmp_path / f"{name}.parquet"
        if sql is None:
            path.write_bytes(b"PAR1 this is not really parquet")
        else:
            _write(con, path, sql)
        args = ["import", path, *(options if "--feature" in options else ["--feature", "colour", *options])]
        result = store_cli(*args)
        assert result.exit_code == 1, (name, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (name, result.stderr)
        assert snapshot(store_cli.db) == before, name
