"""The default genre model with and without the text member, on the group-aware split, in one run.

    .venv/bin/python benchmarks/bench_text_genre.py --db COPY_OF_COVERS5_WITH_TEXT.duckdb [--only default-no-text default]

Each model is trained by the real command, `coversearch --db DB --model-dir DIR train ... --json
--quiet`, in a subprocess of its own, one after the other on the same store, so all train and test
on the same stored split (`split make`'s default: near-duplicate groups kept on one side; the first
train makes it, so pass a copy).  Trained: ``default-no-text`` (the default's three pixel members),
``default`` (the same plus the text member: the shipped recipe) and ``text`` (the text member
alone, `--method text-linear --feature text`).  Per model: wall and CPU seconds (the subprocess), the card's fit seconds, test
accuracy, per-genre recall, calibrated ECE and the share answered "unknown", with the load before
and after.  Then, from the saved models, accuracy on the test albums with legible text and on those
without (no text: the text member votes uniformly, so the two ensembles should agree there).
Results go to benchmarks/results/bench_text_genre.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_train import train_once  # noqa: E402
from benchmarks.readme_blocks import machine_line  # noqa: E402

RUNS = {
    "default-no-text": ["--recipe", "default-no-text"],
    "default": [],
    "text": ["--method", "text-linear", "--feature", "text", "--name", "text"],
}


def by_legibility(db: Path, model_dir: Path, names: list[str]) -> dict:
    """Test accuracy of each model on the test albums whose covers have legible text, and on the rest."""
    from coversearch.classify.data import load_labelled, stored_matrix
    from coversearch.classify.model import TrainedModel
    from coversearch.classify.split import load_split
    from coversearch.store import Store

    out = {}
    with Store.open(db, read_only=True) as store:
        text_set = store.feature_set("text")
        for name in names:
            model = TrainedModel.load(model_dir, name)
            sets = model.check_store(store, same_state=True)
            test = load_labelled(store, sets, load_split(store, model.card.split).album_ids("test"))
            ids, counts = stored_matrix(store, text_set, test.album_ids)
            legible = dict(zip(ids.tolist(), (counts > 0).any(axis=1).tolist()))
            has_text = np.array([legible.get(int(a), False) for a in test.album_ids])
            predicted = np.array(model.classes)[model.predict_proba(test.X).argmax(axis=1)]
            right = np.array([p in gs for p, gs in zip(predicted, test.genres)])
            out[name] = {"with_text": [int(right[has_text].sum()), int(has_text.sum())],
                         "without_text": [int(right[~has_text].sum()), int((~has_text).sum())]}
    return out


def report(results: dict) -> str:
    runs = results["runs"]
    genres = sorted(next(iter(runs.values()))["per_genre_recall"])
    lines = [f"Machine: {results['machine']}.", "",
             "| model | test accuracy | " + " | ".join(f"recall {g}" for g in genres)
             + " | ECE raw / calibrated | \"unknown\" | wall s | CPU s | fit s (card) | load before / after |",
             "|---|---:|" + "---:|" * len(genres) + "---:|---:|---:|---:|---:|---|"]
    for name, r in runs.items():
        recalls = " | ".join(f"{r['per_genre_recall'][g]:.1%}" for g in genres)
        lines.append(f"| {name} | {r['accuracy']:.1%} | {recalls} | {r['ece_raw']:.3f} / {r['ece_calibrated']:.3f} | "
                     f"{r['unknown_share']:.1%} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['train_seconds']:.0f} | "
                     f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    if "default" in runs and "default-no-text" in runs:
        a, b = runs["default-no-text"], runs["default"]
        lines += ["", f"default (with text) minus default-no-text: {100 * (b['accuracy'] - a['accuracy']):+.1f} points on the same "
                      f"{a['test_albums']} test albums; CPU {b['cpu_seconds'] / a['cpu_seconds']:.2f}x, wall "
                      f"{b['wall_seconds'] / a['wall_seconds']:.2f}x."]
    if results.get("legibility"):
        lines += ["", "| model | test albums with legible text | without |", "|---|---:|---:|"]
        for name, r in results["legibility"].items():
            (a, n), (b, m) = r["with_text"], r["without_text"]
            lines.append(f"| {name} | {a}/{n} ({a / max(n, 1):.1%}) | {b}/{m} ({b / max(m, 1):.1%}) |")
    if "default" in runs and runs["default"].get("stages"):
        lines += ["", "Stages of the default run:", "", "| stage | seconds |", "| --- | ---: |"]
        lines += [f"| {s['stage']} | {s['seconds']:.1f} |" for s in runs["default"]["stages"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="A copy of the covers5 store with vgg16-layers and text.")
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--model-dir", type=Path, help="Keep the models here (default: a temporary folder).")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_text_genre.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_line(), "db": str(args.db), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-text-genre-") as tmp:
        model_dir = args.model_dir or Path(tmp) / "models"
        for name in args.only:
            print(f"training {name} ...", flush=True)
            results["runs"][name] = train_once(REPO, args.db, model_dir, RUNS[name])
            args.out.write_text(json.dumps(results, indent=2))
            print(json.dumps({k: v for k, v in results["runs"][name].items() if k != "stages"}), flush=True)
        results["legibility"] = by_legibility(args.db, model_dir, [results["runs"][n]["model"] for n in args.only])
    args.out.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
