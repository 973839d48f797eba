"""Ingest throughput: what users run (the default features) against one bare VGG16 forward pass,
against the previous commit's two-network ingest, and the conv base under other CPU runtimes.

    .venv/bin/python benchmarks/bench_ingest.py [--images 512] [--baseline c0b12c6] [--full]
        [--runtimes keras,xla,openvino] [--no-readme]

In one run:
- HSV ingest of all of covers5 (target >= 400 images/s);
- the same N distinct covers through one bare forward pass of the backbone (preloaded,
  preprocessed arrays; `predict_on_batch` in batches of 32) and through a full `ingest` with the
  default features `hsv,vgg16,vgg16-layers` into a fresh store (target: >= 90% of bare);
- before/after: the same N covers ingested with the default features by this tree and by
  `--baseline` (a git commit, checked out into a temporary worktree), each in its own process,
  alternated twice, best of two (target: >= 1.8x).  `--full` adds the same on all of covers5;
- peak RSS of a `serve` engine (store searched by vgg16, a vgg16-layers model, one upload) under
  this tree and the baseline: one network resident instead of two;
- the conv base's images/s under `--runtimes`, interleaved batch by batch so that a noisy machine
  loads them alike, with each runtime's vectors against Keras' (min cosine per vector).

The tables are printed and written between the `ingest` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402
from coversearch.features.embedder import Embedder  # noqa: E402
from coversearch.imaging.images import decode_image, read_bytes  # noqa: E402
from coversearch.features.registry import get_extractor  # noqa: E402
from coversearch.features.vgg16 import BATCH_SIZE, IMAGENET_224, shared_backbone  # noqa: E402
from coversearch.ingest.pipeline import ingest  # noqa: E402
from coversearch.ingest.readers import SourceListing, read_folder  # noqa: E402
from coversearch.store import Store  # noqa: E402


# The default features of the two-network baseline (c0b12c6): the VGG16 heads and hsv.  Today's
# default adds phash (no network), which the baseline cannot compute.
DEFAULT_FEATURES = "hsv,vgg16,vgg16-layers"


def distinct_items(listing: SourceListing, n: int) -> SourceListing:
    """n items with distinct bytes, taken round-robin over genres so every genre is in."""
    by_genre: dict[str, list] = {}
    for item in listing.items:
        by_genre.setdefault(item.genres[0], []).append(item)
    seen, picked = set(), []
    queues = [list(v) for v in by_genre.values()]
    while len(picked) < n and any(queues):
        for queue in queues:
            while queue:
                item = queue.pop(0)
                data = item.path.read_bytes()
                if data not in seen:
                    seen.add(data)
                    picked.append(item)
                    break
            if len(picked) == n:
                break
    return SourceListing(picked, [])


def linked_folder(listing: SourceListing, dest: Path) -> Path:
    """The listing's files as ROOT/<genre>/<file> symlinks, for a command-line ingest."""
    for item in listing.items:
        (dest / item.genres[0]).mkdir(parents=True, exist_ok=True)
        (dest / item.genres[0] / item.path.name).symlink_to(item.path.resolve())
    return dest


def bench_hsv(covers: Path, workdir: Path) -> dict:
    listing = read_folder(covers)
    with Store.open(workdir / "hsv.duckdb") as store:
        summary = ingest(store, listing, [get_extractor("hsv")])
    return {"images": summary.seen, "seconds": summary.seconds, "rate": summary.seen / summary.seconds}


def bench_one_pass(listing: SourceListing, workdir: Path, weights: Path) -> dict:
    """One bare forward pass of the backbone against a full default-feature ingest, same covers."""
    n = len(listing.items)
    backbone = shared_backbone(weights, IMAGENET_224)
    model = backbone.model()
    batch = backbone.preprocess(np.stack([backbone.prepare(decode_image(read_bytes(i.path)).rgb) for i in listing.items]))
    model.predict_on_batch(batch[:BATCH_SIZE])  # warm-up (graph tracing) outside the clock
    started = time.perf_counter()
    for start in range(0, n, BATCH_SIZE):
        model.predict_on_batch(batch[start : start + BATCH_SIZE])
    bare_seconds = time.perf_counter() - started

    extractors = [get_extractor(name, vgg16_weights=weights) for name in DEFAULT_FEATURES.split(",")]
    forwarded = backbone.images_forwarded
    with Store.open(workdir / "default.duckdb") as store:
        summary = ingest(store, listing, extractors)
    assert all(summary.counts.embeddings[name] == n for name in DEFAULT_FEATURES.split(","))
    return {
        "images": n,
        "bare_seconds": bare_seconds,
        "ingest_seconds": summary.seconds,
        "passes_per_cover": (backbone.images_forwarded - forwarded) / n,
    }


