"""Learning curve of the default genre model: test accuracy against the number of training covers.

    .venv/bin/python benchmarks/learning_curve.py --db COPY_OF_COVERS5.duckdb [--runs 0.1:3,0.25:3,0.5:2,1:1]

The default recipe is fitted on 10%, 25%, 50% and 100% of the stored train split (a subsample
stratified by each album's genre set, one per seed at the sizes below 100%), with the validation
split for early stopping as always, and scored on the test split.  It is fitted without the refit
on train + validation, so that the number of training albums is exactly the x axis; calibration
does not change the top genre, so it is left out.  Each run is appended to
benchmarks/results/learning_curve.json as it finishes, and a re-run skips the runs already there.
The table and plot go between the `learning-curve` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402
from coversearch.classify.data import LabelledAlbums, feature_sets_for, load_labelled  # noqa: E402
from coversearch.classify.evaluate import evaluate_predictions  # noqa: E402
from coversearch.classify.recipes import DEFAULT  # noqa: E402
from coversearch.classify.registry import make_estimator  # noqa: E402
from coversearch.classify.split import get_or_make_split  # noqa: E402
from coversearch.plots import pyplot, save_figure  # noqa: E402
from coversearch.store import Store  # noqa: E402


def subsample(data: LabelledAlbums, fraction: float, seed: int) -> LabelledAlbums:
    """``fraction`` of the albums of each genre set (at least one each), chosen by ``seed``."""
    if fraction >= 1:
        return data
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    strata: dict[tuple[str, ...], list[int]] = {}
    for i, genres in enumerate(data.genres):
        strata.setdefault(genres, []).append(i)
    for genres in sorted(strata):
        members = np.array(strata[genres])
        keep.extend(rng.permutation(members)[: max(1, round(fraction * len(members)))].tolist())
    keep.sort()
    return LabelledAlbums(data.album_ids[keep], data.X[keep], [data.genres[i] for i in keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="A copy of the covers5 store (train makes the split if missing).")
    parser.add_argument("--runs", default="0.1:3,0.25:3,0.5:2,1:1",
                        help="share of the train split:subsamples (seeds), comma-separated; a share of 1 has one subsample.")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "learning_curve.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    plan = [(float(share), int(seeds)) for share, seeds in (item.split(":") for item in args.runs.split(","))]

    args.results.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(args.db) as store:  # every feature is read once; each run subsamples these arrays
        feature_sets = feature_sets_for(store, list(DEFAULT.features))
        split = get_or_make_split(store)
        train, val, test = (load_labelled(store, feature_sets, split.album_ids(side)) for side in ("train", "val", "test"))
    X_val, y_val = val.expanded()
    # Runs of another store or split (a small test store, an older split) are neither reused nor shown.
    same_data = {"split": split.name, "split_albums": [len(train.album_ids), len(val.album_ids), len(test.album_ids)]}
    earlier = json.loads(args.results.read_text()) if args.results.exists() else []
    runs = [r for r in earlier if all(r.get(k) == v for k, v in same_data.items())]
    if len(runs) < len(earlier):
        print(f"{len(earlier) - len(runs)} earlier runs in {args.results} were on other data: ignored and replaced", flush=True)
    done = {(r["fraction"], r["seed"]) for r in runs}
    for fraction, seeds in plan:
        for seed in range(seeds if fraction < 1 else 1):
            if (fraction, seed) in done:
                continue
            part = subsample(train, fraction, seed)
            X, y = part.expanded()
            started = time.perf_counter()
            estimator = make_estimator(DEFAULT.method, DEFAULT.params).fit(X, y, X_val, y_val)
            seconds = time.perf_counter() - started
            result = evaluate_predictions(list(estimator.classes_), estimator.predict_proba(test.X), test.genres)
            runs.append({**same_data, "fraction": fraction, "seed": seed, "train_albums": len(part.album_ids), "train_rows": len(X),
                         "accuracy": result["accuracy"], "seconds": round(seconds, 1)})
            args.results.write_text(json.dumps(runs, indent=2))
            print(f"{fraction:>5} seed {seed}: {len(part.album_ids)} albums, test accuracy {result['accuracy']:.3f} ({seconds:.0f} s)", flush=True)

    table = [
        "| share of train | training albums | runs | test accuracy, mean | spread (sd) | min - max | fit s (mean) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    points = []
    for fraction in sorted({r["fraction"] for r in runs}):
        acc = np.array([r["accuracy"] for r in runs if r["fraction"] == fraction])
        albums = int(np.mean([r["train_albums"] for r in runs if r["fraction"] == fraction]))
        secs = np.mean([r["seconds"] for r in runs if r["fraction"] == fraction])
        sd = float(acc.std(ddof=1)) if len(acc) > 1 else None
        points.append((albums, float(acc.mean()), sd or 0.0, acc))
        table.append(f"| {fraction:.0%} | {albums:,} | {len(acc)} | {acc.mean():.1%} | {'-' if sd is None else f'{100 * sd:.1f} pts'} | "
                     f"{acc.min():.1%} - {acc.max():.1%} | {secs:.0f} |")
    # Accuracy against log2(albums): the gain per doubling of the labelled covers, fitted on every run
    # (only once two sizes have been measured).
    xs = np.log2([r["train_albums"] for r in runs])
    fitted = len(set(xs.tolist())) >= 2
    slope, intercept = np.polyfit(xs, [r["accuracy"] for r in runs], 1) if fitted else (0.0, 0.0)
    largest = max(p[0] for p in points)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for albums, _, _, acc in points:
        ax.scatter([albums] * len(acc), acc, color="#4a7ab5", alpha=0.5, s=14)
    ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], color="#1f3f6e", marker="o",
                capsize=4, label="mean +- sd over subsamples")
    if fitted:
        grid = np.linspace(min(xs), np.log2(2 * largest), 50)
        ax.plot(2 ** grid, slope * grid + intercept, color="#d9534f", linestyle="--",
                label=f"log fit: {100 * slope:+.1f} points per doubling")
    ax.axhline(0.2, color="#999", linewidth=1, linestyle=":", label="chance (5 genres)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training albums (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("default recipe (train split only, no refit) on covers5", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, HERE / "plots" / "learning-curve.png")

    block = "\n".join([
        f"Command: `nice -n 10 .venv/bin/python benchmarks/learning_curve.py --db COPY.duckdb --runs {args.runs}` "
        "(a copy of the covers5 store)  ",
        f"Machine: {machine_line()}, shared with other work (1-minute load {os.getloadavg()[0]:.1f} at the end)",
        "",
        f"Split `{split.name}`: {len(train.album_ids):,} train albums, {len(val.album_ids):,} validation (early stopping), "
        f"{len(test.album_ids):,} test. Subsamples are stratified by genre set; the model seeds are the recipe's.",
        "",
        *table,
        "",
        f"A straight line through every run against log2(training albums) gains {100 * slope:.1f} points per doubling "
        f"(extrapolated: {intercept + slope * np.log2(2 * largest):.1%} at {2 * largest:,} training albums, if the trend held)."
        if fitted else "Only one size measured: no trend can be fitted.",
        "",
        "![learning curve](plots/learning-curve.png)",
    ]) + "\n"
    print(block)
    if not args.no_readme:
        replace_block(HERE / "README.md", "learning-curve", block)


if __name__ == "__main__":
    main()
