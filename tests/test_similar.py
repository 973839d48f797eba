"""`coversearch index` and `coversearch similar` through the real CLI, in-process, on small real
stores: every kind answers (and filters by genre), stale indexes are refused or refreshed, and
every kind of bad input is one clear error line that leaves the store untouched."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from coversearch.imaging.images import decode_image, mirror, read_bytes
from coversearch.features.registry import get_extractor
from coversearch.index.registry import INDEX_KINDS
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.query.similar import SimilarSearcher, find_similar
from coversearch.store import Store
from conftest import link_covers, one_line_error, run_cli

KINDS = [kind for kind, cls in INDEX_KINDS.items() if "euclidean" in cls.supported_metrics]  # hsv's metric




def ingest_features(db: Path, folder: Path, extractors) -> None:
    with Store.open(db) as store:
        ingest(store, read_source(folder), extractors)


def run(db: Path, index_dir: Path, *args, env: dict | None = None):
    return run_cli(*args, env=env, db=db, index_dir=index_dir)


def ok_json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result, *fragments: str) -> None:
    one_line_error(result, *fragments)
    assert result.stdout == ""


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def jpeg_mirror(src: Path, dest: Path) -> Path:
    """The cover mirrored left-right and re-compressed as JPEG quality 75."""
    Image.fromarray(mirror(decode_image(read_bytes(src)).rgb)).save(dest, format="JPEG", quality=75)
    return dest


@pytest.fixture(scope="module")
def hsv_store(tmp_path_factory, covers5_dir) -> Path:
    """200 real covers (40 per genre) with hsv vectors, and an index of every kind built by the CLI."""
    root = tmp_path_factory.mktemp("similar")
    db = root / "store.duckdb"
    ingest_features(db, link_covers(covers5_dir, root / "covers", per_genre=40), [get_extractor("hsv")])
    for kind in KINDS:
        result = run(db, root / "indexes", "index", "build", "--feature", "hsv", "--kind", kind, "--json")
        assert result.exit_code == 0, result.stderr
    return db


@pytest.fixture(scope="module")
def index_dir(hsv_store) -> Path:
    return hsv_store.parent / "indexes"


@pytest.fixture(scope="module")
def store_facts(hsv_store) -> dict:
    with Store.open(hsv_store, read_only=True) as store:
        ids, _ = store.load_embeddings(store.feature_set("hsv"))
        genres = store.genres_by_album(ids.tolist())
        files = store.known_files()
    rock = sorted(a for a, g in genres.items() if "Rock" in g)
    return {"ids": ids.tolist(), "rock": rock, "files": files}


# -- building and listing -----------------------------------------------------------------------
def test_index_list_shows_every_index_current(hsv_store, index_dir, store_facts):
    listing = ok_json(run(hsv_store, index_dir, "index", "list", "--json"))
    rows = {row["name"]: row for row in listing["indexes"]}
    assert set(rows) == {f"hsv-{kind}" for kind in KINDS}
    for kind in KINDS:
        row = rows[f"hsv-{kind}"]
        assert (row["kind"], row["feature"], row["metric"], row["stale"]) == (kind, "hsv v1", "euclidean", False)
        assert row["vectors"] == len(store_facts["ids"]) and row["size_bytes"] > 0
    table = run(hsv_store, index_dir, "index", "list")
    assert table.exit_code == 0 and "hsv-faiss-hnsw" in table.stdout and "stale?" in table.stdout


def test_index_build_records_params_and_replaces_by_name(hsv_store, tmp_path):
    built = ok_json(
        run(hsv_store, tmp_path, "index", "build", "--feature", "hsv", "--kind", "faiss-hnsw", "--name", "mine",
            "--metric", "cosine", "--param", "M=16", "--param", "efSearch=40", "--json")
    )
    assert (built["name"], built["metric"], built["build_params"]["M"], built["query_params"]["efSearch"]) == ("mine", "cosine", 16, 40)
    again = ok_json(run(hsv_store, tmp_path, "index", "build", "--feature", "hsv", "--kind", "faiss-hnsw", "--name", "mine", "--json"))
    assert again["build_params"]["M"] == 32 and again["metric"] == "euclidean"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # replaced whole, no leftovers


# -- answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_stored_album_comes_back_first_from_every_kind(kind, hsv_store, index_dir, store_facts):
    album = store_facts["ids"][17]
    found = ok_json(run(hsv_store, index_dir, "similar", "--album", album, "--feature", "hsv", "--index", f"hsv-{kind}", "-k", 7, "--json"))
    hits = found["results"]
    assert (found["kind"], found["index_name"], len(hits)) == (kind, f"hsv-{kind}", 7)
    assert hits[0]["album_id"] == album and hits[0]["distance"] == pytest.approx(0.0, abs=1e-3)
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances) and [h["rank"] for h in hits] == list(range(1, 8))
    assert all(h["path"] and h["genres"] for h in hits)


@pytest.mark.parametrize("kind", KINDS)
def test_genre_filter_gives_k_results_of_that_genre(kind, hsv_store, index_dir, store_facts):
    rock = store_facts["rock"]
    base = ["similar", "--album", store_facts["ids"][3], "-f", "hsv", "--index", f"hsv-{kind}", "--genre", "Rock", "--json"]
    hits = ok_json(run(hsv_store, index_dir, *base, "-k", 10))["results"]
    assert len(hits) == 10 and all("Rock" in h["genres"] for h in hits)
    # Asking for every Rock album returns exactly them (annoy must grow its list to the end).
    every = ok_json(run(hsv_store, index_dir, *base, "-k", len(rock)))["results"]
    assert sorted(h["album_id"] for h in every) == rock


def test_image_queries_in_and_out_of_the_store(hsv_store, index_dir, store_facts, covers5_dir, tmp_path):
    path, album = next(iter(store_facts["files"].items()))
    found = ok_json(run(hsv_store, index_dir, "similar", path, "-f", "hsv", "--index", "hsv-faiss-ivf", "-k", 3, "--json"))
    assert found["results"][0]["album_id"] == album and found["query"] == path
    # A cover that is not in the store: any image file can be a query.
    outside = sorted((covers5_dir / "Pop").iterdir())[900]
    assert str(outside) not in store_facts["files"]
    found = ok_json(run(hsv_store, index_dir, "similar", outside, "-f", "hsv", "--index", "hsv-annoy", "-k", 5, "--json"))
    assert len(found["results"]) == 5 and found["results"][0]["distance"] > 0
    table = run(hsv_store, index_dir, "similar", outside, "-f", "hsv", "--index", "hsv-annoy", "-k", 5)
    assert table.exit_code == 0 and "distance" in table.stdout and "rank" in table.stdout


def test_decoded_pixels_are_a_query_as_good_as_the_file(hsv_store, index_dir, covers5_dir):
    outside = sorted((covers5_dir / "Pop").iterdir())[900]
    with Store.open(hsv_store, read_only=True) as store:
        searcher = SimilarSearcher.open(store, feature="hsv", index_dir=index_dir, index_name="hsv-exact")
        from_file = searcher.search_image(outside, k=5, genre="Rock")
        from_pixels = searcher.search_pixels(decode_image(read_bytes(outside)).rgb, k=5, genre="Rock", label="upload")
    assert [h.album_id for h in from_pixels.hits] == [h.album_id for h in from_file.hits]
    assert [h.distance for h in from_pixels.hits] == pytest.approx([h.distance for h in from_file.hits])


def test_without_an_index_exact_search_is_used_and_said(hsv_store, index_dir, store_facts, tmp_path):
    album = store_facts["ids"][40]
    fallback = run(hsv_store, tmp_path / "no-indexes", "similar", "--album", album, "-f", "hsv", "-k", 10, "--json")
    found = ok_json(fallback)
    assert found["kind"] == "exact" and found["index_name"] is None
    assert "exact search" in fallback.stderr and "coversearch index build" in fallback.stderr
    via_index = ok_json(run(hsv_store, index_dir, "similar", "--album", album, "-f", "hsv", "--index", "hsv-exact", "-k", 10, "--json"))
    assert [h["album_id"] for h in found["results"]] == [h["album_id"] for h in via_index["results"]]


# -- stale indexes ------------------------------------------------------------------------------
@pytest.fixture
def growing_store(hsv_store, tmp_path) -> Path:
    db = tmp_path / "store.duckdb"
    shutil.copy(hsv_store, db)
    return db


def test_stale_faiss_index_is_refused_then_refreshed_in_place(growing_store, covers5_dir, tmp_path):
    indexes = tmp_path / "indexes"
    built = ok_json(run(growing_store, indexes, "index", "build", "--feature", "hsv", "--kind", "faiss-ivf", "--json"))
    ingest_features(growing_store, link_covers(covers5_dir, tmp_path / "more", per_genre=5, offset=40), [get_extractor("hsv")])
    with Store.open(growing_store, read_only=True) as store:
        newest = max(store.embedded_album_ids(store.feature_set("hsv")))
        n_store = len(store.embedded_album_ids(store.feature_set("hsv")))

    refused = run(growing_store, indexes, "similar", "--album", newest, "-f", "hsv")
    assert_one_line_error(refused, "index 'hsv-faiss-ivf' is stale", "added", "--refresh")
    listed = ok_json(run(growing_store, indexes, "index", "list", "--json"))["indexes"][0]
    assert listed["stale"] is True and "added" in listed["stale_reason"]

    refreshed = run(growing_store, indexes, "similar", "--album", newest, "-f", "hsv", "--refresh", "-k", 3, "--json")
    assert ok_json(refreshed)["results"][0]["album_id"] == newest  # the new vector is in the index
    assert "refreshed by add" in refreshed.stderr
    manifest = json.loads((indexes / "hsv-faiss-ivf" / "manifest.json").read_text())
    assert manifest["refreshed_by"] == "add" and manifest["vectors"] == n_store
    assert manifest["built_at"] == built["built_at"] and manifest["build_params"] == built["build_params"]  # not rebuilt
    assert ok_json(run(growing_store, indexes, "index", "list", "--json"))["indexes"][0]["stale"] is False


def test_stale_annoy_index_is_rebuilt_on_refresh(growing_store, covers5_dir, tmp_path):
    indexes = tmp_path / "indexes"
    ok_json(run(growing_store, indexes, "index", "build", "--feature", "hsv", "--kind", "annoy", "--param", "n_trees=20", "--json"))
    ingest_features(growing_store, link_covers(covers5_dir, tmp_path / "more", per_genre=2, offset=40), [get_extractor("hsv")])
    with Store.open(growing_store, read_only=True) as store:
        newest = max(store.embedded_album_ids(store.feature_set("hsv")))
        n_store = len(store.embedded_album_ids(store.feature_set("hsv")))
    assert_one_line_error(run(growing_store, indexes, "similar", "--album", newest, "-f", "hsv"), "stale")
    found = ok_json(run(growing_store, indexes, "similar", "--album", newest, "-f", "hsv", "--refresh", "-k", 1, "--json"))
    assert found["results"][0]["album_id"] == newest
    manifest = json.loads((indexes / "hsv-annoy" / "manifest.json").read_text())
    assert manifest["refreshed_by"] == "rebuild" and manifest["vectors"] == n_store
    assert manifest["build_params"]["n_trees"] == 20  # rebuilt with the parameters it was built with


def test_an_index_of_another_store_is_judged_by_its_vectors(hsv_store, index_dir, covers5_dir, tmp_path, store_facts):
    # Same vectors at another path: fine (and said).
    copy = tmp_path / "copy.duckdb"
    shutil.copy(hsv_store, copy)
    same = run(copy, index_dir, "similar", "--album", store_facts["ids"][0], "-f", "hsv", "--index", "hsv-faiss-hnsw", "--json")
    assert ok_json(same)["results"][0]["album_id"] == store_facts["ids"][0] and "built from" in same.stderr
    # Other covers: the fingerprint differs, so the index is stale for this store.
    other = tmp_path / "other.duckdb"
    ingest_features(other, link_covers(covers5_dir, tmp_path / "other", per_genre=3, offset=500), [get_extractor("hsv")])
    assert_one_line_error(run(other, index_dir, "similar", "--album", 1, "-f", "hsv", "--index", "hsv-faiss-hnsw"), "stale")


# -- bad input ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, index_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    not_image = root / "notes.jpg"
    not_image.write_text("this is not a picture\n")
    truncated_jpeg = root / "half.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="JPEG")
    truncated_jpeg.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    damaged = root / "indexes"
    shutil.copytree(index_dir, damaged)
    faiss_file = damaged / "hsv-faiss-hnsw" / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:1000])
    annoy_file = damaged / "hsv-annoy" / "index.ann"
    flipped = bytearray(annoy_file.read_bytes())
    flipped[len(flipped) // 3] ^= 0x55
    annoy_file.write_bytes(bytes(flipped))
    (damaged / "hsv-exact" / "manifest.json").write_text('{"format_version": 1, "name": "hsv-exact"}')
    return {"not_image": not_image, "truncated_jpeg": truncated_jpeg, "damaged": damaged}


BAD_INPUTS = [
    # (argv after the global options, fragments of the one error line)
    (["similar", "{missing}", "-f", "hsv"], ["cannot use query image", "no such file"]),
    (["similar", "{not_image}", "-f", "hsv"], ["cannot use query image", "not-an-image"]),
    (["similar", "{truncated_jpeg}", "-f", "hsv"], ["cannot use query image", "truncated"]),
    (["similar", "--album", "{album}", "-f", "colour"], ["unknown feature 'colour'"]),
    (["similar", "--album", "{album}", "-f", "hsv", "--index", "nope"], ["no index named 'nope'", "hsv-annoy"]),
    (["similar", "--album", "{album}", "-f", "hsv", "-k", "0"], ["k must be at least 1"]),
    (["similar", "--album", "{album}", "-f", "hsv", "-k", "-3"], ["k must be at least 1"]),
    (["similar", "--album", "{album}", "-f", "hsv", "--index", "hsv-faiss-ivf", "-k", "{too_many}"], ["is more than the", "vectors"]),
    (["similar", "--album", "{album}", "-f", "hsv", "--index", "hsv-annoy", "--genre", "Rock", "-k", "{too_many_rock}"], ["albums of genre 'Rock'"]),
    (["similar", "--album", "{album}", "-f", "hsv", "--genre", "Jazz"], ["no album of genre 'Jazz'", "Rock"]),
    (["similar", "--album", "999999", "-f", "hsv"], ["no album with id 999999"]),
    (["similar", "--album", "{album}", "-f", "hsv", "--metric", "manhattan"], ["unknown metric 'manhattan'"]),
    (["similar", "--album", "{album}", "-f", "hsv", "--index", "hsv-exact", "--metric", "cosine"], ["uses the euclidean metric"]),
    (["similar", "-f", "hsv"], ["IMAGE or --album"]),
    (["similar", "{not_image}", "--album", "{album}", "-f", "hsv"], ["IMAGE or --album"]),
    (["--index-dir", "{damaged}", "similar", "--album", "{album}", "-f", "hsv", "--index", "hsv-faiss-hnsw"], ["index.faiss is truncated"]),
    (["--index-dir", "{damaged}", "similar", "--album", "{album}", "-f", "hsv", "--index", "hsv-annoy"], ["index.ann is corrupt"]),
    (["--index-dir", "{damaged}", "similar", "--album", "{album}", "-f", "hsv", "--index", "hsv-exact"], ["not a valid index manifest"]),
    (["index", "build", "--feature", "hsv", "--kind", "kd-tree"], ["unknown index kind 'kd-tree'", "faiss-hnsw"]),
    (["index", "build", "--feature", "colour", "--kind", "exact"], ["unknown feature 'colour'"]),
    (["index", "build", "--feature", "vgg16", "--kind", "exact"], ["no 'vgg16' embeddings"]),
    (["index", "build", "--feature", "hsv", "--kind", "faiss-hnsw", "--param", "M"], ["bad --param 'M'", "key=value"]),
    (["index", "build", "--feature", "hsv", "--kind", "faiss-hnsw", "--param", "M=many"], ["bad value 'many'", "integer"]),
    (["index", "build", "--feature", "hsv", "--kind", "faiss-hnsw", "--param", "nprobe=4"], ["unknown parameter 'nprobe'", "efSearch"]),
    (["index", "build", "--feature", "hsv", "--kind", "faiss-ivf", "--param", "nlist=100000"], ["nlist=100000 is more than the"]),
    (["index", "build", "--feature", "hsv", "--kind", "exact", "--name", "../escape"], ["bad index name"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_INPUTS, ids=[" ".join(a[:4]) + f" #{i}" for i, (a, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_error_line_and_leaves_the_store_untouched(
    argv, fragments, hsv_store, index_dir, store_facts, bad_files, tmp_path
):
    values = {
        "missing": tmp_path / "missing.jpg",
        "album": store_facts["ids"][0],
        "too_many": len(store_facts["ids"]) + 1,
        "too_many_rock": len(store_facts["rock"]) + 1,
        **bad_files,
    }
    args = [a.format(**values) for a in argv]
    before = file_digest(hsv_store)
    indexes_before = sorted(p.name for p in index_dir.iterdir())
    assert_one_line_error(run(hsv_store, index_dir, *args), *fragments)
    assert file_digest(hsv_store) == before
    assert sorted(p.name for p in index_dir.iterdir()) == indexes_before  # nothing half-written


# -- VGG16 (the one test family that loads the real model) --------------------------------------
@pytest.fixture(scope="module")
def vgg16_store(tmp_path_factory, covers5_dir, vgg16_weights):
    """15 real covers with vgg16 vectors, and the loaded extractor that made them."""
    root = tmp_path_factory.mktemp("vgg16")
    extractor = get_extractor("vgg16", vgg16_weights=vgg16_weights)
    ingest_features(root / "store.duckdb", link_covers(covers5_dir, root / "covers", per_genre=3, offset=300), [extractor])
    return root / "store.duckdb", extractor


def test_vgg16_finds_a_cover_and_its_mirrored_recompressed_copy(vgg16_store, vgg16_weights, tmp_path):
    db, extractor = vgg16_store
    with Store.open(db, read_only=True) as store:
        path, album = sorted(store.known_files().items())[4]
        # Library call, reusing the loaded model: the cover itself is at distance ~0.
        same = find_similar(store, image=path, feature="vgg16", k=3, index_dir=tmp_path / "none", extractor=extractor)
    assert same.hits[0].album_id == album and same.hits[0].distance < 1e-4 and same.metric == "cosine"
    # Through the CLI with an image that is not in the store: its mirror, re-compressed.
    copy = jpeg_mirror(Path(path), tmp_path / "mirror.jpg")
    found = ok_json(run(db, tmp_path / "none", "similar", copy, "--vgg16-weights", vgg16_weights, "-k", 3, "--json"))
    assert found["feature"] == "vgg16 v1" and found["results"][0]["album_id"] == album


def test_a_query_model_other_than_the_stores_is_refused(vgg16_store, vgg16_weights, tmp_path):
    db, _ = vgg16_store
    with Store.open(db, read_only=True) as store:
        image = next(iter(store.known_files()))
    other_weights = tmp_path / "other.weights.h5"
    other_weights.write_bytes(vgg16_weights.read_bytes() + b"\0")  # another file: another fingerprint
    result = run(db, tmp_path, "similar", image, "--vgg16-weights", other_weights)
    assert_one_line_error(result, "made with model sha256:", "--vgg16-weights")
    # No weights at all means Keras' ImageNet download: also not the store's model.
    result = run(db, tmp_path, "similar", image, env={"COVERSEARCH_VGG16_WEIGHTS": None})
    assert_one_line_error(result, "keras:vgg16:imagenet:notop")
