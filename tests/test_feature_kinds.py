"""What a feature set holds is said once, by ``feature_sets.kind`` ('vector', 'record', 'text'): a
store whose keypoints records were marked the old way (``"storage": "record"`` in their params, kind
'vector', schema 0007) upgrades to 0008, and dedupe still verifies from those records; an upgrade
killed mid-way leaves the store as it was, and it opens."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from coversearch.bench.transforms import MIRROR, TRANSFORMS, transformed_jpeg
from coversearch.dedupe.verify import KeypointCache
from coversearch.errors import StoreError
from coversearch.ingest.readers import read_source
from coversearch.ingest.run import run_ingest
from coversearch.store import Store, migrate
from coversearch.store.rows import RECORD_KIND, TEXT_KIND, VECTOR_KIND
from conftest import link_covers, run_cli

OLD_KEYPOINT_PARAMS = {"storage": "record", "side": 256, "nfeatures": 400, "compare_side": 128}


def kinds(path: Path) -> dict[str, tuple[str, dict]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {name: (kind, json.loads(params)) for name, kind, params in
                con.execute("SELECT name, kind, params FROM feature_sets").fetchall()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def new_store(tmp_path_factory, covers5_dir) -> Path:
    """10 real covers and every transformed copy (mirror aside) of one of them, ingested with phash
    and keypoints; then every file is deleted, so that only the stored records can verify a pair."""
    root = tmp_path_factory.mktemp("kinds")
    folder = link_covers(covers5_dir, root / "covers", 2)
    original = sorted((folder / "Rock").iterdir())[0]
    with Image.open(original) as img:
        for name in TRANSFORMS:
            if name != MIRROR:
                (folder / "Rock" / f"copy-{name}.jpg").write_bytes(transformed_jpeg(img, name))
    db = root / "store.duckdb"
    run_ingest(db, read_source(folder), "phash,keypoints", None)
    shutil.rmtree(folder)
    return db


@pytest.fixture
def old_store(new_store, tmp_path) -> Path:
    """The same store as coversearch wrote it at schema 0007: the keypoints set marked by its params."""
    db = tmp_path / "old.duckdb"
    shutil.copy(new_store, db)
    con = duckdb.connect(str(db))
    con.execute("UPDATE alembic_version SET version_num = '0007'")
    con.execute("UPDATE feature_sets SET kind = 'vector', params = ? WHERE name = 'keypoints'", [json.dumps(OLD_KEYPOINT_PARAMS)])
    con.close()
    return db


def test_a_store_of_schema_0007_upgrades_and_dedupe_verifies_from_its_records(old_store, tmp_path, covers5_dir):
    assert kinds(old_store)["keypoints"] == (VECTOR_KIND, OLD_KEYPOINT_PARAMS)
    with pytest.raises(StoreError, match="coversearch db upgrade"):
        Store.open(old_store, read_only=True)
    with Store.open(old_store) as store:
        assert store.schema_revision() == "0008"
        assert [fs.name for fs in store.feature_sets()] == ["phash"]  # vectors only, unless asked
        (records,) = store.feature_sets(kind=RECORD_KIND)
        assert (records.name, records.kind, records.params) == ("keypoints", RECORD_KIND, {"side": 256, "nfeatures": 400, "compare_side": 128})
        assert store.feature_sets(kind=TEXT_KIND) == []
        cache = KeypointCache(store)
        cache.load(sorted(store.album_ids_by_sha().values()))
        assert cache.decoded == 0 and cache.unreadable == 0

    result = run_cli("dedupe", "-f", "phash", "--json", db=old_store, index_dir=tmp_path / "indexes")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    # Pairs beyond phash's sure distance were verified, every one from a stored record: no file is left.
    assert found["verified_pairs"] > 0
    assert found["decoded_albums"] == 0 and found["unverifiable_albums"] == 0
    assert max(len(g["members"]) for g in found["groups"]) >= 2

    # Today's keypoints extractor adds to the upgraded set: its params and kind are the set's.
    more = tmp_path / "more" / "Pop"
    more.mkdir(parents=True)
    (more / "new.jpg").symlink_to(sorted((covers5_dir / "Pop").iterdir())[-1])
    added = run_cli("ingest", more.parent, "--features", "phash,keypoints", "--quiet", db=old_store)
    assert added.exit_code == 0, added.output
    stats = json.loads(run_cli("stats", "--json", db=old_store).stdout)
    sets = {fs["name"]: (fs["kind"], fs["embeddings"]) for fs in stats["feature_sets"]}
    assert sets == {"keypoints": (RECORD_KIND, stats["albums"]), "phash": (VECTOR_KIND, stats["albums"])}


def test_downgrade_writes_the_old_mark_back(old_store):
    Store.open(old_store).close()
    migrate.downgrade(old_store, "0007")
    assert kinds(old_store)["keypoints"] == (VECTOR_KIND, OLD_KEYPOINT_PARAMS)
    migrate.upgrade(old_store)
    assert kinds(old_store)["keypoints"] == (RECORD_KIND, {"side": 256, "nfeatures": 400, "compare_side": 128})


# Runs the real upgrade in its own process and stops it for good once 0008 has rewritten the set,
# before anything is committed.
KILLED_UPGRADE = """
import sys, time
import sqlalchemy as sa
from coversearch.store import migrate
execute = sa.engine.Connection.execute
def paused(self, statement, *args, **kwargs):
    out = execute(self, statement, *args, **kwargs)
    if "UPDATE feature_sets SET kind = :kind" in str(statement):
        print("rewritten", flush=True)
        time.sleep(120)
    return out
sa.engine.Connection.execute = paused
migrate.upgrade(sys.argv[1])
"""


def test_an_upgrade_killed_mid_way_leaves_a_store_that_opens(old_store, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_UPGRADE, str(old_store)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "rewritten"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert kinds(old_store)["keypoints"] == (VECTOR_KIND, OLD_KEYPOINT_PARAMS)  # as before, whole
    with Store.open(old_store) as store:  # opens, and the next writer completes the upgrade
        assert store.schema_revision() == "0008"
        cache = KeypointCache(store)
        cache.load(sorted(store.album_ids_by_sha().values()))
        assert cache.decoded == 0 and cache.unreadable == 0


def test_imported_vectors_cannot_take_a_record_sets_name(new_store, tmp_path):
    db = tmp_path / "s.duckdb"
    shutil.copy(new_store, db)
    out = tmp_path / "phash.parquet"
    assert run_cli("export", "-f", "phash", "--out", str(out), db=db).exit_code == 0
    refused = run_cli("import", str(out), "--feature", "keypoints", "--match", "sha256", db=db)
    assert refused.exit_code != 0 and "computed by coversearch" in refused.stderr
    assert kinds(db)["keypoints"][0] == RECORD_KIND