def cli_ingest(tree: Path, folder: Path, db: Path, weights: Path) -> dict:
    """`coversearch ingest` with the default features, run from ``tree``'s code in a new process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "ingest", str(folder),
           "--features", DEFAULT_FEATURES, "--vgg16-weights", str(weights), "--quiet", "--json"]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def bench_before_after(folder: Path, n: int, baseline: Path, workdir: Path, weights: Path, rounds: int = 2) -> dict:
    """Best of ``rounds`` alternated runs of each tree's ingest on the same covers."""
    best = {"this": float("inf"), "baseline": float("inf")}
    for r in range(rounds):
        for name, tree in (("baseline", baseline), ("this", REPO)):
            db = workdir / f"{folder.name}-{name}-{r}.duckdb"
            summary = cli_ingest(tree, folder, db, weights)
            assert summary["albums_added"] == n, summary
            best[name] = min(best[name], summary["seconds"])
            db.unlink()
    return {"images": n, "this_seconds": best["this"], "baseline_seconds": best["baseline"]}


SERVE_SETUP = """
import sys
from pathlib import Path
from coversearch.classify.recipes import Recipe
from coversearch.classify.train import train_model
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store
folder, db, models, weights = map(Path, sys.argv[1:5])
with Store.open(db) as store:
    ingest(store, read_folder(folder), [get_extractor(n, vgg16_weights=weights) for n in ("hsv", "vgg16", "vgg16-layers")])
    train_model(store, models, Recipe("xgb-layers", "xgboost", ("vgg16-layers",), {"n_estimators": 5}), name="xgb-layers")
"""

SERVE_RSS = """
import json, sys
from pathlib import Path
from coversearch.web import create_app
folder, db, models, weights, indexes = map(Path, sys.argv[1:6])
app = create_app(db, models, indexes, weights)
query = next(folder.rglob("*.jpg"))
with open(query, "rb") as fh:
    answer = app.test_client().post("/api/query", data={"image": (fh, "q.jpg"), "feature": "vgg16", "model": "xgb-layers"})
assert answer.status_code == 200, answer.get_json()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({key: int(status[key].split()[0]) * 1024 for key in ("VmHWM", "VmRSS")}))
"""


def bench_serve_rss(folder: Path, baseline: Path, workdir: Path, weights: Path) -> dict:
    """Peak RSS of a serve engine after one upload, under each tree (each makes its own store)."""
    out = {}
    for name, tree in (("baseline", baseline), ("this", REPO)):
        env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
        base = workdir / f"serve-{name}"
        base.mkdir()
        args = [str(folder), str(base / "s.duckdb"), str(base / "models"), str(weights)]
        subprocess.run([sys.executable, "-c", SERVE_SETUP, *args], cwd=tree, env=env, check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-c", SERVE_RSS, *args, str(base / "indexes")], cwd=tree, env=env,
                              check=True, capture_output=True, text=True)
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# -- other runtimes for the conv base ------------------------------------------------------------
def keras_runtime(model):
    return lambda batch: [np.asarray(o) for o in model.predict_on_batch(batch)]


def xla_runtime(model):
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), jit_compile=True)
    return lambda batch: [np.asarray(o) for o in call(batch)]


def openvino_runtime(model):
    # OpenVINO's converter sends usage telemetry when its telemetry package is importable; a
    # benchmark must not reach the network, so the converter's own no-op stub is used instead.
    sys.modules.setdefault("openvino_telemetry", None)
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converted = ov.convert_model(tmp)
    compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda batch: [np.asarray(request.infer([batch])[o]).copy() for o in compiled.outputs]


RUNTIMES = {"keras": keras_runtime, "xla": xla_runtime, "openvino": openvino_runtime}


