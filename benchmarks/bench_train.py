"""The default `coversearch train` on covers5: this tree against an older commit, in one run.

    .venv/bin/python benchmarks/bench_train.py --db COPY_OF_COVERS5.duckdb [--old 9ad380e] [--skip-old]

Each side runs the real command, `coversearch --db DB --model-dir DIR train --json --quiet`, in a
subprocess of its own (PYTHONPATH pointing at its tree: this checkout, or `git archive` of --old
unpacked in a temporary folder), one after the other on the same store, so both train and test on
the same stored group-aware split.  Reported per side: wall time, CPU time, test accuracy,
calibrated test ECE, the share of test albums answered "unknown", and the 1-minute load before and
after; for this tree, the stage table the card records (`train --verbose` prints the same).
The store is written to only when it has no split yet (the first train makes it): pass a copy.
Results go to benchmarks/results/bench_train.json; with --readme, the figures also go between the
`train-speed` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402

OLD_DEFAULT = "9ad380e"  # the last commit before training was staged and its double fits removed


def export_tree(ref: str, dest: Path) -> Path:
    """The files of commit ``ref`` under ``dest`` (git archive: no checkout, no worktree left behind)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def train_once(tree: Path, db: Path, model_dir: Path, args: list[str] | tuple = ()) -> dict:
    """One `train` (the default, or ``args``) by the code in ``tree``: its figures, wall and CPU
    seconds, load around it."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "--model-dir", str(model_dir),
               "train", *args, "--json", "--quiet"]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"train {' '.join(args)} by {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout)
    evaluation, card = out["evaluation"], out["card"]
    return {
        "model": card["name"],
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round((cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime), 1),
        "train_seconds": card["train_seconds"],
        "accuracy": evaluation["accuracy"],
        "per_genre_recall": evaluation.get("per_genre_recall"),
        "ece_calibrated": evaluation["calibration"]["after"]["ece"],
        "ece_raw": evaluation["calibration"]["before"]["ece"],
        "unknown_share": evaluation["abstained_share"],
        "answered_accuracy": evaluation.get("answered_accuracy"),
        "test_albums": evaluation["albums"],
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "stages": card.get("stages"),
        "params": card.get("params"),
    }


def report(new: dict, old: dict | None, old_ref: str) -> str:
    lines = [f"Machine: {machine_line()}.", "",
             "| code | wall s | CPU s | test accuracy | ECE (calibrated) | \"unknown\" | load before/after |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, r in (("this tree", new), (f"{old_ref} (before)", old)):
        if r is not None:
            lines.append(f"| {label} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['accuracy']:.1%} | "
                         f"{r['ece_calibrated']:.3f} | {r['unknown_share']:.1%} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    if old is not None:
        lines += ["", f"Speed-up: {old['wall_seconds'] / new['wall_seconds']:.1f}x wall, "
                      f"{old['cpu_seconds'] / new['cpu_seconds']:.1f}x CPU; accuracy {100 * (new['accuracy'] - old['accuracy']):+.1f} points "
                      f"on the same {new['test_albums']} test albums."]
    if new.get("stages"):
        lines += ["", "Stages of this tree's run (as `coversearch train --verbose` prints them):", "",
                  "| stage | seconds |", "| --- | ---: |"]
        lines += [f"| {s['stage']} | {s['seconds']:.1f} |" for s in new["stages"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="A copy of the covers5 store (vgg16-layers at least).")
    parser.add_argument("--old", default=OLD_DEFAULT, help="The commit to compare against (default: %(default)s).")
    parser.add_argument("--skip-old", action="store_true", help="Train with this tree only.")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_train.json")
    parser.add_argument("--readme", action="store_true", help="Also write the figures into benchmarks/README.md.")
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_line(), "db": str(args.db), "old_ref": args.old, "new": None, "old": None}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        print(f"training with this tree ({REPO}) ...", flush=True)
        new = results["new"] = train_once(REPO, args.db, tmp / "models-new")
        args.out.write_text(json.dumps(results, indent=2))  # kept even if the slower old run is cut short
        print(json.dumps({k: v for k, v in new.items() if k not in ("stages", "params")}), flush=True)
        old = None
        if not args.skip_old:
            tree = export_tree(args.old, tmp / "old-tree")
            print(f"training with {args.old} ...", flush=True)
            old = results["old"] = train_once(tree, args.db, tmp / "models-old")
            print(json.dumps({k: v for k, v in old.items() if k not in ("stages", "params")}), flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    text = report(new, old, args.old)
    print(text)
    if args.readme:
        replace_block(HERE / "README.md", "train-speed", text)


if __name__ == "__main__":
    main()
