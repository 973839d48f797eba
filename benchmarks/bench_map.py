"""The catalogue map's layouts, measured: kNN preservation@10, layout time and peak memory per
method, and the placement of new albums into an existing layout.

    .venv/bin/python benchmarks/bench_map.py --db COPY_OF_covers5.duckdb [--parts covers5,place,100k]
        [--synthetic 100000] [--methods tsne,pca,sklearn-tsne,umap]

kNN preservation@10: for 500 seeded albums, the share of their 10 nearest albums in feature space
(the feature's metric: cosine for vgg16, Euclidean for hsv) that are among their 10 nearest on the
map.  Each layout runs in a fresh child process (under `nice`), which reports its wall time, CPU
time and peak resident memory (ru_maxrss, imports included); for tsne and pca the time includes
what the product computes with a layout (clusters, typicality, density).

- covers5: every method on the store's vgg16 and hsv vectors.  tsne is the product's layout
  (``layout.map.full_layout``: openTSNE, exact neighbours); sklearn-tsne is scikit-learn's exact
  t-SNE (cosine, PCA init); umap is umap-learn (cosine, seeded, hence single-threaded).
- place: 1,000 seeded covers5 albums held out, the rest laid out with tsne, the 1,000 placed into
  it (``layout.tsne.place``, what an update after an ingest runs): placement time, and the placed
  albums' preservation against that of the same albums in a full layout of all of them.
- 100k: the store's vgg16 vectors tiled to --synthetic rows with Gaussian noise (0.05 x each
  dimension's standard deviation, as bench_explore.py), laid out by pca, and by tsne (a
  25,000-album sample fitted, the rest placed) in a child that then places 1,000 further noisy
  copies into that layout (``place``: its reference figures are the t-SNE layout's).
Prints a Markdown block; figures also land in a JSON file (path printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


# -- the child: one layout ---------------------------------------------------------------------------
def annotate(x: np.ndarray, xy: np.ndarray, fitted: np.ndarray, seed: int) -> float:
    """What a full layout in the product also computes (clusters, typicality, density): its seconds."""
    from coversearch.layout.map import clusters_on_map, densities, typicality

    started = time.perf_counter()
    cluster = clusters_on_map(xy, seed)
    typicality(x, cluster)
    densities(x, fitted)
    return time.perf_counter() - started


def worker(args) -> None:
    vectors = np.load(args.vectors)
    seed = 0
    started = time.perf_counter()
    extra: dict = {}
    if args.method in ("tsne", "pca"):
        from coversearch.layout.map import full_layout
        from coversearch.layout.tsne import prepared

        x = prepared(vectors, args.metric)
        xy, fitted, _ = full_layout(x, args.method, seed)
        extra["fitted"] = int(fitted.sum())
        extra["annotate_seconds"] = annotate(x, xy, fitted, seed)
    elif args.method == "place":
        from coversearch.layout.map import from_unit, full_layout, to_unit
        from coversearch.layout.tsne import place, prepared

        x = prepared(vectors, args.metric)
        new = np.load(args.new_rows)
        old = np.setdiff1d(np.arange(len(x)), new)
        xy_old, fitted, params = full_layout(x[old], "tsne", seed)
        extra["annotate_seconds"] = annotate(x[old], xy_old, fitted, seed)
        extra["reference_seconds"] = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        extra |= {"reference_cpu_seconds": usage.ru_utime + usage.ru_stime, "reference_peak_bytes": usage.ru_maxrss * 1024,
                  "fitted": int(fitted.sum())}
        t0 = time.perf_counter()
        raw = place(from_unit(xy_old, params), x[old], x[new], seed)
        extra["place_seconds"] = time.perf_counter() - t0
        xy = np.zeros((len(x), 2), dtype=np.float32)
        xy[old], xy[new] = xy_old, to_unit(raw, params)
    elif args.method == "sklearn-tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, metric=args.metric if args.metric != "hamming" else "euclidean", init="pca",
                  random_state=seed, n_jobs=os.cpu_count()).fit_transform(vectors)
    elif args.method == "umap":
        import umap

        xy = umap.UMAP(metric=args.metric, random_state=seed).fit_transform(vectors)
    else:
        raise SystemExit(f"unknown method {args.method}")
    seconds = time.perf_counter() - started
    np.save(args.out, np.asarray(xy, dtype=np.float32))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds as well as wall time: on a shared machine they tell what a quiet one would take.
    print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_bytes": usage.ru_maxrss * 1024, **extra}))


def run_child(vectors: Path, metric: str, method: str, work: Path, new_rows: Path | None = None, timeout: int = 1800) -> tuple[np.ndarray, dict]:
    out = work / f"xy-{vectors.stem}-{method}.npy"
    cmd = ["nice", "-n", "5", sys.executable, str(Path(__file__)), "worker", "--vectors", str(vectors), "--metric", metric,
           "--method", method, "--out", str(out)]
    if new_rows is not None:
        cmd += ["--new-rows", str(new_rows)]
    before = load()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ | {"PYTHONPATH": str(REPO)})
    if result.returncode != 0:
        raise SystemExit(f"{method} on {vectors.name} failed:\n{result.stderr[-3000:]}")
    stats = json.loads(result.stdout.strip().splitlines()[-1]) | {"load_before": before, "load_after": load()}
    return np.load(out), stats


# -- the parent --------------------------------------------------------------------------------------
def export(db: Path, feature: str, work: Path) -> tuple[Path, str, np.ndarray]:
    from coversearch import metrics
    from coversearch.features.registry import metric_for
    from coversearch.store import Store

    with Store.open(db, read_only=True) as store:
        fs = store.feature_set(feature)
        ids, vectors = store.load_embeddings(fs)
        metric = metric_for(fs)
    path = work / f"{feature}.npy"
    np.save(path, vectors)
    return path, metric, ids


def covers5(args, work: Path, figures: dict) -> None:
    from coversearch.layout.quality import feature_neighbours, map_neighbours, preservation, sample_rows

    for feature in args.features.split(","):
        path, metric, ids = export(args.db, feature, work)
        vectors = np.load(path)
        rows = sample_rows(len(vectors), 500, 0)
        high = feature_neighbours(vectors, metric, rows)
        for method in args.methods.split(","):
            log(f"{feature}: {method} on {len(vectors):,} albums ({load()}) ...")
            xy, stats = run_child(path, metric, method, work)
            stats["preservation"] = preservation(high, map_neighbours(xy, rows))
            figures.setdefault("covers5", {}).setdefault(feature, {})[method] = stats | {"albums": len(vectors), "metric": metric}
            log(json.dumps(stats))


def placement(args, work: Path, figures: dict) -> None:
    from coversearch.layout.quality import feature_neighbours, map_neighbours, preservation

    path, metric, _ = export(args.db, "vgg16", work)
    vectors = np.load(path)
    new = np.sort(np.random.default_rng(1).choice(len(vectors), 1000, replace=False))
    np.save(work / "new.npy", new)
    log(f"place: 1,000 of {len(vectors):,} vgg16 albums ({load()}) ...")
    xy, stats = run_child(path, metric, "place", work, work / "new.npy")
    high = feature_neighbours(vectors, metric, new)
    stats["placed_preservation"] = preservation(high, map_neighbours(xy, new))
    stats["albums"] = len(vectors)
    full = figures.get("covers5", {}).get("vgg16", {}).get("tsne")
    full_xy = run_child(path, metric, "tsne", work)[0] if full is None else np.load(work / f"xy-{path.stem}-tsne.npy")
    stats["full_layout_preservation_same_albums"] = preservation(high, map_neighbours(full_xy, new))
    figures["place"] = stats
    log(json.dumps(stats))


def synthetic(args, work: Path, figures: dict) -> None:
    from coversearch.layout.quality import feature_neighbours, map_neighbours, preservation, sample_rows

    path, metric, _ = export(args.db, "vgg16", work)
    real = np.load(path)
    rng = np.random.default_rng(0)
    total = args.synthetic + 1000
    vectors = np.tile(real, (-(-total // len(real)), 1))[:total]
    vectors = (vectors + rng.normal(size=vectors.shape).astype(np.float32) * (0.05 * real.std(axis=0))).astype(np.float32)
    big = work / "synthetic.npy"
    np.save(big, vectors)
    del vectors, real
    rows = sample_rows(total, 500, 0)
    rows = rows[rows < args.synthetic]
    new = np.arange(args.synthetic, total)
    np.save(work / "new-synthetic.npy", new)
    vectors = np.load(big)
    high = feature_neighbours(vectors[: args.synthetic], metric, rows)  # the PCA map holds the 100k alone
    high_all = feature_neighbours(vectors, metric, np.concatenate([rows, new]))  # the placing child's map holds all
    high_ref, high_new = high_all[: len(rows)], high_all[len(rows) :]
    out = {}
    for method in args.methods_100k.split(","):
        log(f"{args.synthetic:,} synthetic: {method} ({load()}) ...")
        if method == "place":
            xy, stats = run_child(big, metric, "place", work, work / "new-synthetic.npy", timeout=3600)
            stats["placed_preservation"] = preservation(high_new, map_neighbours(xy, new))
            stats["reference_preservation"] = preservation(high_ref, map_neighbours(xy, rows))
        else:
            np.save(work / "synthetic-base.npy", vectors[: args.synthetic])
            xy, stats = run_child(work / "synthetic-base.npy", metric, method, work, timeout=3600)
            stats["preservation"] = preservation(high, map_neighbours(xy, rows))
        out[method] = stats
        log(json.dumps(stats))
    figures["synthetic"] = out | {"albums": args.synthetic}


def render(args, f: dict) -> str:
    names = {"tsne": "t-SNE, openTSNE (default)", "pca": "PCA", "sklearn-tsne": "t-SNE, scikit-learn", "umap": "UMAP, umap-learn"}
    lines = [f"Command: `.venv/bin/python benchmarks/bench_map.py --db COPY_OF_covers5.duckdb --parts {args.parts}`, "
             f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu_model()}); load averages per run below "
             "(the machine is shared).", ""]
    if "covers5" in f:
        lines += ["| feature | method | albums | kNN preservation@10 | layout time (CPU time) | peak memory | load (1/5/15 min) before |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for feature, methods in f["covers5"].items():
            for method, s in methods.items():
                lines.append(f"| {feature} | {names.get(method, method)} | {s['albums']:,} | {s['preservation']:.3f} | "
                             f"{s['seconds']:.1f} s ({s['cpu_seconds']:.0f} s) | {s['peak_bytes'] / 2**30:.2f} GiB | {s['load_before'].removeprefix('load average ')} |")
        lines.append("")
    if "place" in f:
        p = f["place"]
        lines.append(f"Placement (covers5 vgg16): 1,000 seeded albums held out, the other {p['albums'] - 1000:,} laid out "
                     f"({p['reference_seconds']:.1f} s), the 1,000 placed in {p['place_seconds']:.2f} s; their kNN preservation@10 "
                     f"placed {p['placed_preservation']:.3f} against {p['full_layout_preservation_same_albums']:.3f} in a full "
                     f"layout of all albums ({p['load_before']}).")
        lines.append("")
    if "synthetic" in f:
        s = f["synthetic"]
        lines += [f"{s['albums']:,} albums made from the covers5 vgg16 vectors (tiled, plus Gaussian noise of 0.05 x each "
                  "dimension's standard deviation):", "",
                  "| method | kNN preservation@10 | layout time (CPU time) | peak memory | load before |", "|---|---:|---:|---:|---|"]
        if "place" in s:
            m = s["place"]
            lines.append(f"| {names['tsne']}, {m['fitted']:,} fitted and the rest placed | {m['reference_preservation']:.3f} | "
                         f"{m['reference_seconds']:.0f} s ({m['reference_cpu_seconds']:.0f} s) | {m['reference_peak_bytes'] / 2**30:.2f} GiB | "
                         f"{m['load_before'].removeprefix('load average ')} |")
        if "pca" in s:
            m = s["pca"]
            lines.append(f"| {names['pca']} | {m['preservation']:.3f} | {m['seconds']:.0f} s ({m['cpu_seconds']:.0f} s) | {m['peak_bytes'] / 2**30:.2f} GiB | "
                         f"{m['load_before'].removeprefix('load average ')} |")
        if "place" in s:
            m = s["place"]
            lines += ["", f"1,000 further noisy copies placed into that t-SNE layout in {m['place_seconds']:.1f} s: kNN "
                          f"preservation@10 {m['placed_preservation']:.3f} for the placed albums "
                          f"({m['reference_preservation']:.3f} for 500 of the layout's own); peak memory of the whole child "
                          f"{m['peak_bytes'] / 2**30:.2f} GiB."]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        parser = argparse.ArgumentParser()
        parser.add_argument("worker")
        parser.add_argument("--vectors", type=Path, required=True)
        parser.add_argument("--metric", required=True)
        parser.add_argument("--method", required=True)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--new-rows", type=Path)
        worker(parser.parse_args())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--parts", default="covers5,place,100k")
    parser.add_argument("--features", default="vgg16,hsv")
    parser.add_argument("--methods", default="tsne,pca,sklearn-tsne,umap")
    parser.add_argument("--methods-100k", default="pca,place")
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-map-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    figures: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_start": load()}
    if "covers5" in parts:
        covers5(args, work, figures)
    if "place" in parts:
        placement(args, work, figures)
    if "100k" in parts:
        synthetic(args, work, figures)
    figures["load_end"] = load()
    (work / "figures.json").write_text(json.dumps(figures, indent=2))
    log(f"figures in {work / 'figures.json'}")
    print(render(args, figures))


if __name__ == "__main__":
    main()
