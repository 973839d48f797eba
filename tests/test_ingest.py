"""Ingest on real covers: duplicates, idempotent re-runs, incremental features, bad input, sources."""

from __future__ import annotations

import shutil

import pytest

from badfiles import make_bad_files
from conftest import copy_covers
from coversearch.errors import CoverSearchError
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder, read_source
from coversearch.store import Store


def table_counts(store: Store) -> dict[str, int]:
    counts = {t: store.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("albums", "album_files", "album_genres", "ingest_errors")}
    for fs in store.feature_sets():
        counts[fs.name] = store.con.execute(f"SELECT count(*) FROM {fs.table}").fetchone()[0]
    return counts


@pytest.fixture
def covers_with_duplicates(tmp_path, covers5_dir, cross_genre_duplicates):
    """2 covers per genre, plus 3 cover files filed under both Electronic and Pop, plus one cover
    copied twice within HipHop: 13 distinct byte-contents in 17 files."""
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=2, offset=600)
    for electronic, pop in cross_genre_duplicates:
        shutil.copy(electronic, root / "Electronic" / electronic.name)
        shutil.copy(pop, root / "Pop" / pop.name)
    hiphop = sorted((root / "HipHop").iterdir())[0]
    shutil.copy(hiphop, root / "HipHop" / ("copy-of-" + hiphop.name))
    return root


def test_same_bytes_are_one_album_carrying_every_genre(tmp_path, covers_with_duplicates, cross_genre_duplicates):
    with Store.open(tmp_path / "s.duckdb") as store:
        summary = ingest(store, read_folder(covers_with_duplicates), [get_extractor("hsv")], batch_size=4)
        assert summary.seen == 17
        assert table_counts(store) == {"albums": 13, "album_files": 17, "album_genres": 16, "ingest_errors": 0, "hsv": 13}
        stats = store.stats()
        assert stats["albums_with_several_genres"] == 3
        assert stats["albums_per_genre"] == {"Country": 2, "Electronic": 5, "HipHop": 2, "Pop": 5, "Rock": 2}
        # Each duplicate pair is one album with both genres, reachable from both files.
        files = store.known_files()
        for electronic, pop in cross_genre_duplicates:
            a = files[str(covers_with_duplicates / "Electronic" / electronic.name)]
            b = files[str(covers_with_duplicates / "Pop" / pop.name)]
            assert a == b
            assert store.genres_by_album([a])[a] == ["Electronic", "Pop"]


def test_re_ingest_adds_nothing_and_recomputes_nothing(tmp_path, covers_with_duplicates):
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_folder(covers_with_duplicates), [get_extractor("hsv")])
        before = table_counts(store)
        fingerprint = store.embedding_fingerprint(store.feature_set("hsv"))
        again = ingest(store, read_folder(covers_with_duplicates), [get_extractor("hsv")]).to_dict()
        assert again["albums_added"] == again["files_added"] == again["genre_links_added"] == 0
        assert again["embeddings_added"] == {}
        assert again["unchanged"] == 17
        assert table_counts(store) == before
        assert store.embedding_fingerprint(store.feature_set("hsv")) == fingerprint


def test_adding_a_feature_later_computes_only_what_is_missing(tmp_path, covers_with_duplicates, vgg16_extractor):
    hsv = get_extractor("hsv")
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_folder(covers_with_duplicates), [hsv])
        hsv_fingerprint = store.embedding_fingerprint(store.feature_set("hsv"))
        added = ingest(store, read_folder(covers_with_duplicates), [vgg16_extractor]).to_dict()
        assert added["embeddings_added"] == {"vgg16": 13}  # one per album, not per file
        assert added["albums_added"] == 0
        assert store.embedding_fingerprint(store.feature_set("hsv")) == hsv_fingerprint
        both = ingest(store, read_folder(covers_with_duplicates), [hsv, vgg16_extractor]).to_dict()
        assert both["embeddings_added"] == {} and both["unchanged"] == 17
        assert table_counts(store)["vgg16"] == 13


def test_bad_files_become_error_rows_and_odd_formats_are_ingested(tmp_path, covers5_dir):
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=2, genres=("Rock",))
    expected = make_bad_files(sorted((covers5_dir / "Rock").iterdir())[0], root / "Rock")
    (root / "loose-file.jpg").write_bytes(b"not in a genre folder")
    good = sorted(name for name, reason in expected.items() if reason is None)
    bad = {name: reason for name, reason in expected.items() if reason is not None}

    with Store.open(tmp_path / "s.duckdb") as store:
        summary = ingest(store, read_source(root), [get_extractor("hsv")], batch_size=3).to_dict()
        assert summary["albums_added"] == 2 + len(good)
        errors = dict(store.con.execute("SELECT path, reason FROM ingest_errors").fetchall())
        assert errors == {
            **{str(root / "Rock" / name): reason for name, reason in bad.items()},
            str(root / "loose-file.jpg"): "no-genre",
        }
        assert all(detail for (detail,) in store.con.execute("SELECT detail FROM ingest_errors").fetchall())
        stored = {row[0].rsplit("/", 1)[-1]: row[1] for row in store.con.execute("SELECT source_path, format FROM albums").fetchall()}
        assert {"grey.jpg", "cmyk.jpg", "palette.png", "alpha.png", "palette-alpha.gif", "webp.webp"} <= set(stored)
        assert stored["cmyk.jpg"] == "JPEG" and stored["palette-alpha.gif"] == "GIF"

        # A re-run records the same errors once, not twice.
        ingest(store, read_source(root), [get_extractor("hsv")])
        assert store.con.execute("SELECT count(*) FROM ingest_errors").fetchone()[0] == len(errors)

        # Replace the truncated file with a whole cover: the next run ingests it and clears its error.
        shutil.copy(sorted((covers5_dir / "Rock").iterdir())[900], root / "Rock" / "truncated.jpg")
        fixed = ingest(store, read_source(root), [get_extractor("hsv")]).to_dict()
        assert fixed["albums_added"] == 1
        assert store.con.execute(
            "SELECT count(*) FROM ingest_errors WHERE path = ?", [str(root / "Rock" / "truncated.jpg")]
        ).fetchone()[0] == 0


