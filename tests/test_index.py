"""The index layer on real hsv vectors of real covers: every kind against exact search, filters,
save/load, adding in place, staleness and refresh, damaged files, parameters and recall."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from coversearch.errors import CoverSearchError
from coversearch.features.base import extract_images
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import get_extractor
from coversearch import metrics
from coversearch.index import catalog
from coversearch.index.base import IndexFileError
from coversearch.index.duckdb_index import DuckDBIndex
from coversearch.index.faiss_base import resolve_nlist, resolve_nprobe
from coversearch.index.params import IndexParamError, kind_defaults, parse_param_pairs
from coversearch.index.recall import ground_truth, ids_to_rows, knn_recall, recall_at_k, true_distances
from coversearch.index.registry import INDEX_KINDS, create_index
from coversearch.index.threads import available_cores, faiss_threads
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store
from coversearch.store.curate import remove_albums
from conftest import GENRES, link_covers

# Every kind for float vectors (faiss-binary, for bit codes only, has its own tests in test_duplicates.py).
ALL_KINDS = [kind for kind, cls in INDEX_KINDS.items() if "euclidean" in cls.supported_metrics]
APPROXIMATE_KINDS = ["faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "annoy"]
FAISS_ADD_KINDS = ["exact", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq"]




def ingest_hsv(db: Path, folder: Path) -> None:
    with Store.open(db) as store:
        ingest(store, read_source(folder), [get_extractor("hsv")])


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, covers5_dir) -> Path:
    """~200 real covers (40 per genre; duplicates collapse to one album) with hsv vectors."""
    root = tmp_path_factory.mktemp("index-base")
    db = root / "store.duckdb"
    ingest_hsv(db, link_covers(covers5_dir, root / "covers", per_genre=40))
    return db


@pytest.fixture(scope="module")
def store_vectors(base_store) -> tuple[np.ndarray, np.ndarray]:
    with Store.open(base_store, read_only=True) as store:
        return store.load_embeddings(store.feature_set("hsv"))


@pytest.fixture(scope="module")
def held_out_queries(covers5_dir) -> np.ndarray:
    """hsv vectors of centre crops of 60 covers that are not in the store: realistic queries."""
    paths = [p for g in GENRES for p in sorted((covers5_dir / g).iterdir())[100:112]]
    crops = []
    for path in paths:
        rgb = decode_image(read_bytes(path)).rgb
        h, w = rgb.shape[:2]
        crops.append(np.ascontiguousarray(rgb[h // 10 : h - h // 10, w // 10 : w - w // 10]))
    return extract_images(get_extractor("hsv"), crops)


@pytest.fixture
def store_copy(base_store, tmp_path) -> Path:
    """A private copy of the base store, for tests that change it."""
    db = tmp_path / "store.duckdb"
    shutil.copy(base_store, db)
    return db


def built(kind: str, metric: str, vectors, ids, **params):
    return create_index(kind, metric, vectors.shape[1], params).fit(vectors, ids)


def bound_duckdb(store: Store, metric: str) -> DuckDBIndex:
    fs = store.feature_set("hsv")
    ids, vectors = store.load_embeddings(fs)
    return built("duckdb", metric, vectors, ids).bind(store, fs)


# -- every kind against exact search ------------------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_kind_reaches_high_recall_against_exact(kind, metric, base_store, store_vectors, held_out_queries):
    ids, vectors = store_vectors
    truth = ground_truth(vectors, held_out_queries, 10, metric)
    with Store.open(base_store, read_only=True) as store:
        index = bound_duckdb(store, metric) if kind == "duckdb" else built(kind, metric, vectors, ids)
        found_ids, found_distances = index.batch_search(held_out_queries, 10)
    rows = ids_to_rows(ids, found_ids)
    recall = recall_at_k(vectors, held_out_queries, rows, 10, metric, truth)
    if INDEX_KINDS[kind].exact:
        # Exact kinds return the true neighbours themselves, in order, with the true distances.
        assert recall == 1.0
        np.testing.assert_array_equal(rows, truth.rows)
        np.testing.assert_allclose(found_distances, truth.distances, atol=2e-5)
    else:
        assert recall >= 0.95, f"{kind} recall@10 {recall:.3f}"
        # Reported distances are the true distances in the metric (PQ is re-ranked exactly by default).
        np.testing.assert_allclose(found_distances, true_distances(vectors, held_out_queries, rows, metric), atol=2e-4)


def test_distances_are_reported_in_the_metric_not_squared(store_vectors):
    ids, vectors = store_vectors
    queries = vectors[:20] * 0.5 + vectors[20:40] * 0.5  # between stored vectors: no zero distances
    for metric in ("euclidean", "cosine"):
        found_ids, found = built("exact", metric, vectors, ids).batch_search(queries, 5)
        expected = true_distances(vectors, queries, ids_to_rows(ids, found_ids), metric)
        np.testing.assert_allclose(found, expected, atol=2e-5)
    # Sanity of the reference itself: true L2, i.e. the square root of the squared difference.
    a, b = vectors[:1], vectors[1:2]
    assert metrics.pair_distances(a, b, "euclidean")[0] == pytest.approx(float(np.linalg.norm(a - b)), rel=1e-5)


def test_duckdb_and_exact_agree_with_a_filter(base_store, store_vectors, held_out_queries):
    ids, vectors = store_vectors
    allowed = ids[::5]
    with Store.open(base_store, read_only=True) as store:
        for metric in ("euclidean", "cosine"):
            exact = built("exact", metric, vectors, ids)
            duck = bound_duckdb(store, metric)
            for q in held_out_queries[:10]:
                a, b = exact.search(q, 8, allowed), duck.search(q, 8, allowed)
                np.testing.assert_array_equal(a.ids, b.ids)
                np.testing.assert_allclose(a.distances, b.distances, atol=2e-5)
                assert np.isin(a.ids, allowed).all()


# -- filters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_tight_filter_still_returns_k_allowed_vectors(kind, base_store, store_vectors, held_out_queries):
    """12 allowed of ~185, with query settings far too narrow to find them unaided: the kind must
    widen its search (or grow annoy's candidate list) until k pass the filter."""
    ids, vectors = store_vectors
    allowed = ids[7::15][:12]
    narrow = {"faiss-hnsw": {"efSearch": 1}, "faiss-ivf": {"nprobe": 1}, "faiss-ivfpq": {"nprobe": 1, "k_factor": 1}, "annoy": {"search_k": 1}}
    with Store.open(base_store, read_only=True) as store:
        index = bound_duckdb(store, "euclidean") if kind == "duckdb" else built(kind, "euclidean", vectors, ids)
        index.set_query_arguments(**narrow.get(kind, {}))
        exact = built("exact", "euclidean", vectors, ids)
        for q in held_out_queries[:5]:
            found = index.search(q, 10, allowed)
            assert len(found) == 10 and np.isin(found.ids, allowed).all()
            # With only 12 candidates, 10 of them is nearly all: an approximate kind must find most.
            overlap = len(set(found.ids) & set(exact.search(q, 10, allowed).ids))
            assert overlap >= (10 if INDEX_KINDS[kind].exact else 8)
        # Asking for every allowed vector returns exactly the allowed set.
        assert set(index.search(held_out_queries[0], 12, allowed).ids) == set(allowed)


@pytest.mark.parametrize("kind", ["faiss-hnsw", "faiss-ivf"])
def test_when_widening_is_not_allowed_the_exact_fallback_answers(kind, store_vectors, held_out_queries):
    ids, vectors = store_vectors
    allowed = ids[5::20][:9]
    index = built(kind, "euclidean", vectors, ids)
    index.set_query_arguments(**({"efSearch": 1} if kind == "faiss-hnsw" else {"nprobe": 1}))
    index.max_widen = 0  # no wider retry: short answers must go to the exact scan of allowed vectors
    exact = built("exact", "euclidean", vectors, ids)
    selector = faiss.IDSelectorBatch(np.flatnonzero(np.isin(ids, allowed)))
    unaided_short = 0
    for q in held_out_queries[:8]:
        prepared = metrics.prepare(q, "euclidean")
        _, rows = index.faiss_index.search(prepared, 9, params=index._search_parameters(9, selector, 0))
        unaided_short += int((rows >= 0).sum() < 9)
        found, truth = index.search(q, 9, allowed), exact.search(q, 9, allowed)
        np.testing.assert_array_equal(np.sort(found.ids), np.sort(truth.ids))
        np.testing.assert_allclose(found.distances, truth.distances, atol=1e-5)  # nearest first
    assert unaided_short > 0  # the narrow search alone fell short: the fallback did the work


# -- save and load ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_save_load_round_trip_gives_the_same_answers(kind, tmp_path, base_store, store_vectors, held_out_queries):
    ids, vectors = store_vectors
    with Store.open(base_store, read_only=True) as store:
        index = bound_duckdb(store, "cosine") if kind == "duckdb" else built(kind, "cosine", vectors, ids)
        written = index.save(tmp_path)
        assert "ids.npy" in written and all((tmp_path / name).is_file() for name in written)
        loaded = type(index).load(
            tmp_path, metric="cosine", dim=vectors.shape[1], build_params=index.build_params, query_params=index.query_params
        )
        if kind == "duckdb":
            loaded.bind(store, store.feature_set("hsv"))
        np.testing.assert_array_equal(loaded.ids, index.ids)
        before = index.batch_search(held_out_queries, 10)
        after = loaded.batch_search(held_out_queries, 10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], atol=1e-6)


