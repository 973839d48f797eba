"""Sharded IVF builds on a real store of real covers (hsv vectors): train once on a sample, add in
shards, merge in memory or on disk, locally or as Ray tasks; the same index contract as every kind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from coversearch.errors import CoverSearchError
from coversearch.features.registry import get_extractor
from coversearch import metrics
from coversearch.index import catalog
from coversearch.index.faiss_base import IVFDATA_FILE, on_disk_lists
from coversearch.index.params import IndexParamError
from coversearch.index.recall import ground_truth
from coversearch.index.registry import create_index
from coversearch.index.sharded import (
    ShardOptions,
    encode_shard,
    merge_in_memory,
    merge_on_disk,
    plan_shards,
    train_on_sample,
)
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store
from conftest import REPO, link_covers

NLIST = 8  # 8 lists x 39 = 312 training vectors: the store below has ~380


@pytest.fixture(scope="module")
def store_db(tmp_path_factory, covers5_dir) -> Path:
    """~380 real covers (80 per genre; duplicates collapse to one album) with hsv vectors."""
    root = tmp_path_factory.mktemp("sharded")
    db = root / "store.duckdb"
    with Store.open(db) as store:
        ingest(store, read_source(link_covers(covers5_dir, root / "covers", per_genre=80)), [get_extractor("hsv")])
    return db


@pytest.fixture(scope="module")
def vectors(store_db):
    with Store.open(store_db, read_only=True) as store:
        return store.load_embeddings(store.feature_set("hsv"))


def top_k(index, queries, k=10):
    return index.batch_search(queries, k)


def build(store, index_dir, name, **options):
    params = options.pop("params", {"nlist": NLIST})
    return catalog.build_index(
        store, feature="hsv", kind=options.pop("kind", "faiss-ivfpq"), index_dir=index_dir, name=name,
        build_params=params, sharding=ShardOptions(**options),
    )


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory merge", "on-disk merge"])
def test_shards_merged_equal_one_process_add_with_the_same_trained_index(store_db, vectors, tmp_path, on_disk):
    ids, x = vectors
    with Store.open(store_db, read_only=True) as store:
        fs = store.feature_set("hsv")
        index = create_index("faiss-ivfpq", "euclidean", fs.dim, {"nlist": NLIST, "refine": False})
        index.resolve_params(len(ids))
        trained, sample = train_on_sample(index, store, fs, len(ids))
        assert sample == len(ids)  # 256 per list would be 2,048: the whole store
        shards = plan_shards(ids, 3)
        assert sum(s.rows for s in shards) == len(ids) and max(s.rows for s in shards) - min(s.rows for s in shards) <= 1
        paths = []
        for shard in shards:
            paths.append(tmp_path / f"shard-{shard.number}.faiss")
            encode_shard(trained, store.iter_embeddings(fs, shard.first_id, shard.last_id, 50), shard, "euclidean", paths[-1])
    merged = merge_on_disk(trained, paths, tmp_path / IVFDATA_FILE) if on_disk else merge_in_memory(paths)
    assert (on_disk_lists(merged) is not None) == on_disk
    single = faiss.clone_index(trained)
    single.add(x)
    queries = x[::7]
    params = faiss.SearchParametersIVF(nprobe=4)
    d_single, i_single = single.search(queries, 10, params=params)
    d_merged, i_merged = merged.search(queries, 10, params=params)
    np.testing.assert_array_equal(i_merged, i_single)
    np.testing.assert_array_equal(d_merged, d_single)


def test_sharded_build_is_a_normal_index_with_the_same_answers_as_a_local_fit(store_db, vectors, tmp_path):
    ids, x = vectors
    with Store.open(store_db, read_only=True) as store:
        manifest = build(store, tmp_path, "sharded", shards=3, on_disk=True)
        opened = catalog.open_index(store, tmp_path, "sharded")
        opened.index.set_query_arguments(rerank=0)  # the PQ answers themselves (the reference has no store to re-rank from)
        # The same trained index, filled by one process: the sharded one, its lists swapped for empty ones.
        reference = create_index("faiss-ivfpq", "euclidean", x.shape[1], manifest.build_params, manifest.query_params)
        reference.faiss_index = _emptied(faiss.read_index(str(tmp_path / "sharded" / "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR))
        reference.add(x, ids)
        np.testing.assert_array_equal(opened.index.ids, ids)
        for got, want in zip(top_k(opened.index, x[::5]), top_k(reference, x[::5])):
            np.testing.assert_array_equal(got, want)
    assert manifest.files.keys() == {"ids.npy", "index.faiss", IVFDATA_FILE}
    assert manifest.build_params["refine"] is False and manifest.given_params["refine"] is False
    assert manifest.sharding["shards"] == 3 and manifest.sharding["on_disk"] and len(manifest.sharding["shard_seconds"]) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the work folder is gone


def _emptied(index: faiss.Index) -> faiss.Index:
    """``index`` with its inverted lists replaced by empty in-memory ones (the file is not touched)."""
    ivf = faiss.extract_index_ivf(index)
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns it now
    ivf.ntotal = index.ntotal = 0
    return index


def test_ray_engine_builds_the_same_index_as_the_local_engine(store_db, vectors, tmp_path):
    ids, x = vectors
    with Store.open(store_db, read_only=True) as store:
        local = build(store, tmp_path, "local", shards=3)
        ray = build(store, tmp_path, "ray", shards=3, engine="ray", ray_cpus=2)
        assert ray.sharding["engine"] == "ray" and len(ray.sharding["shard_seconds"]) == 3
        assert ray.files["index.faiss"].sha256 == local.files["index.faiss"].sha256
        a = catalog.open_index(store, tmp_path, "local").index
        b = catalog.open_index(store, tmp_path, "ray").index
        for got, want in zip(top_k(b, x[::5]), top_k(a, x[::5])):
            np.testing.assert_array_equal(got, want)


def test_rerank_from_the_store_gives_exact_neighbours_and_distances(store_db, vectors, tmp_path):
    ids, x = vectors
    queries = x[::9]
    truth = ground_truth(x, queries, 10, metrics.EUCLIDEAN)
    with Store.open(store_db, read_only=True) as store:
        build(store, tmp_path, "pq", shards=2)
        index = catalog.open_index(store, tmp_path, "pq").index
        index.set_query_arguments(nprobe=NLIST, rerank=0)
        _, pq_distances = index.batch_search(queries, 10)
        index.set_query_arguments(rerank=len(ids))  # every candidate: exact search
        got, distances = index.batch_search(queries, 10)
        one = index.search(queries[0], 10)
    np.testing.assert_array_equal(got, ids[truth.rows])
    np.testing.assert_allclose(distances, truth.distances, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(one.ids, got[0])
    assert not np.allclose(pq_distances, truth.distances, atol=1e-3)  # without rerank: PQ estimates


def test_refresh_adds_new_albums_to_their_lists_without_retraining(store_db, covers5_dir, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(store_db, db)
    index_dir = tmp_path / "indexes"
    with Store.open(db, read_only=True) as store:
        before = build(store, index_dir, "disk", shards=3, on_disk=True)
    published = (index_dir / "disk" / IVFDATA_FILE).read_bytes()
    trained = faiss.read_index(str(index_dir / "disk" / "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
    trained_quantizer = faiss.extract_index_ivf(trained).quantizer
    trained_centroids = trained_quantizer.reconstruct_n(0, trained_quantizer.ntotal)
    del trained, trained_quantizer
    with Store.open(db) as store:
        ingest(store, read_source(link_covers(covers5_dir, tmp_path / "more", per_genre=3, offset=300)), [get_extractor("hsv")])
    with Store.open(db, read_only=True) as store:
        with pytest.raises(catalog.StaleIndexError, match="stale"):
            catalog.open_index(store, index_dir, "disk")
        opened = catalog.open_index(store, index_dir, "disk", refresh=True)
        ids, x = store.load_embeddings(store.feature_set("hsv"))
    assert opened.refreshed_by == "add" and opened.manifest.vectors == len(ids) > before.vectors
    new = np.setdiff1d(ids, np.load(tmp_path / "indexes" / "disk" / "ids.npy")[: before.vectors])
    assert len(new) > 0
    ivf = faiss.extract_index_ivf(opened.index.faiss_index)
    published_index = faiss.read_index(str(index_dir / "disk" / "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
    assert published_index.ntotal == len(ids)  # the published folder is the refreshed one
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    new_x = x[np.isin(ids, new)]
    _, lists = ivf.quantizer.search(new_x, 1)
    rows = {int(r): i for i, r in enumerate(np.flatnonzero(np.isin(opened.index.ids, new)))}
    invlists = ivf.invlists
    for row, list_no in zip(sorted(rows), lists[:, 0]):
        size = invlists.list_size(int(list_no))
        members = faiss.rev_swig_ptr(invlists.get_ids(int(list_no)), size).copy()
        assert row in members  # the list its nearest centroid names
    np.testing.assert_array_equal(centroids, trained_centroids)  # no retraining
    assert published != (index_dir / "disk" / IVFDATA_FILE).read_bytes()
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".")]


KILLED_SHARDED_BUILD = """
import os, signal, sys
from coversearch.index import catalog
from coversearch.index.sharded import ShardOptions
from coversearch.store import Store

