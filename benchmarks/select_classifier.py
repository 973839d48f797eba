"""How the default genre model was chosen: 5-fold cross-validation on train + validation albums.

    .venv/bin/python benchmarks/select_classifier.py [--db benchmarks/results/covers5.duckdb]

The test split is never read.  The train and validation albums of the stored split are cut into
5 folds (seeded); each candidate is fitted on 3 folds, early-stops on the 4th and predicts the
5th, round the folds, so every one of those albums gets one out-of-fold prediction.  A "refit"
candidate then fits again on the 3 + 1 folds with what early stopping chose (`fit_final`, as
`train` does for a recipe with refit), before predicting the 5th.  An ensemble
candidate is the mean of its members' out-of-fold probabilities, which is exactly what fitting
the ensemble would give (its members are fitted independently, with their own seeds).  The
features are the store's (`coversearch ingest --features hsv,vgg16,vgg16-layers`), computed by
the product.  The table goes to stdout and between the `select` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402
from coversearch.classify.data import LabelledAlbums, feature_sets_for, load_labelled  # noqa: E402
from coversearch.classify.recipes import (  # noqa: E402
    DEFAULT, FIRST_DEFAULT, LAYERS_ALL, LAYERS_BLOCK4_5_MEANS, STUDY_HEAD, TUNED_XGBOOST,
)
from coversearch.classify.registry import make_estimator  # noqa: E402
from coversearch.classify.split import load_split  # noqa: E402
from coversearch.store import Store  # noqa: E402

FOLDS = 5
SEED = 0
SQRT_DENSE = {"hidden": 512, "dropout": 0.6, "power": 0.5}


@dataclass(frozen=True)
class Candidate:
    name: str
    method: str
    feature: str  # one feature set of the store
    params: dict
    columns: tuple[int, int] | None = None  # a slice of the feature's columns
    refit: bool = False  # fit_final on the early-stopping fold too


# Single models: every member of both defaults, and the variants that led to the second one.
CANDIDATES = [
    Candidate("dense vgg16 (the study's head)", "dense", "vgg16", STUDY_HEAD),
    Candidate("dense vgg16", "dense", "vgg16", {}),
    Candidate("dense sqrt vgg16", "dense", "vgg16", SQRT_DENSE),
    Candidate("xgboost vgg16", "xgboost", "vgg16", {}),
    Candidate("xgboost vgg16+hsv", "xgboost", "vgg16+hsv", {}),
    Candidate("knn10 cosine vgg16", "knn", "vgg16", {"k": 10, "index_kind": "exact", "metric": "cosine"}),
    Candidate("xgboost tuned vgg16", "xgboost", "vgg16", TUNED_XGBOOST),
    Candidate("dense sqrt vgg16-layers block3-5 means", "dense", "vgg16-layers", SQRT_DENSE, (0, 1280)),
    Candidate("dense sqrt vgg16-layers", "dense", "vgg16-layers", SQRT_DENSE),
    Candidate("xgboost tuned vgg16-layers", "xgboost", "vgg16-layers", {**TUNED_XGBOOST, "seed": 0}),
    Candidate("xgboost tuned vgg16-layers block4-5 means", "xgboost", "vgg16-layers", {**TUNED_XGBOOST, "seed": 1}, tuple(LAYERS_BLOCK4_5_MEANS)),
    # The same three, refitted on the early-stopping fold as well.
    Candidate("dense sqrt vgg16-layers, refit", "dense", "vgg16-layers", SQRT_DENSE, refit=True),
    Candidate("xgboost tuned vgg16-layers, refit", "xgboost", "vgg16-layers", {**TUNED_XGBOOST, "seed": 0}, refit=True),
    Candidate("xgboost tuned vgg16-layers block4-5 means, refit", "xgboost", "vgg16-layers", {**TUNED_XGBOOST, "seed": 1},
              tuple(LAYERS_BLOCK4_5_MEANS), refit=True),
]
ENSEMBLES = {
    f"{FIRST_DEFAULT.name} (first default)": ["dense vgg16", "xgboost vgg16+hsv", "knn10 cosine vgg16"],
    "dense sqrt + xgboost tuned, vgg16-layers": ["dense sqrt vgg16-layers", "xgboost tuned vgg16-layers"],
    "default, not refitted (second default)": ["dense sqrt vgg16-layers", "xgboost tuned vgg16-layers",
                                                "xgboost tuned vgg16-layers block4-5 means"],
    f"{DEFAULT.name} (chosen)": ["dense sqrt vgg16-layers, refit", "xgboost tuned vgg16-layers, refit",
                                 "xgboost tuned vgg16-layers block4-5 means, refit"],
}


def check_default_matches() -> None:
    """The chosen row must be the shipped recipe, member for member."""
    by_name = {c.name: c for c in CANDIDATES}
    chosen = [by_name[n] for n in ENSEMBLES[f"{DEFAULT.name} (chosen)"]]
    for member, cand in zip(DEFAULT.params["members"], chosen, strict=True):
        columns = tuple(member["columns"])
        assert member["method"] == cand.method and member["params"] == cand.params, (member, cand)
        assert columns == (cand.columns or tuple(LAYERS_ALL)), (member, cand)
        assert cand.refit == DEFAULT.refit, (DEFAULT.refit, cand)


def load_features(store: Store, album_ids: np.ndarray) -> dict[str, LabelledAlbums]:
    out = {}
    for feature in ("vgg16", "vgg16-layers", "vgg16+hsv"):
        out[feature] = load_labelled(store, feature_sets_for(store, feature.split("+")), album_ids)
    ids = out["vgg16"].album_ids
    for data in out.values():
        assert np.array_equal(data.album_ids, ids), "every album needs every feature"
    return out


def expand(rows: np.ndarray, genres: list[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """One training row per (album, genre), as `train` does."""
    r = np.array([i for i in rows for _ in genres[i]])
    return r, np.array([g for i in rows for g in genres[i]])


def out_of_fold(cand: Candidate, X: np.ndarray, genres, fold: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if cand.columns:
        X = X[:, cand.columns[0] : cand.columns[1]]
    proba = None
    for f in range(FOLDS):
        stop = (f + 1) % FOLDS  # the fold the model early-stops on
        fit_rows, fit_y = expand(np.flatnonzero((fold != f) & (fold != stop)), genres)
        val_rows, val_y = expand(np.flatnonzero(fold == stop), genres)
        estimator = make_estimator(cand.method, cand.params)
        (estimator.fit_final if cand.refit else estimator.fit)(X[fit_rows], fit_y, X[val_rows], val_y)
        test = np.flatnonzero(fold == f)
        if proba is None:
            proba = np.zeros((len(X), len(estimator.classes_)))
            classes = [str(c) for c in estimator.classes_]
        proba[test] = estimator.predict_proba(X[test])
    return proba, classes


def accuracy(proba: np.ndarray, classes: list[str], genres) -> float:
    return float(np.mean([classes[p] in gs for p, gs in zip(proba.argmax(axis=1), genres)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=HERE / "results" / "covers5.duckdb")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    check_default_matches()

    with Store.open(args.db, read_only=True) as store:
        split = load_split(store)
        if split is None:
            sys.exit(f"error: {args.db} has no split; run benchmarks/bench_classify.py first")
        dev_ids = np.union1d(split.album_ids("train"), split.album_ids("val"))  # never the test side
        data = load_features(store, dev_ids)
    genres = data["vgg16"].genres
    fold = np.random.default_rng(SEED).permutation(len(genres)) % FOLDS

    probas, rows = {}, []
    for cand in CANDIDATES:
        started = time.perf_counter()
        probas[cand.name], classes = out_of_fold(cand, data[cand.feature].X, genres, fold)
        rows.append((cand.name, accuracy(probas[cand.name], classes, genres), time.perf_counter() - started))
        print(f"{cand.name:45s} {rows[-1][1]:.4f}  ({rows[-1][2]:.0f}s)", flush=True)
    for name, members in ENSEMBLES.items():
        proba = np.mean([probas[m] for m in members], axis=0)
        rows.append((name, accuracy(proba, classes, genres), sum(r[2] for r in rows if r[0] in members)))
        print(f"{name:45s} {rows[-1][1]:.4f}", flush=True)

    lines = ["| candidate | members | 5-fold accuracy |", "|---|---|---:|"]
    for name, acc, _ in rows:
        members = " + ".join(ENSEMBLES.get(name, [])) or "-"
        bold = "**" if name.endswith("(chosen)") else ""
        lines.append(f"| {bold}{name}{bold} | {members} | {bold}{acc:.1%}{bold} |")
    block = (
        f"Command: `.venv/bin/python benchmarks/select_classifier.py`  \nMachine: {machine_line()}\n\n"
        f"{len(genres):,} train + validation albums of split `{split.name}`, {FOLDS} folds (seed {SEED}): each model "
        "fits 3 folds, early-stops on a 4th and predicts the 5th; a refit model then fits again on all 4 with the "
        "epochs/rounds early stopping chose. The test split is not read.\n\n" + "\n".join(lines) + "\n"
    )
    print(block)
    if not args.no_readme:
        replace_block(HERE / "README.md", "select", block)


if __name__ == "__main__":
    main()