# -- adding in place ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", FAISS_ADD_KINDS)
def test_add_in_place_equals_building_on_everything(kind, store_vectors, held_out_queries):
    ids, vectors = store_vectors
    grown = built(kind, "euclidean", vectors[:150], ids[:150])
    build_params = dict(grown.build_params)  # nlist etc. as resolved for the first 150
    grown.add(vectors[150:], ids[150:])
    assert len(grown) == len(ids) and grown.faiss_index.ntotal == len(ids)
    once = create_index(kind, "euclidean", vectors.shape[1], build_params).fit(vectors, ids)
    # Every added vector is findable: each queries itself to rank 1.
    assert (grown.batch_search(vectors[150:], 1)[0][:, 0] == ids[150:]).all()
    truth = ground_truth(vectors, held_out_queries, 10, "euclidean")
    recalls = [
        recall_at_k(vectors, held_out_queries, ids_to_rows(ids, index.batch_search(held_out_queries, 10)[0]), 10, "euclidean", truth)
        for index in (grown, once)
    ]
    # Added vectors are searched as well as built-in ones (PQ codes trained on fewer vectors may
    # cost a little).
    assert recalls[0] >= 0.9 and recalls[0] >= recalls[1] - 0.05, recalls


def test_annoy_cannot_add_after_build(store_vectors):
    ids, vectors = store_vectors
    index = built("annoy", "euclidean", vectors[:50], ids[:50])
    with pytest.raises(CoverSearchError, match="cannot add"):
        index.add(vectors[50:60], ids[50:60])