def progress(message):
    if message.startswith("merging"):
        os.kill(os.getpid(), signal.SIGKILL)

with Store.open(sys.argv[1], read_only=True) as store:
    catalog.build_index(store, feature="hsv", kind="faiss-ivfpq", index_dir=sys.argv[2], name="disk",
                        build_params={"nlist": 4}, sharding=ShardOptions(shards=3, on_disk=True), progress=progress)
"""


def test_a_killed_sharded_build_leaves_the_previous_index_in_place(store_db, vectors, tmp_path):
    ids, x = vectors
    with Store.open(store_db, read_only=True) as store:
        build(store, tmp_path, "disk", shards=2, on_disk=True)
        before = top_k(catalog.open_index(store, tmp_path, "disk").index, x[:20])
    files_before = {p.name: p.read_bytes() for p in (tmp_path / "disk").iterdir()}
    run = subprocess.run([sys.executable, "-c", KILLED_SHARDED_BUILD, str(store_db), str(tmp_path)],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert run.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".disk.staging-")]
    assert any(p.name.startswith("shard-") for p in left.iterdir())  # killed after the shards were written
    assert {p.name: p.read_bytes() for p in (tmp_path / "disk").iterdir()} == files_before
    with Store.open(store_db, read_only=True) as store:
        after = top_k(catalog.open_index(store, tmp_path, "disk").index, x[:20])
        for got, want in zip(after, before):
            np.testing.assert_array_equal(got, want)
        rebuilt = build(store, tmp_path, "disk", shards=3, on_disk=True, params={"nlist": 4})
    assert rebuilt.build_params["nlist"] == 4 and not left.exists()


def test_a_store_too_small_for_the_lists_is_one_error_naming_the_minimum(cli, covers5_dir):
    with Store.open(cli.db) as store:
        ingest(store, read_source(link_covers(covers5_dir, cli.db.parent / "covers", per_genre=8)), [get_extractor("hsv")])
    result = cli("index", "build", "--feature", "hsv", "--kind", "faiss-ivfpq", "--shards", "2", "--param", "nlist=16")
    assert result.exit_code != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "nlist=16" in lines[0] and "at least 624 vectors" in lines[0] and "Traceback" not in result.output
    assert not cli.index_dir.exists() or not any(cli.index_dir.iterdir())


def test_cli_sharded_build_then_similar_uses_it(cli, store_db):
    shutil.copy(store_db, cli.db)
    result = cli("index", "build", "--feature", "hsv", "--kind", "faiss-ivfpq", "--shards", "3", "--on-disk",
                 "--factory", "IVF8,PQ16", "--name", "big", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["build_params"]["nlist"] == 8 and manifest["build_params"]["m"] == 16
    assert manifest["sharding"]["shards"] == 3 and "merging 3 shards into on-disk lists" in result.stderr
    with Store.open(cli.db, read_only=True) as store:
        album = int(store.load_embeddings(store.feature_set("hsv"))[0][0])
    found = cli("similar", "--album", str(album), "-f", "hsv", "--index", "big", "-k", "5", "--json")
    assert found.exit_code == 0, found.output
    data = json.loads(found.stdout)
    assert data["kind"] == "faiss-ivfpq" and len(data["results"]) == 5
    listed = json.loads(cli("index", "list", "--json").stdout)["indexes"]
    assert [(i["name"], i["stale"]) for i in listed] == [("big", False)]
    bad = cli("index", "build", "--feature", "hsv", "--kind", "faiss-ivfpq", "--engine", "spark")
    assert bad.exit_code != 0 and "unknown engine 'spark'" in bad.stderr


def test_defaults_by_size_and_width():
    wide = create_index("faiss-ivfpq", "cosine", 2560, {"refine": False})
    wide.resolve_params(1_000_000)
    assert wide.build_params["nlist"] == 4000 and wide._factory_string() == "OPQ64_256,IVF4000,PQ64x8"
    big = create_index("faiss-ivfpq", "cosine", 512, {"refine": False})
    big.resolve_params(100_000_000)
    assert big._factory_string() == "IVF40000_HNSW32,PQ64x8"
    with pytest.raises(IndexParamError, match="must divide the dimension 256 \\(reduced from 2560\\)"):
        create_index("faiss-ivfpq", "cosine", 2560, {"m": 80})
    with pytest.raises(IndexParamError, match="at least 390,000 vectors"):
        create_index("faiss-ivf", "cosine", 512, {"nlist": 10_000}).resolve_params(5_000)
    with pytest.raises(CoverSearchError, match="no IVF<nlist> stage"):
        create_index("faiss-ivf", "cosine", 512, {"factory": "HNSW32"}).resolve_params(5_000)
