"""Genre classification on covers5: every method, on the group-aware split and on a naive one, one run each.

    .venv/bin/python benchmarks/bench_classify.py [--db benchmarks/results/covers5.duckdb] [--splits default naive]

The store is built from ../shared/data/covers5 (hsv, vgg16, vgg16-layers, vgg16-study, phash) where it lacks
them.  Each recipe is trained on a stored split's train side (validation for early stopping) and
scored on the test side it never saw.  kNN runs through exact search and through each approximate
index kind, so the accuracy cost of approximation is visible.

The first split (`default`, made as `coversearch split make` makes it: near-duplicate groups kept
on one side) gives the full table, between the `classify` markers of benchmarks/README.md.  Each
further split is made, if missing, with the same seed but ignoring near-duplicates (`naive`: a
test cover's near-copy may sit in train), and the accuracies on all of them go side by side
between the `classify-splits` markers, so the inflation a leaky split causes is measured, not
guessed.  Models are saved under benchmarks/results/models/.
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
from coversearch.classify.split import DEFAULT_SPLIT, groups_across_sides, load_split, make_split  # noqa: E402
from coversearch.dedupe.groups import store_groups  # noqa: E402
from coversearch.dedupe.rules import default_rules  # noqa: E402
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
        stats = store.stats()
        # A feature counts only when every album has it: an interrupted ingest leaves it partial.
        have = {fs["name"] for fs in stats["feature_sets"] if fs["embeddings"] >= stats["albums"]}
        missing = sorted(features - have) if stats["albums"] else sorted(features)
        if missing:
            print(f"ingesting {covers} with {missing} into {db} ...", flush=True)
            extractors = [get_extractor(n, vgg16_weights=weights) for n in sorted(features)]
            ingest(store, read_folder(covers), extractors)


def split_for(store: Store, name: str):
    """The stored split ``name``; a missing default split is made group-aware, any other one naive."""
    return load_split(store, name) or make_split(store, name, near_duplicates=name == DEFAULT_SPLIT)


def detail_table(rows: list[dict]) -> list[str]:
    classes = rows[0]["classes"]
    lines = [
        "| recipe | method | features | test accuracy | " + " | ".join(f"recall {c}" for c in classes) + " | train s | predict ms/image |",
        "|---|---|---|---:|" + "---:|" * len(classes) + "---:|---:|",
    ]
    for r in rows:
        recall = " | ".join("-" if r["per_genre_recall"][c] is None else f"{r['per_genre_recall'][c]:.1%}" for c in classes)
        bold = "**" if r["recipe"] == DEFAULT_RECIPE else ""
        lines.append(
            f"| {bold}{r['recipe']}{bold} | {r['method']} | {'+'.join(r['features'])} | {bold}{r['accuracy']:.1%}{bold} | {recall} | "
            f"{r['train_seconds']:.1f} | {r['predict_ms_per_image']:.3f} |"
        )
    return lines


def summary_line(rows: list[dict]) -> str:
    best_study = max((r for r in rows if r["recipe"] in {s.name for s in STUDY_RECIPES}), key=lambda r: r["accuracy"])
    line = f"Best study recipe: {best_study['recipe']} at {best_study['accuracy']:.1%}."
    default = next((r for r in rows if r["recipe"] == DEFAULT_RECIPE), None)
    variant = next((r for r in rows if r["recipe"] == STUDY_HEAD_ON_VGG16.name), None)
    if default:
        line += f" Default model: {default['accuracy']:.1%} ({100 * (default['accuracy'] - best_study['accuracy']):+.1f} points)."
        if variant:
            line += (f" Against {variant['recipe']} (the study's head on our vgg16 feature: 224 px, averaged; not a study recipe):"
                     f" {variant['accuracy']:.1%}, {100 * (default['accuracy'] - variant['accuracy']):+.1f} points.")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=HERE / "results" / "covers5.duckdb")
    parser.add_argument("--covers", type=Path, default=REPO.parent / "shared" / "data" / "covers5")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--splits", nargs="+", default=[DEFAULT_SPLIT, "naive"],
                        help="Stored splits to score on; the first gives the full table (default: default naive).")
    parser.add_argument("--only", nargs="*", help="Run only these recipe names.")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("COVERSEARCH_VGG16_WEIGHTS", str(args.weights))

    chosen = [r for r in recipes() if not args.only or r.name in args.only]
    args.db.parent.mkdir(parents=True, exist_ok=True)
    ensure_store(args.db, args.covers, args.weights, {f for r in chosen for f in r.features} | {"phash", "vgg16"})
    models_dir = HERE / "results" / "models"
    rows: dict[str, list[dict]] = {name: [] for name in args.splits}
    with Store.open(args.db) as store:
        splits = {name: split_for(store, name) for name in args.splits}
        groups = store_groups(store, default_rules(store))
        leaks = {name: groups_across_sides(split, groups) for name, split in splits.items()}
        for name, split in splits.items():
            print(f"split {name}: {split.counts()}; {leaks[name]}", flush=True)
        for recipe in chosen:
            for name in args.splits:
                started = time.perf_counter()
                model_name = recipe.name if name == args.splits[0] else f"{recipe.name}.{name}"
                model = train_model(store, models_dir, recipe, name=model_name, evaluate=False, split_name=name)
                result = {**evaluate_model(store, model, models_dir / model_name).result, "recipe": recipe.name, "split": name}
                rows[name].append(result)
                print(f"{recipe.name:26s} {name:8s} acc {result['accuracy']:.3f}  train {result['train_seconds']:.1f}s  "
                      f"predict {result['predict_ms_per_image']:.3f} ms/img  ({time.perf_counter() - started:.0f}s)", flush=True)
                (HERE / "results" / "classify.json").write_text(json.dumps(rows, indent=2))

    first = args.splits[0]
    split = splits[first]
    machine = f"Machine: {machine_line()}; 1-minute load {os.getloadavg()[0]:.1f} at the end"
    block = (
        f"Command: `.venv/bin/python benchmarks/bench_classify.py --splits {' '.join(args.splits)}`  \n{machine}\n\n"
        f"Split `{split.name}` (seed {split.seed}, {split.counts()} albums; chance 20%): near-duplicate groups kept on one side, "
        f"{leaks[first]['test_albums_with_train_duplicate']} test albums with a near-duplicate in train. {summary_line(rows[first])}\n\n"
        + "\n".join(detail_table(rows[first])) + "\n"
    )
    print(block)
    side = None
    if len(args.splits) > 1:
        heads = [f"`{n}` split ({splits[n].counts()['test']} test, {leaks[n]['test_albums_with_train_duplicate']} with a train near-duplicate)"
                 for n in args.splits]
        lines = ["| recipe | " + " | ".join(heads) + " | " + " | ".join(f"change on `{n}`" for n in args.splits[1:]) + " |",
                 "|---|" + "---:|" * (2 * len(args.splits) - 1)]
        by_split = {n: {r["recipe"]: r["accuracy"] for r in rows[n]} for n in args.splits}
        for recipe in chosen:
            base = by_split[first][recipe.name]
            accs = [by_split[n][recipe.name] for n in args.splits]
            lines.append(f"| {recipe.name} | " + " | ".join(f"{a:.1%}" for a in accs) + " | "
                         + " | ".join(f"{100 * (a - base):+.1f}" for a in accs[1:]) + " |")
        gaps = [by_split[args.splits[1]][r.name] - by_split[first][r.name] for r in chosen]
        side = (
            f"Command: `.venv/bin/python benchmarks/bench_classify.py --splits {' '.join(args.splits)}`  \n{machine}\n\n"
            f"Every recipe trained and scored once on each split (same seed and fractions; `{args.splits[1]}` ignores near-duplicates, "
            f"as `split make --ignore-near-duplicates` does). {args.splits[1]} minus {first}: mean {100 * sum(gaps) / len(gaps):+.1f} points, "
            f"from {100 * min(gaps):+.1f} to {100 * max(gaps):+.1f}. The `{first}` column is the one to trust.\n\n"
            + "\n".join(lines) + "\n"
        )
        print(side)
    if not args.no_readme and not args.only:
        replace_block(HERE / "README.md", "classify", block)
        if side:
            replace_block(HERE / "README.md", "classify-splits", side)


if __name__ == "__main__":
    main()