# -- parameters ---------------------------------------------------------------------------------
def test_defaults_cover_every_kind_and_keep_build_and_query_apart():
    for kind in INDEX_KINDS:
        defaults = kind_defaults(kind)
        assert not set(defaults.build) & set(defaults.query), kind
    assert kind_defaults("faiss-hnsw").build == {"M": 32, "efConstruction": 200}
    assert kind_defaults("faiss-hnsw").query == {"efSearch": 128}
    assert set(kind_defaults("annoy").build) == {"n_trees", "seed"} and set(kind_defaults("annoy").query) == {"search_k"}


def test_param_parsing_types_and_errors():
    assert parse_param_pairs("faiss-hnsw", ["M=16", "efSearch=64"]) == ({"M": 16}, {"efSearch": 64})
    assert parse_param_pairs("faiss-ivfpq", ["refine=false", "nlist=auto"]) == ({"refine": False, "nlist": "auto"}, {})
    for bad, message in [
        (["M"], "expected key=value"),
        (["M="], "expected key=value"),
        (["M=abc"], "expected an integer"),
        (["M=1.5"], "expected an integer"),
        (["ef=3"], "unknown parameter 'ef'"),
        (["nlist=many"], "integer or auto"),
    ]:
        with pytest.raises(IndexParamError, match=message):
            parse_param_pairs("faiss-ivfpq" if bad[0].startswith("nlist") else "faiss-hnsw", bad)
    with pytest.raises(IndexParamError, match="out of range"):
        create_index("faiss-hnsw", "cosine", 512, {"M": 0})
    with pytest.raises(IndexParamError, match="must divide"):
        create_index("faiss-ivfpq", "cosine", 512, {"m": 48})
    with pytest.raises(IndexParamError, match="cannot change after the build"):
        create_index("faiss-hnsw", "cosine", 512).set_query_arguments(M=8)


