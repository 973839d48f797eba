"""The web page's API and `coversearch report` on covers5, timed from the outside.

    .venv/bin/python benchmarks/bench_web.py [--db benchmarks/results/covers5.duckdb] [-n 30]

Starts the real `coversearch serve` (a separate process, warm: store, models and VGG16 loaded at
start-up) on a copy of the store (so that the thumbnail cache it makes stays out of
benchmarks/results), with the models of benchmarks/results/models, uploads N real covers from
../shared/data/covers5 through HTTP for each feature (the default model classifies every upload,
k=10), and reports median / p90 latency per upload.  Then times `coversearch report` on the same
store, cold (no thumbnail cache) and warm.  The table goes to stdout and between the `web` markers
of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from benchmarks.report import machine_line, replace_block  # noqa: E402

TARGETS = {"hsv": 1.0, "vgg16": 2.0}
REPORT_TARGET = 60.0
COVERSEARCH = [sys.executable, "-m", "coversearch.cli.main"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=HERE / "results" / "covers5.duckdb")
    parser.add_argument("--models", type=Path, default=HERE / "results" / "models")
    parser.add_argument("--covers", type=Path, default=REPO.parent / "shared" / "data" / "covers5")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("-n", type=int, default=30, help="Uploads per feature.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        db = work / "covers5.duckdb"
        shutil.copy2(args.db, db)
        images = sorted(p for p in args.covers.rglob("*.jpg"))
        picks = random.Random(args.seed).sample(images, args.n)
        env = {**os.environ, "COVERSEARCH_VGG16_WEIGHTS": str(args.weights)}
        globals_ = ["--db", str(db), "--model-dir", str(args.models), "--index-dir", str(work / "indexes")]

        # -- the warm server ---------------------------------------------------------------------------
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        server = subprocess.Popen([*COVERSEARCH, *globals_, "serve", "--port", str(port)], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "w"))
        try:
            while True:
                try:
                    info = requests.get(f"{url}/api/info", timeout=5).json()
                    break
                except requests.ConnectionError:
                    if server.poll() is not None:
                        raise SystemExit(f"coversearch serve exited: {(work / 'serve.log').read_text()}")
                    time.sleep(0.2)
            ready = time.perf_counter() - started
            log(f"server ready in {ready:.1f} s (model {info['default_model']}, features {list(info['features'])})")
            latencies: dict[str, list[float]] = {}
            with requests.Session() as session:
                for feature in ("hsv", "vgg16"):
                    times = []
                    for path in picks:
                        data = path.read_bytes()
                        t = time.perf_counter()
                        response = session.post(f"{url}/api/query", files={"image": (path.name, data)},
                                                data={"feature": feature, "k": "10"}, timeout=60)
                        times.append(time.perf_counter() - t)
                        response.raise_for_status()
                        assert len(response.json()["similar"]["results"]) == 10 and response.json()["genres"]
                    latencies[feature] = times
                    log(f"{feature}: median {statistics.median(times) * 1000:.0f} ms, p90 {percentile(times, 0.9) * 1000:.0f} ms")
        finally:
            server.terminate()
            server.wait(timeout=30)

        # -- the report ----------------------------------------------------------------------------------
        report_times = {}
        for run in ("cold", "warm"):
            if run == "cold":
                shutil.rmtree(Path(str(db) + ".thumbs"), ignore_errors=True)
            t = time.perf_counter()
            subprocess.run([*COVERSEARCH, *globals_, "report", "--out", str(work / "report.html")], env=env, cwd=REPO,
                           check=True, capture_output=True)
            report_times[run] = time.perf_counter() - t
            log(f"report ({run} thumbnail cache): {report_times[run]:.1f} s")
        report_mb = (work / "report.html").stat().st_size / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "| what | n | median | p90 | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for feature, times in latencies.items():
        med, p90 = statistics.median(times), percentile(times, 0.9)
        lines.append(f"| upload + classify + top-10 search, {feature} | {len(times)} | {med * 1000:.0f} ms | {p90 * 1000:.0f} ms | "
                     f"< {TARGETS[feature]:.0f} s | {'yes' if p90 < TARGETS[feature] else 'no'} |")
    lines.append(f"| server start-up (store, {len(info['models'])} models, VGG16) | 1 | {ready:.1f} s | - | - | - |")
    for run, seconds in report_times.items():
        lines.append(f"| `coversearch report` ({run} thumbnail cache; {report_mb:.1f} MB HTML) | 1 | {seconds:.1f} s | - | "
                     f"< {REPORT_TARGET:.0f} s | {'yes' if seconds < REPORT_TARGET else 'no'} |")
    table = "\n".join(lines)
    block = (
        f"Command: `.venv/bin/python benchmarks/bench_web.py -n {args.n}`  \nMachine: {machine_line()}\n\n"
        f"`coversearch serve` on the covers5 store ({info['albums']:,} albums, exact search, default model "
        f"`{info['default_model']}`), {args.n} real covers uploaded over HTTP per feature, one at a time; latency is the "
        "whole POST /api/query round trip (decode, VGG16 and HSV vectors, genre model, top-10 search). "
        "The report times include starting the CLI (TensorFlow is not imported by it).\n\n" + table
    )
    print(table)
    if not args.no_readme:
        replace_block(HERE / "README.md", "web", block)


if __name__ == "__main__":
    main()
