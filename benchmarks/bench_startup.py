"""Start-up time of `coversearch --help` and `coversearch stats`: this tree against another, in one run.

    .venv/bin/python benchmarks/bench_startup.py --baseline BASE [--db STORE] [-n 5] [--readme]

--baseline is another checkout of the package (e.g. `git archive 9ad380e coversearch | tar -x -C BASE`).
Each command runs as a fresh process (`python -m coversearch.cli.main ...`), alternating between
the two trees, n times each; the table gives the best wall time of each (the least disturbed by
other load) and the ratio, then `python -X importtime`'s cumulative time for `coversearch.cli.main`
(best of n) and which heavy libraries the import loaded.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("faiss", "annoy", "tensorflow", "keras", "xgboost", "cv2", "ray", "sqlalchemy", "alembic", "duckdb", "numpy")


# Run from a folder holding neither tree: `python -m` and `-c` put the working folder first on sys.path.
NEUTRAL = Path(tempfile.gettempdir())


def run_once(tree: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "coversearch.cli.main", *args], env=env, check=True, cwd=NEUTRAL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def import_profile(tree: Path) -> tuple[float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = ("import sys, coversearch, coversearch.cli.main; assert coversearch.__file__.startswith(sys.argv[1]), coversearch.__file__; "
            "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(tree)], env=env, check=True, capture_output=True,
                          text=True, cwd=NEUTRAL)
    cumulative = next(int(m.group(1)) for line in done.stderr.splitlines()
                      if (m := re.match(r"import time:\s+\d+ \|\s+(\d+) \| coversearch\.cli\.main$", line)))
    loaded = set(done.stdout.strip().split(","))
    return cumulative / 1e6, [h for h in HEAVY if h in loaded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="another tree holding coversearch/ and migrations/")
    parser.add_argument("--db", type=Path, help="a store for `stats` (copied to a temporary folder first)")
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--readme", action="store_true", help="also write the table into benchmarks/README.md (block `startup`)")
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this tree": REPO}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"--help": ["--help"]}
        if args.db:
            db = Path(tmp) / "store.duckdb"
            shutil.copy(args.db, db)
            commands["stats"] = ["--db", str(db), "stats"]
        load_before = os.getloadavg()[0]
        wall = {(c, t): [] for c in commands for t in trees}
        imports = {t: [] for t in trees}
        heavy = {}
        for _ in range(args.n):
            for label, tree in trees.items():  # alternate, so that load changes hit both alike
                for command, argv in commands.items():
                    wall[(command, label)].append(run_once(tree, argv))
                seconds, heavy[label] = import_profile(tree)
                imports[label].append(seconds)
    load_after = os.getloadavg()[0]
    lines = [f"best of {args.n} (1-minute load {load_before:.1f} before, {load_after:.1f} after)", "",
             "| | baseline | this tree | ratio |", "|---|---:|---:|---:|"]
    for command in commands:
        a, b = min(wall[(command, "baseline")]), min(wall[(command, "this tree")])
        lines.append(f"| `coversearch {command}` wall | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |")
    a, b = min(imports["baseline"]), min(imports["this tree"])
    lines.append(f"| `import coversearch.cli.main` (-X importtime) | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |")
    lines.append(f"| heavy libraries loaded by the import | {', '.join(heavy['baseline']) or '-'} | {', '.join(heavy['this tree']) or '-'} | |")
    print("\n".join(lines))
    if args.readme:
        sys.path.insert(0, str(REPO))
        from benchmarks.readme_blocks import machine_line, replace_block

        command = f"PYTHONPATH= .venv/bin/python benchmarks/bench_startup.py --baseline BASE{' --db STORE' if args.db else ''} -n {args.n} --readme"
        replace_block(REPO / "benchmarks" / "README.md", "startup",
                      "\n".join([f"Command: `{command}`  ", f"Machine: {machine_line()}", "", *lines]))

if __name__ == "__main__":
    main()