def test_auto_params_follow_the_data_size(store_vectors):
    rules = kind_defaults("faiss-ivf").auto
    assert resolve_nlist(100_000, rules) == 1265  # 4 * sqrt(n)
    assert resolve_nprobe(1265, rules) == 159  # nlist / 8
    assert resolve_nlist(185, rules) == 4  # capped at n / 39: enough training points per list
    ids, vectors = store_vectors
    ivfpq = built("faiss-ivfpq", "euclidean", vectors, ids)
    assert ivfpq.build_params["nbits"] == int(np.floor(np.log2(len(ids))))  # < 256 vectors: fewer bits
    with pytest.raises(IndexParamError, match="more than the"):
        built("faiss-ivf", "euclidean", vectors, ids, nlist=len(ids) + 1)


def test_single_queries_use_one_thread_and_restore_the_setting():
    before = faiss.omp_get_max_threads()
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    assert available_cores() >= 1


# -- recall -------------------------------------------------------------------------------------
def test_knn_recall_counts_ties_within_epsilon_as_hits():
    true_kth = np.array([1.0, 1.0])
    returned = np.array([[0.1, 0.5, 1.0005, 1.2], [0.1, np.inf, 2.0, 3.0]])
    np.testing.assert_allclose(knn_recall(true_kth, returned, 4), [0.75, 0.25])


def test_recall_of_a_broken_index_is_low(store_vectors, held_out_queries):
    """The recall helper is not a rubber stamp: shuffled answers score far below 1."""
    ids, vectors = store_vectors
    truth = ground_truth(vectors, held_out_queries, 10, "euclidean")
    rng = np.random.default_rng(0)
    shuffled = rng.integers(0, len(ids), size=(len(held_out_queries), 10))
    assert recall_at_k(vectors, held_out_queries, shuffled, 10, "euclidean", truth) < 0.3
    assert recall_at_k(vectors, held_out_queries, truth.rows, 10, "euclidean", truth) == 1.0


