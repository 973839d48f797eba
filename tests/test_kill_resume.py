"""An ingest killed with SIGKILL at any moment leaves a store that opens; a re-run completes it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

from coversearch.store import Store


def expected_counts(root) -> dict[str, int]:
    """What a complete ingest of ROOT/<genre>/<file> must hold, computed from the files."""
    files, genre_links = 0, set()
    for genre in sorted(os.listdir(root)):
        for name in os.listdir(root / genre):
            files += 1
            genre_links.add((hashlib.sha256((root / genre / name).read_bytes()).hexdigest(), genre))
    albums = len({sha for sha, _ in genre_links})
    return {"albums": albums, "album_files": files, "album_genres": len(genre_links), "hsv": albums, "ingest_errors": 0}


def consistent_counts(store: Store) -> dict[str, int]:
    """Table counts, after checking that no batch was half written."""
    one = lambda sql: store.con.execute(sql).fetchone()[0]  # noqa: E731
    if not store.feature_sets():  # killed after the schema was made, before the first batch
        assert one("SELECT count(*) FROM albums") == 0
        return {"albums": 0, "album_files": 0, "album_genres": 0, "ingest_errors": 0, "hsv": 0}
    table = store.feature_set("hsv").table
    assert one("SELECT count(*) - count(DISTINCT sha256) FROM albums") == 0
    # Every album has a file, a genre and its vector, and nothing points at a missing album.
    assert one(f"SELECT count(*) FROM albums WHERE id NOT IN (SELECT album_id FROM {table})") == 0
    assert one("SELECT count(*) FROM albums WHERE id NOT IN (SELECT album_id FROM album_files)") == 0
    assert one("SELECT count(*) FROM albums WHERE id NOT IN (SELECT album_id FROM album_genres)") == 0
    for child in ("album_files", "album_genres", table):
        assert one(f"SELECT count(*) FROM {child} WHERE album_id NOT IN (SELECT id FROM albums)") == 0
    counts = {t: one(f"SELECT count(*) FROM {t}") for t in ("albums", "album_files", "album_genres", "ingest_errors")}
    counts["hsv"] = one(f"SELECT count(*) FROM {table}")
    return counts


def test_kill_9_mid_ingest_then_resume(tmp_path, covers5_dir):
    db = tmp_path / "store.duckdb"
    wal = tmp_path / "store.duckdb.wal"
    command = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "ingest", str(covers5_dir),
               "--features", "hsv", "--batch-size", "8", "--quiet"]
    full = expected_counts(covers5_dir)
    seen_albums = []
    for delay in (0.0, 0.4, 0.9):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not wal.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the write-ahead log appears with the first committed batch
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Store.open(db) as store:  # opens (and replays the log) after every kill
            counts = consistent_counts(store)
        assert counts["albums"] <= full["albums"]
        seen_albums.append(counts["albums"])
    assert any(0 < n < full["albums"] for n in seen_albums), f"no kill landed mid-ingest: {seen_albums}"
    assert seen_albums == sorted(seen_albums)  # each run kept what the previous ones committed

    finish = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr
    with Store.open(db) as store:
        assert consistent_counts(store) == full
