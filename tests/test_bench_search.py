"""`coversearch bench search`: the recall it reports, resuming an interrupted sweep, the CLI end to end."""

from __future__ import annotations

import json
from html import escape

import numpy as np
import pytest

from conftest import link_covers
from coversearch.bench.datasets import Dataset, cached_ground_truth
from coversearch.bench.measure import build, measure_queries, recall_of_ids
from coversearch.bench.tables import pareto_front, table_rows, targets
from coversearch.bench.sweep import Results, load_sweep, run_sweep
from coversearch.classify.split import make_split
from coversearch.errors import CoverSearchError
from coversearch.features.registry import get_extractor
from coversearch import metrics
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store


def make_dataset(base, queries, metric=metrics.EUCLIDEAN, ids=None, key="tiny") -> Dataset:
    base = np.asarray(base, dtype=np.float32)
    ids = np.arange(len(base), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    return Dataset(key=key, title=key, description=key, feature="hsv", metric=metric, base=base, base_ids=ids,
                   queries=np.asarray(queries, dtype=np.float32), real=False, params={})


def random_dataset(n=600, dim=16, nq=40, seed=0, key="random") -> Dataset:
    rng = np.random.default_rng(seed)
    return make_dataset(rng.normal(size=(n, dim)), rng.normal(size=(nq, dim)), key=key)


# -- recall ----------------------------------------------------------------------------------------
def test_recall_counts_ties_and_the_epsilon_tolerance():
    # Query at the origin, k = 3: true distances 0, 1, 2 (ids 12 and 13 tie at 2).
    base = [(0, 0), (1, 0), (0, 2), (2, 0), (2.0005, 0), (2.01, 0), (5, 0)]
    ids = [10, 11, 12, 13, 14, 15, 16]
    cases = [
        ([10, 11, 12], 1.0),  # the true answer
        ([10, 11, 13], 1.0),  # the other of a tie at the k-th place
        ([11, 10, 14], 1.0),  # 2.0005 <= 2 + 1e-3, in any order
        ([10, 11, 15], 2 / 3),  # 2.01 is beyond the tolerance
        ([10, 16, 15], 1 / 3),
        ([10, 11, -1], 2 / 3),  # a missing answer is a miss
    ]
    found = np.array([c[0] for c in cases])
    dataset = make_dataset(base, [(0, 0)] * len(cases), ids=ids)
    truth = cached_ground_truth(dataset, 3, None)
    assert truth.distances[0, 2] == pytest.approx(2.0)
    for row, expected in cases:
        one = make_dataset(base, [(0, 0)], ids=ids)
        assert recall_of_ids(one, cached_ground_truth(one, 3, None), np.array([row]), k=3) == pytest.approx(expected)
    assert recall_of_ids(dataset, truth, found, k=3) == pytest.approx(np.mean([c[1] for c in cases]))


def test_an_exact_index_scores_one_and_random_ids_score_near_zero():
    dataset = random_dataset()
    truth = cached_ground_truth(dataset, 10, None)
    built = build("exact", dataset, {})
    measured = measure_queries(built, dataset, truth)
    assert measured["recall"] == 1.0
    assert measured["qps"] > 0 and measured["p99_ms"] >= measured["p50_ms"] > 0 and measured["batch_qps"] > 0
    assert built.size_bytes > dataset.base.nbytes and built.memory_bytes >= dataset.base.nbytes
    random_ids = np.random.default_rng(1).choice(dataset.base_ids, size=(len(dataset.queries), 10))
    assert recall_of_ids(dataset, truth, random_ids) < 0.05


def test_pareto_front_keeps_only_undominated_points():
    points = [{"recall": r, "qps": q} for r, q in [(0.9, 100), (0.95, 50), (0.9, 40), (0.99, 10), (0.8, 90)]]
    assert [(p["recall"], p["qps"]) for p in pareto_front(points)] == [(0.9, 100), (0.95, 50), (0.99, 10)]


# -- sweeps ----------------------------------------------------------------------------------------
def write_sweeps(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faiss-hnsw.toml").write_text("[build]\nM = [8, 16]\nefConstruction = 40\n[query]\nefSearch = [8, 16, 32]\n")
    (folder / "faiss-ivf.toml").write_text("[build]\nnlist = [8]\n[query]\nnprobe = [1, 8]\n")
    return folder


def test_sweep_files_are_checked(tmp_path):
    sweeps = write_sweeps(tmp_path / "sweeps")
    assert len(load_sweep("faiss-hnsw", sweeps)) == 6 and len(load_sweep("annoy", sweeps)) == 1  # no file: defaults
    (sweeps / "annoy.toml").write_text("[build]\nsearch_k = [100]\n")
    with pytest.raises(CoverSearchError, match=r"belongs in \[query\]"):
        load_sweep("annoy", sweeps)
    (sweeps / "annoy.toml").write_text("[build]\nn_tree = [10]\n")
    with pytest.raises(CoverSearchError, match="unknown parameter"):
        load_sweep("annoy", sweeps)


class Interrupt(Exception):
    pass


def test_an_interrupted_sweep_resumes_with_only_the_missing_points(tmp_path):
    sweeps_dir = write_sweeps(tmp_path / "sweeps")
    kinds = ["exact", "faiss-hnsw", "faiss-ivf"]
    sweeps = {k: load_sweep(k, sweeps_dir) for k in kinds}
    datasets = [random_dataset(key="a"), random_dataset(n=400, seed=3, key="b")]
    total = 2 * (1 + 6 + 2)
    path = tmp_path / "out" / "results.json"

    first: list[str] = []

    def stop_after_four(point):
        first.append(point["key"])
        if len(first) == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_sweep(datasets, kinds, sweeps, Results(path), cache_dir=tmp_path / "out" / "cache", on_point=stop_after_four)
    assert [p["key"] for p in json.loads(path.read_text())["points"]] == first  # kept on disk, point by point
    assert list((tmp_path / "out" / "cache").glob("truth-a-k10.npz"))  # ground truth cached

    second: list[str] = []
    advanced = []
    results = Results(path)
    measured = run_sweep(datasets, kinds, sweeps, results, cache_dir=tmp_path / "out" / "cache",
                         on_point=lambda p: second.append(p["key"]), advance=advanced.append)
    assert measured == len(second) == total - 4
    assert not set(first) & set(second)
    assert sum(advanced) == total  # the progress bar counts the kept points too
    final = json.loads(path.read_text())["points"]
    assert len(final) == len({p["key"] for p in final}) == total
    assert {(p["dataset"], p["kind"]) for p in final} == {(d, k) for d in "ab" for k in kinds}
    # Nothing left to do: a third run measures nothing.
    assert run_sweep(datasets, kinds, sweeps, Results(path), cache_dir=tmp_path / "out" / "cache") == 0


# -- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, covers5_dir):
    """A real store: 12 covers per genre, hsv only, with its default split."""
    root = link_covers(covers5_dir, tmp_path_factory.mktemp("covers") / "covers", per_genre=12)
    path = tmp_path_factory.mktemp("store") / "store.duckdb"
    with Store.open(path) as store:
        ingest(store, read_folder(root), [get_extractor("hsv")])
        make_split(store)
    return path


def test_bench_search_runs_end_to_end_and_resumes(cli, tiny_store, tmp_path):
    cli.db = tiny_store
    sweeps = write_sweeps(tmp_path / "sweeps")
    out = tmp_path / "bench"
    args = ["bench", "search", "--scale", "800", "--queries", "30", "--kinds", "exact,duckdb,faiss-hnsw",
            "--kinds", "annoy", "--out", str(out), "--sweeps", str(sweeps), "--quiet"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "measured 17 point(s), kept 0" in result.output  # real: 1 + 1 + 6 + 1; synthetic: 1 + 6 + 1 (no duckdb)
    assert "targets:" in result.output and "exact search median < 1 ms" in result.output
    data = json.loads((out / "results.json").read_text())
    real = [d for d in data["datasets"].values() if d["real"]]
    synthetic = [d for d in data["datasets"].values() if not d["real"]]
    assert len(real) == 1 and real[0]["feature"] == "hsv" and real[0]["queries"] == 5  # a tenth of the 53 distinct albums
    assert len(synthetic) == 1 and synthetic[0]["n"] == 800 and "tiled" in synthetic[0]["description"]
    by_kind = {(p["dataset"], p["kind"]): p for p in data["points"]}
    exact_real = by_kind[(real[0]["key"], "exact")]
    assert exact_real["recall"] == 1.0 and by_kind[(real[0]["key"], "duckdb")]["recall"] == 1.0
    assert 0 <= exact_real["genre_accuracy"] <= 1 and by_kind[(synthetic[0]["key"], "exact")]["genre_accuracy"] is None
    assert all(p["genre_accuracy"] is not None for p in data["points"] if p["dataset"] == real[0]["key"] and p["kind"] != "duckdb")
    markdown = (out / "results.md").read_text()
    assert "| front | kind |" in markdown and "faiss-hnsw" in markdown and "#### Targets" in markdown
    pngs = sorted(out.glob("recall-qps-*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert [t for t in targets(data) if t.name.startswith("100k")][0].met is None  # no 100k set here
    # The HTML report shows the same tables, rendered from results.json (not parsed back from results.md).
    (out / "results.md").unlink()
    report = cli("report", "--out", str(tmp_path / "report.html"), "--bench-dir", str(out))
    assert report.exit_code == 0, report.output
    html = (tmp_path / "report.html").read_text()
    section = html[html.index('<section id="search-benchmark">'):]
    for key in data["datasets"]:
        for row in table_rows(data, key):
            assert "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" in section

    again = cli(*args)
    assert again.exit_code == 0 and "measured 0 point(s), kept 17" in again.output

    fresh = cli("bench", "search", "--scale", "800", "--queries", "30", "--kinds", "exact", "--out", str(out),
                "--sweeps", str(sweeps), "--fresh", "--json")  # --fresh measures this run's data sets again
    assert fresh.exit_code == 0, fresh.output
    summary = json.loads(fresh.stdout)
    assert summary["measured"] == 2 and summary["skipped"] == 0
    assert len(json.loads((out / "results.json").read_text())["points"]) == 2


def test_bench_search_errors_are_one_line(cli, tiny_store, tmp_path):
    cli.db = tiny_store
    result = cli("bench", "search", "--feature", "vgg16", "--out", str(tmp_path / "o"), "--quiet")
    assert result.exit_code != 0 and "error: the store has no vgg16 embeddings" in result.output
    result = cli("bench", "search", "--kinds", "nope", "--out", str(tmp_path / "o"), "--quiet")
    assert result.exit_code != 0 and "unknown index kind 'nope'" in result.output