# -- the catalog: on disk, stale, refreshed, damaged --------------------------------------------
def test_build_writes_a_complete_manifest(base_store, tmp_path):
    with Store.open(base_store, read_only=True) as store:
        manifest = catalog.build_index(store, feature="hsv", kind="faiss-ivf", index_dir=tmp_path, build_params={"seed": 7})
        fingerprint = store.embedding_fingerprint(store.feature_set("hsv"))
        ids, _ = store.load_embeddings(store.feature_set("hsv"))
    folder = tmp_path / "hsv-faiss-ivf"
    data = json.loads((folder / "manifest.json").read_text())
    assert data["format_version"] == 1 and data["kind"] == "faiss-ivf" and data["metric"] == "euclidean"
    assert data["feature"] == {"name": "hsv", "version": 1, "feature_set_id": 1, "dim": 512, "model_fingerprint": None}
    assert data["store"] == {"path": str(base_store.resolve()), "embedding_fingerprint": fingerprint}
    assert data["build_params"] == {"nlist": 4, "seed": 7, "factory": ""} and data["query_params"] == {"nprobe": 4}
    assert data["given_params"] == {"seed": 7}
    assert data["vectors"] == len(ids) and data["build_seconds"] >= 0
    np.testing.assert_array_equal(np.load(folder / data["ids_file"]), ids)
    assert data["size_bytes"] == sum(p.stat().st_size for p in folder.iterdir() if p.name != "manifest.json")
    assert manifest.folder == folder
    assert [p.name for p in tmp_path.iterdir()] == ["hsv-faiss-ivf"]  # no temporary folders left


def test_a_failed_rebuild_leaves_the_old_index_whole(base_store, tmp_path, monkeypatch):
    with Store.open(base_store, read_only=True) as store:
        first = catalog.build_index(store, feature="hsv", kind="exact", index_dir=tmp_path)
        before = (first.folder / "manifest.json").read_bytes()

        def disk_full(folder, manifest):  # the crash happens after the index files are written
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(catalog, "write_manifest", disk_full)
        with pytest.raises(OSError):
            catalog.build_index(store, feature="hsv", kind="exact", index_dir=tmp_path, metric="cosine")
        monkeypatch.undo()
        assert (first.folder / "manifest.json").read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["hsv-exact"]
        assert catalog.open_index(store, tmp_path, "hsv-exact").index.metric == "euclidean"


def test_refresh_adds_new_vectors_in_place_for_faiss_kinds(store_copy, covers5_dir, tmp_path):
    with Store.open(store_copy, read_only=True) as store:
        catalog.build_index(store, feature="hsv", kind="faiss-hnsw", index_dir=tmp_path / "ix")
    ingest_hsv(store_copy, link_covers(covers5_dir, tmp_path / "more", per_genre=4, offset=40))
    with Store.open(store_copy, read_only=True) as store:
        manifest = catalog.load_manifest(tmp_path / "ix", "hsv-faiss-hnsw")
        n_store = len(store.load_embeddings(store.feature_set("hsv"))[0])
        n_new = n_store - manifest.vectors  # 20 files, fewer albums where covers repeat
        assert n_new > 10
        freshness = catalog.check_current(store, manifest)
        assert not freshness.current and freshness.can_add and len(freshness.added_ids) == n_new
        with pytest.raises(catalog.StaleIndexError, match=f"{n_new} added, 0 removed"):
            catalog.open_index(store, tmp_path / "ix", "hsv-faiss-hnsw")
        opened = catalog.open_index(store, tmp_path / "ix", "hsv-faiss-hnsw", refresh=True)
        assert opened.refreshed_by == "add" and len(opened.index) == n_store
        assert opened.manifest.built_at == manifest.built_at  # added to, not rebuilt
        assert opened.manifest.vectors_added == n_new
        assert catalog.check_current(store, catalog.load_manifest(tmp_path / "ix", "hsv-faiss-hnsw")).current


