"""Calibration and "none of these" for the default genre model on covers5, in one run.

    .venv/bin/python benchmarks/bench_calibration.py --db COPY_OF_COVERS5.duckdb [--model-dir DIR]

Trains the default recipe as `coversearch train` does (temperature scaling fitted on the
validation probabilities of the train-only fit, then refitted on train + validation) unless a
default model with calibration data already exists in --model-dir, evaluates it on the test split,
and compares on the same test probabilities:
- raw probabilities;
- temperature scaling, as shipped;
- isotonic calibration fitted on the same validation probabilities (calibration-data.npz);
- temperature fitted on the refit model's own validation predictions (a model that trained on
  validation): the shortcut the shipped recipe avoids, to show what it would cost.
The store is written to only when it has no split yet (train makes it): pass a copy.
The figures go between the `calibration` markers of benchmarks/README.md (`calibration-no-refit`
with --no-refit); the reliability diagram to benchmarks/plots/reliability-<model>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402
from coversearch.classify.calibration import (  # noqa: E402
    DEFAULT_MAX_ABSTAIN, TemperatureScaling, calibrated, calibration_measures, fit_calibrator, genre_matrix,
)
from coversearch.classify.data import load_labelled  # noqa: E402
from coversearch.classify.model import ModelError, TrainedModel  # noqa: E402
from coversearch.classify.recipes import DEFAULT_RECIPE, get_recipe  # noqa: E402
from coversearch.classify.split import load_split  # noqa: E402
from coversearch.classify.evaluate import RELIABILITY_PNG, evaluate_model  # noqa: E402
from coversearch.classify.train import train_model  # noqa: E402
from coversearch.store import Store  # noqa: E402


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="A copy of the covers5 store (hsv, vgg16, vgg16-layers).")
    parser.add_argument("--model-dir", type=Path, default=HERE / "results" / "calibration-models")
    parser.add_argument("--retrain", action="store_true", help="Train the default model even if one is there.")
    parser.add_argument("--no-refit", action="store_true",
                        help="The default recipe fitted on train alone (`coversearch train --no-refit`): half the training time.")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    recipe = get_recipe(DEFAULT_RECIPE)
    name = DEFAULT_RECIPE
    if args.no_refit:
        recipe, name = replace(recipe, refit=False), f"{DEFAULT_RECIPE}-no-refit"
    started = time.perf_counter()
    with Store.open(args.db) as store:
        try:
            if args.retrain:
                raise ModelError("retrain")
            model = TrainedModel.load(args.model_dir, name)
            model.check_store(store)
            if model.calibration_data is None:
                raise ModelError("no calibration data")
            trained = False
        except ModelError:
            model = train_model(store, args.model_dir, recipe, name=name, evaluate=False)
            trained = True
        train_seconds = model.card.train_seconds
        evaluation = evaluate_model(store, model, args.model_dir / model.card.name).result
        feature_sets = model.check_store(store)
        split = load_split(store, model.card.split)
        test = load_labelled(store, feature_sets, split.album_ids("test"))
        val = load_labelled(store, feature_sets, split.album_ids("val"))
        test_raw = model.estimator.predict_proba(test.X)
        val_seen = model.estimator.predict_proba(val.X)  # the refit model trained on these albums
    Y_test = genre_matrix(model.classes, test.genres)
    Y_val = genre_matrix(model.classes, val.genres)
    data = model.calibration_data
    isotonic = fit_calibrator("isotonic", data["proba"], data["Y"])
    rows = [
        ("raw probabilities", None, calibration_measures(calibrated(None, test_raw), Y_test)),
        (f"temperature T={model.calibrator.temperature:.3f}, fitted on the validation probabilities of the fit on train alone (shipped)",
         model.calibrator.temperature, calibration_measures(calibrated(model.calibrator, test_raw), Y_test)),
        ("isotonic (one-vs-rest, renormalised), fitted on the same validation probabilities", None,
         calibration_measures(calibrated(isotonic, test_raw), Y_test)),
    ]
    if model.card.refit:
        biased = TemperatureScaling().fit(val_seen, Y_val)
        rows.append((f"temperature T={biased.temperature:.3f}, fitted on the refit model's own validation predictions (it trained on them)",
                     biased.temperature, calibration_measures(calibrated(biased, test_raw), Y_test)))
    plot = f"reliability-{name}.png"
    shutil.copyfile(args.model_dir / model.card.name / RELIABILITY_PNG, HERE / "plots" / plot)
    seconds = time.perf_counter() - started

    cal = model.card.calibration
    # The command as run, so that a rerun reuses (or trains) the same model; a path inside the repository stays relative.
    model_dir = args.model_dir.resolve()
    model_dir_arg = "" if model_dir == (HERE / "results" / "calibration-models").resolve() else \
        f" --model-dir {model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else 'MODEL_DIR'}"
    lines = [
        f"Command: `nice -n 10 .venv/bin/python benchmarks/bench_calibration.py --db COPY.duckdb{model_dir_arg}{' --no-refit' if args.no_refit else ''}` (a copy of the covers5 store)  ",
        f"Machine: {machine_line()}, shared with other work (1-minute load {os.getloadavg()[0]:.1f} at the end); {'trained the model (' + format(train_seconds, '.0f') + ' s' + (', train-only fit + refit' if model.card.refit else '') + ') and ' if trained else ''}"
        f"evaluated in {seconds:.0f} s in all",
        "",
        f"Model `{model.card.name}` (recipe `{model.card.recipe}`, refit on train + validation: {model.card.refit}); "
        f"{evaluation['albums']} test albums, accuracy {pct(evaluation['accuracy'])}. Calibration fitted on "
        f"{cal['validation_albums']} validation albums ({cal['fitted_on']}): validation ECE "
        f"{cal['validation_before']['ece']:.3f} -> {cal['validation_after']['ece']:.3f}.",
        "",
        "| probabilities on the test split | ECE (15 bins) | Brier | log-loss | mean confidence | accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, _, m in rows:
        bold = "**" if "(shipped)" in label else ""
        lines.append(f"| {label} | {bold}{m['ece']:.3f}{bold} | {m['brier']:.3f} | {m['log_loss']:.3f} | "
                     f"{pct(m['mean_confidence'])} | {pct(m['accuracy'])} |")
    ece_after = rows[1][2]["ece"]
    lines += [
        "",
        f"Target ECE <= 0.05 on test: {ece_after:.3f}, {'met' if ece_after <= 0.05 else 'NOT met'} "
        f"(before calibration {rows[0][2]['ece']:.3f}).",
        "",
        f"\"None of these\": the default threshold is {evaluation['min_confidence']:.3f}, the highest that abstains on at most "
        f"{DEFAULT_MAX_ABSTAIN:.0%} of validation albums. On test it abstains on {pct(evaluation['abstained_share'])} of albums "
        f"(target <= 10%: {'met' if evaluation['abstained_share'] <= 0.10 else 'NOT met'}); accuracy on the answered ones "
        f"{pct(evaluation['answered_accuracy'])} against {pct(evaluation['accuracy'])} on all.",
        "",
        "| min confidence | abstained | answered | accuracy on the answered |",
        "|---:|---:|---:|---:|",
    ]
    for r in evaluation["risk_coverage"]:
        mark = " (default)" if r["min_confidence"] == evaluation["min_confidence"] else ""
        lines.append(f"| {r['min_confidence']:.3f}{mark} | {pct(r['abstained_share'])} | {r['answered']} | {pct(r['answered_accuracy'])} |")
    lines += ["", f"![reliability diagram of {name}](plots/{plot})"]
    block = "\n".join(lines) + "\n"
    print(block)
    (args.model_dir / "bench_calibration.json").write_text(json.dumps(
        {"rows": [{"name": n, "measures": m} for n, _, m in rows], "evaluation": evaluation, "card": model.card.to_json()}, indent=2))
    if not args.no_readme:
        # The shipped (refit) model and the train-only fit each keep their own block.
        replace_block(HERE / "README.md", "calibration-no-refit" if args.no_refit else "calibration", block)


if __name__ == "__main__":
    main()
