"""The web page's API under load, hostile uploads and live updates, and `coversearch report`, timed from the outside.

    .venv/bin/python benchmarks/bench_web.py [--db benchmarks/results/covers5.duckdb] [--parts latency,load,hostile,live]
        [-n 30] [--clients 8,32,64] [--duration 60] [--hostile 32] [--live-add 500] [--live-remove 100]

Every part starts the real `coversearch serve` (a separate process: waitress, 8 threads, warm) on a
copy of the store (so that the thumbnail cache and the changes it makes stay out of
benchmarks/results), on 127.0.0.1 only, and uploads real covers from ../shared/data/covers5.

- latency: N covers uploaded one at a time per feature (the default model classifies every upload,
  k=10): median / p90 per upload; then `coversearch report`, cold and warm.  -> the `web` block.
- load: for each client count, that many concurrent clients upload random covers (vgg16 search,
  the default model) for --duration seconds: requests/s, p50/p95/p99 latency, errors, and the
  server's RSS (sampled every 0.2 s from /proc) at the start and at its peak.
- hostile: --hostile concurrent uploads of a 6000x6000 PNG of a few KB (refused from its header),
  then as many 3162x3162 RGBA PNGs of a few KB just under the 10 Mpx limit (decoded, two at a
  time): answers by status, and the RSS growth against the stated bound.
- compare: this tree against --baseline (another checkout of coversearch, e.g. the commit before a
  change), one server after the other in the same run and on the same store copy: N uploads one
  at a time per feature (median, p90), then --clients concurrent clients for --duration seconds
  each (uploads/s, p50/p99, errors); with the 1-minute load average at each step, so that a
  shared machine's figures are read as a ratio between the trees.
- live: the store copy first loses --live-add albums (their files are set aside); then, while 32
  clients upload, `coversearch ingest` brings those files back and `coversearch remove` takes
  --live-remove other albums away, in other processes; the server reloads when the store file
  changes.  Reports failed requests, and checks that every re-ingested cover is found by its
  own image (distance 0) and that no removed album is returned.
Load, hostile and live figures go between the `web-load` markers of benchmarks/README.md.
Clients run as threads of this process, on the same cores as the server.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402

TARGETS = {"hsv": 1.0, "vgg16": 2.0}
REPORT_TARGET = 60.0
P99_TARGET_8 = 2.0
RSS_GROWTH_TARGET_MB = 200
HOSTILE_GROWTH_TARGET_MB = 500
COVERSEARCH = [sys.executable, "-m", "coversearch.cli.main"]
MAX_REQUESTS_PER_CLIENT = 10_000  # a bound on count as well as on time


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """The peak RSS of a process, sampled every 0.2 s while running."""

    def __init__(self, pid: int):
        self.pid = pid
        self.start = rss_mb(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return

    def stop(self) -> "RssSampler":
        self._stop.set()
        self._thread.join()
        self.end = rss_mb(self.pid)
        self.peak = max(self.peak, self.end)
        return self


class Server:
    """`coversearch serve` in its own process, ready when /api/health answers."""

    def __init__(self, globals_: list[str], env: dict, log_path: Path, *extra: str, code: Path = REPO):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        started = time.perf_counter()
        # `python -m` puts its working folder first on the path: the checkout served is the one it runs in.
        self.process = subprocess.Popen([*COVERSEARCH, *globals_, "serve", "--port", str(self.port), *extra],
                                        env={**env, "PYTHONPATH": str(code)}, cwd=code,
                                        stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
        while True:
            try:
                self.health = requests.get(f"{self.url}/api/health", timeout=5).json()
                break
            except requests.ConnectionError:
                if self.process.poll() is not None:
                    raise SystemExit(f"coversearch serve exited: {log_path.read_text()}")
                time.sleep(0.2)
        self.ready_seconds = time.perf_counter() - started

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    rss: RssSampler | None = None

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + len(self.failures)


def run_load(url: str, pid: int, images: list[Path], clients: int, stop: threading.Event, seed: int = 0,
             form: dict | None = None) -> LoadResult:
    """``clients`` threads upload random covers until ``stop`` is set."""
    result = LoadResult(clients, 0.0)
    lock = threading.Lock()
    payloads = {p: p.read_bytes() for p in images}

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with requests.Session() as session:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    return
                path = rng.choice(images)
                t = time.perf_counter()
                try:
                    response = session.post(f"{url}/api/query", files={"image": (path.name, payloads[path])},
                                            data={"k": "10", **(form or {})}, timeout=120)
                    status = response.status_code
                except requests.RequestException as exc:
                    with lock:
                        result.failures.append(type(exc).__name__)
                    continue
                elapsed = time.perf_counter() - t
                with lock:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status == 200:
                        result.latencies.append(elapsed)

    result.rss = RssSampler(pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for i in range(clients):
            pool.submit(client, i)
    result.seconds = time.perf_counter() - started
    result.rss.stop()
    return result


def load_row(label: str, r: LoadResult) -> str:
    lat = r.latencies or [float("nan")]
    return (f"| {label} | {r.clients} | {r.seconds:.0f} s | {len(r.latencies)} | {len(r.latencies) / r.seconds:.2f} | "
            f"{percentile(lat, 0.5):.2f} s | {percentile(lat, 0.95):.2f} s | {percentile(lat, 0.99):.2f} s | {r.errors} | "
            f"{r.rss.start:.0f} MB | {r.rss.peak:.0f} MB | {r.rss.peak - r.rss.start:+.0f} MB |")


LOAD_HEADER = ("| run | clients | time | answered | req/s | p50 | p95 | p99 | errors | RSS at start | RSS peak | growth |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def part_latency(args, work: Path, db: Path, images: list[Path], env: dict, globals_: list[str]) -> str:
    picks = random.Random(args.seed).sample(images, args.n)
    server = Server(globals_, env, work / "serve-latency.log")
    try:
        info = requests.get(f"{server.url}/api/info", timeout=30).json()
        log(f"server ready in {server.ready_seconds:.1f} s (model {info['default_model']}, features {list(info['features'])})")
        latencies: dict[str, list[float]] = {}
        with requests.Session() as session:
            for feature in ("hsv", "vgg16"):
                times = []
                for path in picks:
                    data = path.read_bytes()
                    t = time.perf_counter()
                    response = session.post(f"{server.url}/api/query", files={"image": (path.name, data)},
                                            data={"feature": feature, "k": "10"}, timeout=60)
                    times.append(time.perf_counter() - t)
                    response.raise_for_status()
                    assert len(response.json()["similar"]["results"]) == 10 and response.json()["genres"]
                latencies[feature] = times
                log(f"{feature}: median {statistics.median(times) * 1000:.0f} ms, p90 {percentile(times, 0.9) * 1000:.0f} ms")
    finally:
        server.stop()

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

    lines = [
        "| what | n | median | p90 | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for feature, times in latencies.items():
        med, p90 = statistics.median(times), percentile(times, 0.9)
        lines.append(f"| upload + classify + top-10 search, {feature} | {len(times)} | {med * 1000:.0f} ms | {p90 * 1000:.0f} ms | "
                     f"< {TARGETS[feature]:.0f} s | {'yes' if p90 < TARGETS[feature] else 'no'} |")
    lines.append(f"| server start-up (store, {len(info['models'])} models, VGG16) | 1 | {server.ready_seconds:.1f} s | - | - | - |")
    for run, seconds in report_times.items():
        lines.append(f"| `coversearch report` ({run} thumbnail cache; {report_mb:.1f} MB HTML) | 1 | {seconds:.1f} s | - | "
                     f"< {REPORT_TARGET:.0f} s | {'yes' if seconds < REPORT_TARGET else 'no'} |")
    table = "\n".join(lines)
    print(table)
    return (
        f"Command: `.venv/bin/python benchmarks/bench_web.py --parts latency -n {args.n}`  \nMachine: {machine_line()}\n\n"
        f"`coversearch serve` on the covers5 store ({info['albums']:,} albums, exact search, default model "
        f"`{info['default_model']}`), {args.n} real covers uploaded over HTTP per feature, one at a time; latency is the "
        "whole POST /api/query round trip (decode, VGG16 and HSV vectors, genre model, top-10 search). "
        "The report times include starting the CLI (TensorFlow is not imported by it).\n\n" + table
    )


def part_compare(args, work: Path, images: list[Path], env: dict, globals_: list[str]) -> str:
    trees = [("this tree", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    picks = random.Random(args.seed).sample(images, args.n)
    lines = ["| code | what | n | median | p90 | p99 | uploads/s | errors | load (1 min) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, code in trees:
        server = Server(globals_, env, work / f"serve-compare-{label.replace(' ', '-')}.log", *args.serve_options, code=code)
        log(f"{label} ({code}): ready in {server.ready_seconds:.0f} s")
        try:
            with requests.Session() as session:
                for feature in ("hsv", "vgg16"):
                    times = []
                    for path in picks:
                        t = time.perf_counter()
                        response = session.post(f"{server.url}/api/query", files={"image": (path.name, path.read_bytes())},
                                                data={"feature": feature, "k": "10"}, timeout=120)
                        times.append(time.perf_counter() - t)
                        response.raise_for_status()
                    lines.append(f"| {label} | one at a time, feature={feature} | {len(times)} | {statistics.median(times):.2f} s | "
                                 f"{percentile(times, 0.9):.2f} s | - | {len(times) / sum(times):.2f} | 0 | {os.getloadavg()[0]:.1f} |")
                    log(lines[-1])
            for clients in args.clients:
                stop = threading.Event()
                timer = threading.Timer(args.duration, stop.set)
                timer.start()
                r = run_load(server.url, server.process.pid, images, clients, stop, args.seed, {"feature": "vgg16"})
                timer.cancel()
                lat = r.latencies or [float("nan")]
                lines.append(f"| {label} | {clients} clients, feature=vgg16 | {len(r.latencies)} | {percentile(lat, 0.5):.2f} s | "
                             f"{percentile(lat, 0.9):.2f} s | {percentile(lat, 0.99):.2f} s | {len(r.latencies) / r.seconds:.2f} | "
                             f"{r.errors} | {os.getloadavg()[0]:.1f} |")
                log(lines[-1])
        finally:
            server.stop()
    table = "\n".join(lines)
    print(table)
    return table


def part_load(args, work: Path, images: list[Path], env: dict, globals_: list[str]) -> list[str]:
    server = Server(globals_, env, work / "serve-load.log", *args.serve_options)
    log(f"server ready in {server.ready_seconds:.1f} s (pid {server.process.pid}, RSS {rss_mb(server.process.pid):.0f} MB)")
    rows = []
    try:
        # One request first, so that the first timed one does not pay for warming anything up.
        requests.post(f"{server.url}/api/query", files={"image": (images[0].name, images[0].read_bytes())}, timeout=120)
        baseline = rss_mb(server.process.pid)
        overall_peak = baseline
        for clients in args.clients:
            stop = threading.Event()
            timer = threading.Timer(args.duration, stop.set)
            timer.start()
            result = run_load(server.url, server.process.pid, images, clients, stop, seed=clients)
            timer.cancel()
            overall_peak = max(overall_peak, result.rss.peak)
            rows.append(load_row(f"sustained, {clients} clients", result))
            log(rows[-1])
        rows.append(f"| whole load run | - | - | - | - | - | - | - | - | {baseline:.0f} MB | {overall_peak:.0f} MB | "
                    f"{overall_peak - baseline:+.0f} MB |")
        log(rows[-1])
    finally:
        server.stop()
    return rows


def tiny_png(width: int, height: int, mode: str) -> bytes:
    """A PNG of a few KB that decodes to width x height pixels (one colour compresses to almost nothing)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height), (40, 80, 120, 200) if mode == "RGBA" else 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def part_hostile(args, work: Path, env: dict, globals_: list[str]) -> list[str]:
    server = Server(globals_, env, work / "serve-hostile.log", *args.serve_options)
    rows = []
    try:
        cases = [("6000x6000 greyscale PNG (over the pixel limit)", tiny_png(6000, 6000, "L")),
                 ("3162x3162 RGBA PNG (just under the limit: decoded)", tiny_png(3162, 3162, "RGBA"))]
        for label, data in cases:
            rss = RssSampler(server.process.pid)
            statuses: dict[int, int] = {}
            lock = threading.Lock()
            started = time.perf_counter()

            def upload(_):
                try:
                    status = requests.post(f"{server.url}/api/query", files={"image": ("hostile.png", data)}, timeout=600).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

            with ThreadPoolExecutor(args.hostile) as pool:
                list(pool.map(upload, range(args.hostile)))
            seconds = time.perf_counter() - started
            rss.stop()
            answered = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items(), key=str))
            rows.append(f"| {args.hostile} concurrent {label}, {len(data) / 1e6:.2f} MB each | {answered} | {seconds:.1f} s | "
                        f"{rss.start:.0f} MB | {rss.peak:.0f} MB | {rss.peak - rss.start:+.0f} MB |")
            log(rows[-1])
    finally:
        server.stop()
    return rows