@pytest.mark.parametrize("kind,refreshed_by", [("faiss-ivf", "remove"), ("exact", "remove"), ("faiss-hnsw", "rebuild")])
def test_removed_albums_are_dropped_in_place_or_rebuilt(store_copy, tmp_path, kind, refreshed_by):
    with Store.open(store_copy, read_only=True) as store:
        built_manifest = catalog.build_index(store, feature="hsv", kind=kind, index_dir=tmp_path)
    with Store.open(store_copy) as store:
        remove_albums(store, album_ids=[1, 2, 3])
    with Store.open(store_copy, read_only=True) as store:
        freshness = catalog.check_current(store, catalog.load_manifest(tmp_path, f"hsv-{kind}"))
        assert freshness.removed == 3 and not freshness.can_add
        opened = catalog.open_index(store, tmp_path, f"hsv-{kind}", refresh=True)
        assert opened.refreshed_by == refreshed_by
        if refreshed_by == "remove":
            assert opened.manifest.built_at == built_manifest.built_at  # changed in place, not rebuilt
        assert not np.isin([1, 2, 3], opened.index.ids).any()
        ids, vectors = store.load_embeddings(store.feature_set("hsv"))
        np.testing.assert_array_equal(np.sort(opened.index.ids), ids)
        # Every album left is found by its own vector, also after reading the refreshed index back.
        reopened = catalog.open_index(store, tmp_path, f"hsv-{kind}")
        found, _ = reopened.index.batch_search(vectors, 1)
        assert (found[:, 0] == ids).mean() > 0.95
        assert catalog.check_current(store, reopened.manifest).current


def test_duckdb_kind_is_always_current(store_copy, covers5_dir, tmp_path):
    with Store.open(store_copy, read_only=True) as store:
        catalog.build_index(store, feature="hsv", kind="duckdb", index_dir=tmp_path / "ix")
    ingest_hsv(store_copy, link_covers(covers5_dir, tmp_path / "more", per_genre=2, offset=40))
    with Store.open(store_copy, read_only=True) as store:
        opened = catalog.open_index(store, tmp_path / "ix", "hsv-duckdb")
        newest = int(store.con.execute("SELECT max(album_id) FROM embeddings_1").fetchone()[0])
        vector = store.load_embeddings(store.feature_set("hsv"), [newest])[1][0]
        assert opened.refreshed_by is None and opened.index.search(vector, 1).ids[0] == newest


def test_a_copied_store_with_the_same_vectors_is_accepted(base_store, tmp_path):
    with Store.open(base_store, read_only=True) as store:
        catalog.build_index(store, feature="hsv", kind="exact", index_dir=tmp_path / "ix")
    copy = tmp_path / "elsewhere.duckdb"
    shutil.copy(base_store, copy)
    with Store.open(copy, read_only=True) as store:
        opened = catalog.open_index(store, tmp_path / "ix", "hsv-exact")
    assert any("built from" in note for note in opened.notes)


@pytest.mark.parametrize("kind", ["faiss-hnsw", "annoy"])
def test_damaged_index_files_are_refused(kind, base_store, tmp_path):
    with Store.open(base_store, read_only=True) as store:
        manifest = catalog.build_index(store, feature="hsv", kind=kind, index_dir=tmp_path)
        native = manifest.folder / INDEX_KINDS[kind].native_file
        good = native.read_bytes()

        native.write_bytes(good[: len(good) // 2])
        with pytest.raises(IndexFileError, match="truncated"):
            catalog.open_index(store, tmp_path, manifest.name)

        flipped = bytearray(good)
        flipped[len(flipped) // 2] ^= 0xFF
        native.write_bytes(bytes(flipped))
        with pytest.raises(IndexFileError, match="corrupt"):
            catalog.open_index(store, tmp_path, manifest.name)

        (manifest.folder / "manifest.json").write_text("{not json")
        with pytest.raises(IndexFileError, match="not JSON"):
            catalog.open_index(store, tmp_path, manifest.name)


def test_garbage_that_passes_the_checksum_is_still_refused(base_store, tmp_path):
    """Even with a manifest rewritten to match, FAISS's own reader failure becomes a clear error."""
    with Store.open(base_store, read_only=True) as store:
        manifest = catalog.build_index(store, feature="hsv", kind="exact", index_dir=tmp_path)
        native = manifest.folder / "index.faiss"
        native.write_bytes(b"IxF2" + b"\x00" * 40)
        manifest.files["index.faiss"] = catalog.file_record(native)
        catalog.write_manifest(manifest.folder, manifest)
        with pytest.raises(IndexFileError, match="corrupt or truncated"):
            catalog.open_index(store, tmp_path, manifest.name)
