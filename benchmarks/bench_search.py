"""The standard run of `coversearch bench search`, written into benchmarks/README.md.

Runs the CLI command in-process on the covers5 store (hsv and vgg16, 4,702 albums) and on
100,000 synthetic vectors made from its vgg16 vectors (tiled + noise), every kind over the sweeps
in coversearch/bench/sweeps/, then copies the plots to benchmarks/plots/ (committed; the results folder
is git-ignored), rewrites the `search` block of benchmarks/README.md and prints the targets.
Points already in results.json are kept (rerun with --fresh to measure again).

    .venv/bin/python benchmarks/bench_search.py
    .venv/bin/python benchmarks/bench_search.py --scale 1000000 --no-real --kinds faiss-hnsw   # the 1M check
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for benchmarks.readme_blocks
from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402
from coversearch.bench import tables  # noqa: E402
from coversearch.cli.main import app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DB = REPO / "benchmarks" / "results" / "covers5.duckdb"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "search"
PLOTS = REPO / "benchmarks" / "plots"
README = REPO / "benchmarks" / "README.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="store with hsv and vgg16 embeddings (read only)")
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic vectors (0: none)")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--noise", type=float, default=1.0, help="synthetic noise, in median nearest-neighbour distances")
    parser.add_argument("--kinds", default=None, help="comma-separated kinds (default: all)")
    parser.add_argument("--no-real", action="store_true", help="skip the store's own vectors")
    parser.add_argument("--sweeps", type=Path, default=None, help="folder of <kind>.toml sweeps (default coversearch/bench/sweeps)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--fresh", action="store_true", help="measure every point again")
    parser.add_argument("--no-readme", action="store_true", help="leave benchmarks/README.md alone")
    args = parser.parse_args(argv)

    cli = ["--db", str(args.db), "bench", "search", "--scale", str(args.scale), "--queries", str(args.queries),
           "--out", str(args.out)]
    if args.noise != 1.0:
        cli += ["--noise", str(args.noise)]
    if args.kinds:
        cli += ["--kinds", args.kinds]
    if args.no_real:
        cli.append("--no-real")
    if args.sweeps:
        cli += ["--sweeps", str(args.sweeps)]
    if args.fresh:
        cli.append("--fresh")
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    app(args=cli, prog_name="coversearch", standalone_mode=False)
    seconds = time.perf_counter() - started

    results = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
    keys = [k for k in results["datasets"] if tables.points_of(results, k)]
    # Which command measured which data set, for the README (the standard run and, when run, the 1M check).
    script = ".venv/bin/python benchmarks/bench_search.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    runs_path = args.out / "runs.json"
    runs = json.loads(runs_path.read_text(encoding="utf-8")) if runs_path.is_file() else {}
    for key in keys:
        info = results["datasets"][key]
        ours = (info["real"] and not args.no_real) or (
            not info["real"] and info["n"] == args.scale and info["params"].get("noise_scale") == args.noise)
        measured_now = any(p["measured_at"] >= started_at for p in tables.points_of(results, key))
        if ours and (measured_now or key not in runs):
            runs[key] = {"command": script, "minutes": round(seconds / 60, 1) if measured_now else None}
    runs_path.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    body = "\n".join([
        "## Index search: recall, speed, size, memory (`coversearch bench search`)",
        "",
        f"Machine: {machine_line()}; shared with other work. Commands (each data set below names the one that "
        f"measured it; a rerun keeps points already measured, `--fresh` measures again):",
        "",
        *[f"- `{command}`" for command in dict.fromkeys(r["command"] for k, r in runs.items() if k in keys)],
        "",
        "Sweeps: `coversearch/bench/sweeps/*.toml` (the 1M check: `coversearch/bench/sweeps/1m/`); full results: "
        "`benchmarks/results/search/results.json` and `results.md` (git-ignored); plots copied to `benchmarks/plots/`. "
        "The script runs `coversearch --db benchmarks/results/covers5.duckdb bench search ...` in-process.",
        "",
        "Recall@10 as in ann-benchmarks (a returned item is a hit when its true distance <= the true 10th-nearest "
        "distance + 1e-3). q/s and p50/p99: one query at a time through `VectorIndex.search` on one thread; batch "
        "q/s: `batch_search` over all queries on every core. Disk: the saved index. RSS added: resident memory "
        "around the build (near 0 on small sets when the allocator reuses memory freed by an earlier build); "
        "memory_bytes: the index's own estimate. Genre accuracy: the k=10 vote of "
        "`coversearch.classify.knn` on the store's stored `default` split (train side indexed, test side scored) "
        "through the same kind and parameters; exact search is the reference. The \"10k store\" targets are measured on the "
        "real covers5 store (4,702 albums, a tenth held out as queries), not on N=10,000 synthetic vectors. "
        "duckdb (real-store sets only) scans the store's table restricted to the indexed albums by a SQL `WHERE` (the "
        "held-out queries are in that table), which slows it. `*` marks the Pareto front.",
        "",
        tables.markdown_report(results, keys, image_prefix="plots/", notes={
            k: f"Measured by `{r['command']}`" + (f" ({r['minutes']} min for the whole command)." if r["minutes"] is not None else ".")
            for k, r in runs.items()
        }).replace("\n#### ", "\n### ").replace("#### ", "### ", 1),
    ])
    if not args.no_readme:
        PLOTS.mkdir(parents=True, exist_ok=True)
        for old in PLOTS.glob("recall-qps-*.png"):
            if old.name not in {tables.plot_name(k) for k in keys}:
                old.unlink()
        for key in keys:
            shutil.copy2(args.out / tables.plot_name(key), PLOTS / tables.plot_name(key))
        replace_block(README, "search", body)
    print("targets:")
    print(tables.targets_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