def part_live(args, work: Path, db: Path, images: list[Path], env: dict, globals_: list[str]) -> list[str]:
    import duckdb

    # Set aside --live-add albums (one file each) to ingest again while serving; pick --live-remove others to remove.
    con = duckdb.connect(str(db), read_only=True)
    single = con.execute("SELECT album_id, any_value(path) FROM album_files GROUP BY album_id HAVING count(*) = 1 ORDER BY album_id").fetchall()
    genres = dict(con.execute("SELECT album_id, any_value(genre) FROM album_genres GROUP BY album_id").fetchall())
    features = ",".join(name for (name,) in con.execute("SELECT DISTINCT name FROM feature_sets ORDER BY name").fetchall())
    con.close()
    rng = random.Random(args.seed)
    chosen = rng.sample(single, args.live_add + args.live_remove)
    comeback, doomed = chosen[: args.live_add], chosen[args.live_add:]
    folder = work / "comeback"
    for album_id, path in comeback:
        (folder / genres[album_id]).mkdir(parents=True, exist_ok=True)
        (folder / genres[album_id] / Path(path).name).symlink_to(Path(path).resolve())
    ids = [str(a) for a, _ in comeback]
    subprocess.run([*COVERSEARCH, *globals_, "remove", "--yes", *sum((["--album", a] for a in ids), [])], env=env, cwd=REPO,
                   check=True, capture_output=True)
    server = Server(globals_, env, work / "serve-live.log", *args.serve_options)
    albums_before = server.health["albums"]
    log(f"live: serving {albums_before} albums; ingesting {len(comeback)} and removing {len(doomed)} while {args.live_clients} clients upload")
    try:
        stop = threading.Event()
        outcome: dict[str, float] = {}

        def writers() -> None:
            t = time.perf_counter()
            subprocess.run([*COVERSEARCH, *globals_, "ingest", str(folder), "--features", features, "--quiet"],
                           env=env, cwd=REPO, check=True)
            outcome["ingest_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            subprocess.run([*COVERSEARCH, *globals_, "remove", "--yes", *sum((["--album", str(a)] for a, _ in doomed), [])],
                           env=env, cwd=REPO, check=True, capture_output=True)
            outcome["remove_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            want = albums_before + len(comeback) - len(doomed)
            deadline = time.monotonic() + 600
            while requests.get(f"{server.url}/api/health", timeout=60).json()["albums"] != want:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not reload within 600 s")
                time.sleep(0.5)
            outcome["reloaded_after"] = time.perf_counter() - t
            stop.set()

        writer = threading.Thread(target=writers)
        writer.start()
        timer = threading.Timer(args.live_timeout, stop.set)
        timer.start()
        result = run_load(server.url, server.process.pid, images, args.live_clients, stop, seed=99)
        timer.cancel()
        writer.join()
        health = requests.get(f"{server.url}/api/health", timeout=60).json()
        feature = requests.get(f"{server.url}/api/info", timeout=60).json()["default_feature"]

        # After the reload: every re-ingested cover finds itself; no removed album comes back.
        found_self = 0
        returned_removed = 0
        removed_ids = {a for a, _ in doomed}
        with requests.Session() as session:
            for album_id, path in comeback:
                data = Path(path).read_bytes()
                answer = session.post(f"{server.url}/api/query", files={"image": ("q.jpg", data)}, data={"k": "10"}, timeout=120).json()
                top = answer["similar"]["results"][0]
                found_self += top["distance"] < 1e-5
            for album_id, path in doomed:
                answer = session.post(f"{server.url}/api/query", files={"image": ("q.jpg", Path(path).read_bytes())},
                                      data={"k": "10"}, timeout=120).json()
                returned_removed += any(h["album_id"] in removed_ids for h in answer["similar"]["results"])
    finally:
        server.stop()
    rows = [load_row(f"live update, {args.live_clients} clients", result)]
    rows.append(f"\nIngest of {len(comeback)} covers took {outcome['ingest_seconds']:.0f} s and the removal of {len(doomed)} albums "
                f"{outcome['remove_seconds']:.1f} s, both while the server answered; the server had reloaded "
                f"{outcome['reloaded_after']:.1f} s after the removal ended ({health['reloads']} reloads in all, by the file "
                f"watcher). Failed requests during the run: {result.errors}. After the reload: {found_self} of {len(comeback)} "
                f"re-ingested covers found themselves at distance 0 ({feature}); removed albums returned for their own image: "
                f"{returned_removed} of {len(doomed)} queries.")
    log("\n".join(rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=HERE / "results" / "covers5.duckdb")
    parser.add_argument("--models", type=Path, default=HERE / "results" / "models")
    parser.add_argument("--covers", type=Path, default=REPO.parent / "shared" / "data" / "covers5")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--parts", default="latency,load,hostile,live")
    parser.add_argument("-n", type=int, default=30, help="Uploads per feature (latency).")
    parser.add_argument("--clients", default="8,32,64", help="Concurrent clients per sustained run (load).")
    parser.add_argument("--duration", type=float, default=60, help="Seconds per sustained run (load).")
    parser.add_argument("--threads", type=int, default=8, help="Server threads.")
    parser.add_argument("--decode-slots", type=int, default=None, help="Server --decode-slots (default: the server's).")
    parser.add_argument("--hostile", type=int, default=32, help="Concurrent hostile uploads.")
    parser.add_argument("--live-add", type=int, default=500)
    parser.add_argument("--live-remove", type=int, default=100)
    parser.add_argument("--live-clients", type=int, default=32)
    parser.add_argument("--live-timeout", type=float, default=1800, help="Upper bound on the live run, in seconds.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=Path, default=None, help="compare: another coversearch checkout to measure after this one.")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.serve_options = ["--threads", str(args.threads)] + (["--decode-slots", str(args.decode_slots)] if args.decode_slots else [])
    parts = args.parts.split(",")

    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        db = work / "covers5.duckdb"
        shutil.copy2(args.db, db)
        models = work / "models"
        if args.models.is_dir():
            shutil.copytree(args.models, models)  # the live part's changes make them stale: keep the originals
        images = sorted(p for p in args.covers.rglob("*.jpg"))
        env = {**os.environ, "COVERSEARCH_VGG16_WEIGHTS": str(args.weights), "PYTHONPATH": str(REPO)}
        globals_ = ["--db", str(db), "--model-dir", str(models), "--index-dir", str(work / "indexes")]
        if "latency" in parts:
            block = part_latency(args, work, db, images, env, globals_)
            if not args.no_readme:
                replace_block(HERE / "README.md", "web", block)
        rows: dict[str, list[str]] = {}
        if "compare" in parts:
            part_compare(args, work, images, env, globals_)
        if "load" in parts:
            rows["load"] = part_load(args, work, images, env, globals_)
        if "hostile" in parts:
            rows["hostile"] = part_hostile(args, work, env, globals_)
        if "live" in parts:
            rows["live"] = part_live(args, work, db, images, env, globals_)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if rows and not args.no_readme:
        replace_block(HERE / "README.md", "web-load", load_block(args, rows))


def load_block(args, rows: dict[str, list[str]]) -> str:
    command = (f".venv/bin/python benchmarks/bench_web.py --parts {','.join(rows)} --clients {','.join(map(str, args.clients))} "
               f"--duration {args.duration:g} --hostile {args.hostile} --live-add {args.live_add} --live-remove {args.live_remove}")
    text = [f"Command: `{command}`  \nMachine: {machine_line()}\n",
            "`coversearch serve` (waitress, 8 threads, 2 decode slots, 10 Mpx limit) on a copy of the covers5 store, on 127.0.0.1; "
            "each client uploads random real covers (vgg16 search, k=10, the default model classifies) back to back; the clients "
            "are threads of the benchmark process on the same cores. RSS is the server process's, sampled every 0.2 s.\n"]
    if "load" in rows or "live" in rows:
        text += [LOAD_HEADER, *rows.get("load", []), *[r for r in rows.get("live", [])[:1]], ""]
        text += [f"Targets: 0 errors; p99 under {P99_TARGET_8:.0f} s at 8 clients; RSS growth under {RSS_GROWTH_TARGET_MB} MB over the run.\n"]
    if "hostile" in rows:
        text += ["| hostile uploads | answers | time | RSS at start | RSS peak | growth |", "|---|---|---:|---:|---:|---:|",
                 *rows["hostile"], "",
                 f"Target: all refused or answered, RSS growth under {HOSTILE_GROWTH_TARGET_MB} MB. Stated bound for uploads under "
                 "the limit: decode slots x ~21 bytes/pixel (an RGBA decode) x 10 Mpx = 420 MB, plus threads x 10 MB of bodies.\n"]
    if "live" in rows:
        text += rows["live"][1:]
    return "\n".join(text)


if __name__ == "__main__":
    main()