def bench_runtimes(listing: SourceListing, weights: Path, names: list[str]) -> dict:
    backbone = shared_backbone(weights, IMAGENET_224)
    model = backbone.model()
    batch = backbone.preprocess(np.stack([backbone.prepare(decode_image(read_bytes(i.path)).rgb) for i in listing.items]))
    runs = {}
    for name in names:
        try:
            runs[name] = RUNTIMES[name](model)
            runs[name](batch[:BATCH_SIZE])  # warm-up: tracing, compilation
        except Exception as exc:  # a runtime that does not install or convert is reported, not fatal
            print(f"runtime {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            runs.pop(name, None)
    seconds = dict.fromkeys(runs, 0.0)
    outputs: dict[str, list[list[np.ndarray]]] = {name: [] for name in runs}
    for start in range(0, len(batch), BATCH_SIZE):
        for name, run in runs.items():  # interleaved: every runtime sees the same load
            t = time.perf_counter()
            outputs[name].append(run(batch[start : start + BATCH_SIZE]))
            seconds[name] += time.perf_counter() - t
    heads = {"vgg16": get_extractor("vgg16", vgg16_weights=weights), "vgg16-layers": get_extractor("vgg16-layers", vgg16_weights=weights)}

    def vectors(name):
        outs = {layer: np.concatenate([o[i] for o in outputs[name]]) for i, layer in enumerate(IMAGENET_224.outputs)}
        return {h: ex.vectors(outs) for h, ex in heads.items()}

    reference = vectors("keras")
    result = {}
    for name in runs:
        got = vectors(name)
        cos = {}
        for h in heads:
            a, b = reference[h], got[h]
            cos[h] = float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
        result[name] = {"seconds": seconds[name], "images": len(batch), "min_cosine": cos}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--covers", type=Path, default=REPO.parent / "shared" / "data" / "covers5")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--images", type=int, default=512, help="Distinct covers for the VGG16 rows.")
    parser.add_argument("--baseline", default="c0b12c6", help="Commit to compare with (the last two-network ingest).")
    parser.add_argument("--full", action="store_true", help="Also time all of covers5, this tree and the baseline.")
    parser.add_argument("--runtimes", default="keras,xla,openvino")
    parser.add_argument("--no-readme", action="store_true", help="Print only; leave benchmarks/README.md alone.")
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    if "keras" not in runtimes:
        runtimes.insert(0, "keras")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = tmp / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            listing = distinct_items(read_folder(args.covers), args.images)
            folder = linked_folder(listing, tmp / "covers")
            hsv = bench_hsv(args.covers, tmp)
            one = bench_one_pass(listing, tmp, args.weights)
            before_after = bench_before_after(folder, args.images, baseline, tmp, args.weights)
            full = None
            if args.full:
                albums = len({item.path.read_bytes() for item in read_folder(args.covers).items})
                full = bench_before_after(args.covers, albums, baseline, tmp, args.weights, rounds=1)
            rss = bench_serve_rss(folder, baseline, tmp, args.weights)
            rt = bench_runtimes(listing, args.weights, runtimes)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], capture_output=True)

    n = one["images"]
    bare_rate, ingest_rate = n / one["bare_seconds"], n / one["ingest_seconds"]
    ratio = ingest_rate / bare_rate
    speedup = before_after["baseline_seconds"] / before_after["this_seconds"]
    yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
    rows = [
        "| measurement | images | seconds | images/s | target | met |",
        "|---|---:|---:|---:|---|---|",
        f"| HSV ingest, all of covers5 | {hsv['images']} | {hsv['seconds']:.1f} | {hsv['rate']:.0f} | >= 400 | {yes(hsv['rate'] >= 400)} |",
        f"| VGG16 backbone, one bare forward pass (`predict_on_batch`, batches of 32, preloaded arrays) | {n} | {one['bare_seconds']:.1f} | {bare_rate:.1f} | | |",
        f"| ingest, default features `{DEFAULT_FEATURES}` (read, hash, decode, resize, forward, write) | {n} | {one['ingest_seconds']:.1f} | {ingest_rate:.1f} | >= 90% of bare | {ratio:.0%} {yes(ratio >= 0.9)} |",
        f"| forward passes per cover in that ingest | | | {one['passes_per_cover']:.2f} | 1 | {yes(one['passes_per_cover'] == 1)} |",
        f"| `coversearch ingest`, default features, baseline {args.baseline} (two networks), best of 2 | {n} | {before_after['baseline_seconds']:.1f} | {n / before_after['baseline_seconds']:.1f} | | |",
        f"| `coversearch ingest`, default features, this tree (one backbone), best of 2 | {n} | {before_after['this_seconds']:.1f} | {n / before_after['this_seconds']:.1f} | >= 1.8x baseline | {speedup:.2f}x {yes(speedup >= 1.8)} |",
    ]
    if full:
        full_speedup = full["baseline_seconds"] / full["this_seconds"]
        rows += [
            f"| all of covers5, baseline {args.baseline} | {full['images']} albums | {full['baseline_seconds']:.0f} | {full['images'] / full['baseline_seconds']:.1f} | | |",
            f"| all of covers5, this tree | {full['images']} albums | {full['this_seconds']:.0f} | {full['images'] / full['this_seconds']:.1f} | >= 1.8x baseline | {full_speedup:.2f}x {yes(full_speedup >= 1.8)} |",
        ]
    mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    rows += [
        "",
        "| `serve` engine after one upload (vgg16 search, vgg16-layers model) | peak RSS | RSS after the upload |",
        "|---|---:|---:|",
        f"| baseline {args.baseline} (a network per feature) | {mib(rss['baseline']['VmHWM'])} | {mib(rss['baseline']['VmRSS'])} |",
        f"| this tree (one backbone) | {mib(rss['this']['VmHWM'])} | {mib(rss['this']['VmRSS'])} |",
        "",
        "| conv-base runtime (interleaved batch by batch) | images | seconds | images/s | vs Keras | min cosine to Keras, vgg16 / vgg16-layers |",
        "|---|---:|---:|---:|---:|---|",
    ]
    keras_rate = rt["keras"]["images"] / rt["keras"]["seconds"]
    for name, r in rt.items():
        rate = r["images"] / r["seconds"]
        cos = r["min_cosine"]
        rows.append(f"| {name} | {r['images']} | {r['seconds']:.1f} | {rate:.1f} | {rate / keras_rate:.2f}x | {cos['vgg16']:.7f} / {cos['vgg16-layers']:.7f} |")
    command = f".venv/bin/python benchmarks/bench_ingest.py --images {args.images} --baseline {args.baseline}"
    command += " --full" if args.full else ""
    command += f" --runtimes {','.join(runtimes)}"
    block = f"Command: `{command}`  \nMachine: {machine_line()}\n\n" + "\n".join(rows) + "\n"
    print(block)
    if not args.no_readme:
        replace_block(HERE / "README.md", "ingest", block)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
