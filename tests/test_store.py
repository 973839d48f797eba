"""The DuckDB store: migrations, opening rules, embeddings round trip and fingerprints."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pytest

from coversearch.errors import StoreError
from coversearch.features.base import extract_images
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store, migrate


def test_a_store_made_at_the_first_schema_upgrades_without_losing_rows(tmp_path, small_covers):
    path = tmp_path / "old.duckdb"
    migrate.upgrade(path, "0001")
    con = duckdb.connect(str(path))
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    con.execute(
        "INSERT INTO albums VALUES (1, 'aa', '/covers/Pop/a.jpg', NULL, 'Artist', 'Title', 300, 300, 'JPEG', now()),"
        " (2, 'bb', '/covers/Rock/b.jpg', NULL, NULL, NULL, 350, 350, 'PNG', now())"
    )
    con.execute("INSERT INTO album_genres VALUES (1, 'Pop'), (1, 'Rock'), (2, 'Rock')")
    con.close()

    with Store.open(path) as store:
        assert store.schema_revision() == migrate.head_revision()
        rows = store.con.execute("SELECT id, sha256, artist, width FROM albums ORDER BY id").fetchall()
        assert rows == [(1, "aa", "Artist", 300), (2, "bb", None, 350)]
        assert store.genres_by_album() == {1: ["Pop", "Rock"], 2: ["Rock"]}
        # 0002 backfills one file row per album from its source path.
        assert store.known_files() == {"/covers/Pop/a.jpg": 1, "/covers/Rock/b.jpg": 2}
        # And the upgraded store takes new ingests on top of the old rows.
        summary = ingest(store, read_folder(small_covers), [get_extractor("hsv")])
        assert summary.counts.albums > 0
        assert store.stats()["albums"] == 2 + summary.counts.albums


def test_a_read_only_open_never_upgrades_an_old_store(tmp_path):
    path = tmp_path / "old.duckdb"
    migrate.upgrade(path, "0001")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="coversearch db upgrade"):
        Store.open(path, read_only=True)
    assert path.read_bytes() == before
    Store.open(path).close()  # a writer upgrades it
    with Store.open(path, read_only=True) as store:
        assert store.read_only and store.schema_revision() == migrate.head_revision()


def test_opening_rules(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "no" / "such" / "dir" / "s.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_text("this is not a database\n")
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open(junk)
    assert junk.read_text() == "this is not a database\n"  # untouched


def test_a_store_held_by_another_process_is_a_clear_error(tmp_path):
    path = tmp_path / "busy.duckdb"
    Store.open(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=f"in use by another process \\(PID {holder.pid}: .*python"):
            Store.open(path)
    finally:
        holder.kill()
        holder.wait()
    Store.open(path).close()  # usable again once the other process is gone


def test_embeddings_round_trip_exactly_and_fingerprint_tracks_changes(tmp_path, small_covers, covers5_dir):
    hsv = get_extractor("hsv")
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_folder(small_covers), [hsv])
        fs = store.feature_set("hsv")
        before = store.embedding_fingerprint(fs)
        ids, vectors = store.load_embeddings(fs)
        assert vectors.shape == (len(ids), 512) and vectors.dtype == np.float32
        assert len(ids) == store.stats()["albums"]
        # The stored vector of an album equals the one computed from its file now.
        album = store.albums([int(ids[0])])[int(ids[0])]
        direct = extract_images(hsv, [decode_image(read_bytes(album["path"])).rgb])[0]
        np.testing.assert_array_equal(vectors[0], direct)
        # A subset by id.
        sub_ids, sub_vectors = store.load_embeddings(fs, album_ids=ids[:3])
        np.testing.assert_array_equal(sub_ids, ids[:3])
        np.testing.assert_array_equal(sub_vectors, vectors[:3])
        assert store.embedding_fingerprint(fs) == before  # reading changes nothing

        extra = tmp_path / "extra" / "Rock"
        extra.mkdir(parents=True)
        (extra / "new.jpg").write_bytes(sorted((covers5_dir / "Rock").iterdir())[500].read_bytes())
        ingest(store, read_folder(extra.parent), [hsv])
        assert store.embedding_fingerprint(fs) != before
