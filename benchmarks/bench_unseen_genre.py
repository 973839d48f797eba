"""Covers of a genre the model never saw: how many come out "unknown", against in-set covers.

    .venv/bin/python benchmarks/bench_unseen_genre.py --db COPY_OF_COVERS5.duckdb [--genres Country,Pop]

covers5 has only five genres, so an unseen genre is made by holding one out: for each held-out
genre G, the default recipe is fitted on the train split's albums that do not carry G (the
validation albums without G for early stopping), exactly as ``coversearch train --no-refit``
fits it; temperature scaling and the default threshold (the highest that abstains on at most
``DEFAULT_MAX_ABSTAIN`` of validation albums) are fitted on those validation albums as ``train``
does (same functions).  Then on the test split:
- in-set covers (albums without G): share abstained at the default threshold, accuracy;
- covers of G alone (the unseen genre): share abstained, and which known genre the rest were given.
Albums filed under G and another genre are left out of both.  The separability of the two by the
top calibrated probability is summarised as an AUROC (0.5: the threshold cannot tell them apart).
Features are read from the store once; each held-out genre is one fit.  Runs are appended to
benchmarks/results/unseen_genre.json as they finish and a re-run skips the genres already there.
The table goes between the `unseen-genre` markers of benchmarks/README.md.
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
from coversearch.classify.calibration import (  # noqa: E402
    DEFAULT_MAX_ABSTAIN, calibrated, calibration_measures, choose_min_confidence, fit_calibrator, genre_matrix,
)
from coversearch.classify.data import LabelledAlbums, feature_sets_for, load_labelled  # noqa: E402
from coversearch.classify.recipes import DEFAULT  # noqa: E402
from coversearch.classify.registry import make_estimator  # noqa: E402
from coversearch.classify.split import get_or_make_split  # noqa: E402
from coversearch.store import Store  # noqa: E402

THRESHOLDS = (0.3, 0.35, 0.4, 0.5)


def select(data: LabelledAlbums, keep: np.ndarray) -> LabelledAlbums:
    idx = np.flatnonzero(keep)
    return LabelledAlbums(data.album_ids[idx], data.X[idx], [data.genres[i] for i in idx])


def without(data: LabelledAlbums, genre: str) -> LabelledAlbums:
    return select(data, np.array([genre not in gs for gs in data.genres], dtype=bool))


def auroc(unseen: np.ndarray, inset: np.ndarray) -> float:
    """P(an unseen cover's top probability < an in-set cover's), ties counted half."""
    below = (unseen[:, None] < inset[None, :]).mean()
    ties = (unseen[:, None] == inset[None, :]).mean()
    return float(below + ties / 2)


def held_out_run(genre: str, train: LabelledAlbums, val: LabelledAlbums, test: LabelledAlbums) -> dict:
    fit_train, fit_val = without(train, genre), without(val, genre)
    X, y = fit_train.expanded()
    X_val, y_val = fit_val.expanded()
    started = time.perf_counter()
    estimator = make_estimator(DEFAULT.method, DEFAULT.params).fit(X, y, X_val, y_val)
    seconds = time.perf_counter() - started
    classes = [str(c) for c in estimator.classes_]
    # Calibration and threshold exactly as `train` fits them (classify/train.py: _calibrate).
    Y_val = genre_matrix(classes, fit_val.genres)
    val_raw = estimator.predict_proba(fit_val.X)
    calibrator = fit_calibrator("temperature", val_raw, Y_val)
    threshold = choose_min_confidence(calibrated(calibrator, val_raw), DEFAULT_MAX_ABSTAIN)

    inset = without(test, genre)
    unseen = select(test, np.array([gs == (genre,) for gs in test.genres], dtype=bool))
    mixed = sum(1 for gs in test.genres if genre in gs and len(gs) > 1)
    p_in = calibrated(calibrator, estimator.predict_proba(inset.X))
    p_out = calibrated(calibrator, estimator.predict_proba(unseen.X))
    top_in, top_out = p_in.max(axis=1), p_out.max(axis=1)
    Y_in = genre_matrix(classes, inset.genres)
    right_in = Y_in[np.arange(len(p_in)), p_in.argmax(axis=1)]
    answered = top_in >= threshold
    given = [classes[i] for i in p_out.argmax(axis=1)]
    return {
        "held_out": genre, "classes": classes, "train_albums": len(fit_train.album_ids), "val_albums": len(fit_val.album_ids),
        "fit_seconds": round(seconds, 1), "temperature": calibrator.temperature, "min_confidence": threshold,
        "inset_albums": len(inset.album_ids), "unseen_albums": len(unseen.album_ids), "mixed_albums_left_out": mixed,
        "inset_accuracy": float(right_in.mean()), "inset_answered_accuracy": float(right_in[answered].mean()) if answered.any() else None,
        "inset_ece": calibration_measures(p_in, Y_in)["ece"],
        "inset_abstained": float(1 - answered.mean()), "unseen_abstained": float((top_out < threshold).mean()),
        "inset_mean_confidence": float(top_in.mean()), "unseen_mean_confidence": float(top_out.mean()),
        "auroc": auroc(top_out, top_in),
        "at": {f"{t:.2f}": {"inset": float((top_in < t).mean()), "unseen": float((top_out < t).mean())} for t in THRESHOLDS},
        "unseen_given": {c: given.count(c) for c in classes},
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="A copy of the covers5 store (the split is made if missing).")
    parser.add_argument("--genres", default=None, help="Genres to hold out, one fit each, in this order (default: every genre).")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "unseen_genre.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    args.results.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(args.db) as store:  # features read once for every held-out genre
        feature_sets = feature_sets_for(store, list(DEFAULT.features))
        split = get_or_make_split(store)
        train, val, test = (load_labelled(store, feature_sets, split.album_ids(side)) for side in ("train", "val", "test"))
    genres = args.genres.split(",") if args.genres else sorted({g for gs in train.genres for g in gs})
    same_data = {"split": split.name, "split_albums": [len(train.album_ids), len(val.album_ids), len(test.album_ids)]}
    earlier = json.loads(args.results.read_text()) if args.results.exists() else []
    runs = [r for r in earlier if all(r.get(k) == v for k, v in same_data.items())]
    for genre in genres:
        if any(r["held_out"] == genre for r in runs):
            continue
        run = {**same_data, **held_out_run(genre, train, val, test)}
        runs.append(run)
        args.results.write_text(json.dumps(runs, indent=2))
        print(f"held out {genre}: unseen abstained {run['unseen_abstained']:.1%}, in-set abstained {run['inset_abstained']:.1%}, "
              f"AUROC {run['auroc']:.3f} ({run['fit_seconds']:.0f} s)", flush=True)

    lines = [
        f"Command: `nice -n 10 .venv/bin/python benchmarks/bench_unseen_genre.py --db COPY.duckdb"
        f"{' --genres ' + args.genres if args.genres else ''}` (a copy of the covers5 store)  ",
        f"Machine: {machine_line()}, shared with other work (1-minute load {os.getloadavg()[0]:.1f} at the end)",
        "",
        "The default recipe fitted on train alone (no refit) without the held-out genre's albums; temperature and the default "
        f"threshold (abstain on at most {DEFAULT_MAX_ABSTAIN:.0%} of validation) fitted on the validation albums without it. "
        "\"unseen\": test albums of the held-out genre alone; \"in-set\": test albums without it.",
        "",
        "| held out | train albums | default threshold | in-set accuracy (answered) | in-set abstained | unseen abstained | "
        "in-set / unseen mean top probability | AUROC | unseen covers given as |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        given = ", ".join(f"{g} {n / r['unseen_albums']:.0%}" for g, n in sorted(r["unseen_given"].items(), key=lambda kv: -kv[1]))
        lines.append(
            f"| {r['held_out']} ({r['unseen_albums']} test albums) | {r['train_albums']:,} | {r['min_confidence']:.3f} | "
            f"{pct(r['inset_accuracy'])} ({pct(r['inset_answered_accuracy'])}) | {pct(r['inset_abstained'])} | "
            f"**{pct(r['unseen_abstained'])}** | {r['inset_mean_confidence']:.3f} / {r['unseen_mean_confidence']:.3f} | "
            f"{r['auroc']:.2f} | {given} |")
    lines += ["", "Share left unknown at other thresholds (in-set / unseen):", "",
              "| held out | " + " | ".join(f"min confidence {t:.2f}" for t in THRESHOLDS) + " |",
              "|---|" + "---:|" * len(THRESHOLDS)]
    for r in runs:
        lines.append(f"| {r['held_out']} | " + " | ".join(
            f"{pct(r['at'][f'{t:.2f}']['inset'])} / {pct(r['at'][f'{t:.2f}']['unseen'])}" for t in THRESHOLDS) + " |")
    block = "\n".join(lines) + "\n"
    print(block)
    if not args.no_readme:
        replace_block(HERE / "README.md", "unseen-genre", block)


if __name__ == "__main__":
    main()