def test_manifest_with_several_genres_and_metadata(tmp_path, covers5_dir):
    images = tmp_path / "images"
    images.mkdir()
    sources = sorted((covers5_dir / "Country").iterdir())[:2] + sorted((covers5_dir / "Rock").iterdir())[300:301]
    for path in sources:
        shutil.copy(path, images / path.name)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,genres,artist,title,url\n"
        f"images/{sources[0].name},Country;Folk,Ada,First Light,https://example.org/a.jpg\n"
        f"images/{sources[1].name},Country,,,\n"
        f"{images / sources[2].name},Rock|Metal,Bo,,\n"
        "images/missing-genre.jpg,,,,\n"
        "images/not-there.jpg,Pop,,,\n"
    )
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_source(manifest), [get_extractor("hsv")])
        rows = store.con.execute("SELECT source_path, artist, title, source_url FROM albums ORDER BY source_path").fetchall()
        by_name = {r[0].rsplit("/", 1)[-1]: r[1:] for r in rows}
        assert by_name[sources[0].name] == ("Ada", "First Light", "https://example.org/a.jpg")
        assert by_name[sources[2].name] == ("Bo", None, None)
        genres = {store.albums([a])[a]["path"].rsplit("/", 1)[-1]: g for a, g in store.genres_by_album().items()}
        assert genres[sources[0].name] == ["Country", "Folk"]
        assert genres[sources[2].name] == ["Metal", "Rock"]
        errors = dict(store.con.execute("SELECT path, reason FROM ingest_errors").fetchall())
        assert errors == {f"{manifest}:5": "bad-manifest-line", str(images / "not-there.jpg"): "unreadable"}


def test_links_file_resolves_files_under_root(tmp_path, covers5_dir):
    root = copy_covers(covers5_dir, tmp_path / "bandcamp", per_genre=2, genres=("Pop", "Rock"))
    names = {g: sorted(p.name for p in (root / g).iterdir()) for g in ("Pop", "Rock")}
    links = tmp_path / "links.tsv"
    links.write_text(
        f"http://f1.bcbits.com/img/a1_2.jpg\tPop/{names['Pop'][0]}\n"
        f"http://f1.bcbits.com/img/a2_2.jpg\tRock/{names['Rock'][1]}\n"
        "http://f1.bcbits.com/img/a3_2.jpg\t../../etc/passwd\n"
        "this line has no tab\n"
    )
    with Store.open(tmp_path / "s.duckdb") as store:
        summary = ingest(store, read_source(root, links=links), [get_extractor("hsv")]).to_dict()
        assert summary["albums_added"] == 2
        urls = sorted(u for (u,) in store.con.execute("SELECT source_url FROM albums").fetchall())
        assert urls == ["http://f1.bcbits.com/img/a1_2.jpg", "http://f1.bcbits.com/img/a2_2.jpg"]
        reasons = dict(store.con.execute("SELECT path, reason FROM ingest_errors").fetchall())
        assert reasons == {f"{links}:3": "bad-links-line", f"{links}:4": "bad-links-line"}


def test_source_errors(tmp_path):
    with pytest.raises(CoverSearchError, match="no such folder"):
        read_source(tmp_path / "nowhere")
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(CoverSearchError, match="is a file"):
        read_source(tmp_path / "x.bin")
    bad_header = tmp_path / "m.csv"
    bad_header.write_text("file,label\na.jpg,Pop\n")
    with pytest.raises(CoverSearchError, match="needs a header"):
        read_source(bad_header)
    with pytest.raises(CoverSearchError, match="either --manifest or --links"):
        read_source(tmp_path, manifest=bad_header, links=bad_header)


def test_stored_paths_do_not_depend_on_the_working_folder(tmp_path, small_covers, monkeypatch):
    monkeypatch.chdir(small_covers.parent)
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_source(type(small_covers)(small_covers.name)), [get_extractor("hsv")])
        first = store.known_files()
        monkeypatch.chdir(small_covers / "Pop")
        again = ingest(store, read_source(type(small_covers)("../../" + small_covers.name)), [get_extractor("hsv")])
        assert again.counts.files == 0 and store.known_files() == first
    assert all(p.startswith("/") and "/../" not in p for p in first)
