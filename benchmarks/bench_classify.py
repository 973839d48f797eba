"""Genre classification on covers5: every method, one fixed split, one run.

    .venv/bin/python benchmarks/bench_classify.py [--db benchmarks/results/covers5.duckdb]

The store is built from ../shared/data/covers5 (hsv, vgg16, vgg16-layers, vgg16-study) where it lacks them.  Each
recipe is trained on the stored train split (validation for early stopping) and scored on the
test split it never saw.  kNN runs through exact search and through each approximate index kind,
so the accuracy cost of approximation is visible.  The table goes to stdout and between the
`classify` markers of benchmarks/README.md; models are saved under benchmarks/results/models/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402
from coversearch.classify.recipes import (  # noqa: E402
    DEFAULT_RECIPE, FIRST_DEFAULT, RECIPES, STUDY_HEAD_ON_VGG16, STUDY_RECIPES, TUNED_XGBOOST, Recipe,
)
from coversearch.classify.split import get_or_make_split  # noqa: E402
from coversearch.classify.evaluate import evaluate_model  # noqa: E402
from coversearch.classify.train import train_model  # noqa: E402
from coversearch.features.registry import get_extractor  # noqa: E402
from coversearch.ingest.pipeline import ingest  # noqa: E402
from coversearch.ingest.readers import read_folder  # noqa: E402
from coversearch.store import Store  # noqa: E402

APPROXIMATE_KINDS = ("faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "annoy")


def recipes() -> list[Recipe]:
    out = [*STUDY_RECIPES, STUDY_HEAD_ON_VGG16]
    for feature, metric in (("hsv", "euclidean"), ("vgg16", "cosine")):
        for kind in ("exact", *APPROXIMATE_KINDS):
            # Each kind with its default parameters (indexes/defaults.toml); study-knn-hsv is Annoy as the study set it.
            out.append(Recipe(f"knn-{feature}-{kind}", "knn", (feature,), {"k": 10, "index_kind": kind, "metric": metric}))
    out += [
        Recipe("xgboost-vgg16", "xgboost", ("vgg16",), {}),
        Recipe("dense-vgg16+hsv", "dense", ("vgg16", "hsv"), {}),
        FIRST_DEFAULT,
        # The default's parts, alone.
        Recipe("xgboost-tuned-vgg16", "xgboost", ("vgg16",), TUNED_XGBOOST),
        Recipe("xgboost-tuned-vgg16-layers", "xgboost", ("vgg16-layers",), TUNED_XGBOOST),
        Recipe("dense-sqrt-vgg16-layers", "dense", ("vgg16-layers",), {"hidden": 512, "dropout": 0.6, "power": 0.5}),
        # The second default as first shipped (train split only), then as it ships now: refitted.
        replace(RECIPES[DEFAULT_RECIPE], name="default-no-refit", refit=False),
        RECIPES[DEFAULT_RECIPE],
    ]
    return out


def ensure_store(db: Path, covers: Path, weights: Path, features: set[str]) -> None:
    with Store.open(db) as store:
        have = {fs.name for fs in store.feature_sets()}
        missing = sorted(features - have) if store.stats()["albums"] else sorted(features)
        if missing:
            print(f"ingesting {covers} with {missing} into {db} ...", flush=True)
            extractors = [get_extractor(n, vgg16_weights=weights) for n in sorted(features)]
            ingest(store, read_folder(covers), extractors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=HERE / "results" / "covers5.duckdb")
    parser.add_argument("--covers", type=Path, default=REPO.parent / "shared" / "data" / "covers5")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--only", nargs="*", help="Run only these recipe names.")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("COVERSEARCH_VGG16_WEIGHTS", str(args.weights))

    chosen = [r for r in recipes() if not args.only or r.name in args.only]
    args.db.parent.mkdir(parents=True, exist_ok=True)
    ensure_store(args.db, args.covers, args.weights, {f for r in chosen for f in r.features})
    models_dir = HERE / "results" / "models"
    rows = []
    with Store.open(args.db) as store:
        split = get_or_make_split(store)
        for recipe in chosen:
            started = time.perf_counter()
            model = train_model(store, models_dir, recipe, name=recipe.name, evaluate=False)
            result = evaluate_model(store, model, models_dir / recipe.name).result
            rows.append(result)
            print(f"{recipe.name:24s} acc {result['accuracy']:.3f}  train {result['train_seconds']:.1f}s  "
                  f"predict {result['predict_ms_per_image']:.3f} ms/img  ({time.perf_counter() - started:.0f}s)", flush=True)
    (HERE / "results" / "classify.json").write_text(json.dumps(rows, indent=2))

    classes = rows[0]["classes"]
    best_study = max((r for r in rows if r["recipe"] in {s.name for s in STUDY_RECIPES}), key=lambda r: r["accuracy"])
    lines = [
        "| recipe | method | features | test accuracy | " + " | ".join(f"recall {c}" for c in classes) + " | train s | predict ms/image |",
        "|---|---|---|---:|" + "---:|" * len(classes) + "---:|---:|",
    ]
    for r in rows:
        recall = " | ".join("-" if r["per_genre_recall"][c] is None else f"{r['per_genre_recall'][c]:.1%}" for c in classes)
        bold = "**" if r["recipe"] == DEFAULT_RECIPE else ""
        lines.append(
            f"| {bold}{r['model']}{bold} | {r['method']} | {'+'.join(r['features'])} | {bold}{r['accuracy']:.1%}{bold} | {recall} | "
            f"{r['train_seconds']:.1f} | {r['predict_ms_per_image']:.3f} |"
        )
    default = next((r for r in rows if r["recipe"] == DEFAULT_RECIPE), None)
    summary = (
        f"Split `{split.name}` (seed {split.seed}, {split.counts()} albums; chance 20%). "
        f"Best study recipe: {best_study['model']} at {best_study['accuracy']:.1%}."
    )
    variant = next((r for r in rows if r["recipe"] == STUDY_HEAD_ON_VGG16.name), None)
    if default:
        summary += f" Default model: {default['accuracy']:.1%} ({100 * (default['accuracy'] - best_study['accuracy']):+.1f} points)."
        if variant:
            summary += (f" Against {variant['model']} (the study's head on our vgg16 feature: 224 px, averaged; not a study recipe):"
                        f" {variant['accuracy']:.1%}, {100 * (default['accuracy'] - variant['accuracy']):+.1f} points.")
    block = (
        f"Command: `.venv/bin/python benchmarks/bench_classify.py`  \nMachine: {machine_line()}\n\n"
        f"{summary}\n\n" + "\n".join(lines) + "\n"
    )
    print(block)
    if not args.no_readme and not args.only:
        replace_block(HERE / "README.md", "classify", block)


if __name__ == "__main__":
    main()
