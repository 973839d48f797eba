"""Does the study's own VGG16 input (vgg16-study: 150 px, [0, 1] pixels, flattened block5_pool)
add to the default's vote?  5-fold CV on train + validation, as select_classifier.py; test never read.

    .venv/bin/python benchmarks/explorations/2026-11-26/e10.py NAME...   (names: see CANDS below)

Out-of-fold probabilities are saved in /tmp/exp3/NAME.npy, so votes can be scored afterwards
(ens10.py).
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, "/work/main")
from benchmarks.select_classifier import CANDIDATES, FOLDS, SEED, SQRT_DENSE, Candidate, accuracy, out_of_fold  # noqa: E402
from coversearch.classify.data import feature_sets_for, load_labelled  # noqa: E402
from coversearch.classify.split import load_split  # noqa: E402
from coversearch.store import Store  # noqa: E402

OUT = Path("/tmp/exp3")
STUDY = {"hidden": 256, "dropout": 0.5, "learning_rate": 1e-4, "standardize": False, "epochs": 20, "batch_size": 64}
CANDS = {c.name: c for c in CANDIDATES}
CANDS.update({
    "study": Candidate("study", "dense", "vgg16-study", STUDY),
    "study-refit": Candidate("study-refit", "dense", "vgg16-study", STUDY, refit=True),
    "study-long-refit": Candidate("study-long-refit", "dense", "vgg16-study", {**STUDY, "epochs": 200}, refit=True),
    "study-sqrt-refit": Candidate("study-sqrt-refit", "dense", "vgg16-study", SQRT_DENSE, refit=True),
})

with Store.open("/work/main/benchmarks/results/covers5.duckdb", read_only=True) as store:
    split = load_split(store)
    dev_ids = np.union1d(split.album_ids("train"), split.album_ids("val"))
    data = {f: load_labelled(store, feature_sets_for(store, [f]), dev_ids) for f in ("vgg16-layers", "vgg16-study")}
assert np.array_equal(data["vgg16-layers"].album_ids, data["vgg16-study"].album_ids)
genres = data["vgg16-layers"].genres
fold = np.random.default_rng(SEED).permutation(len(genres)) % FOLDS
OUT.mkdir(exist_ok=True)
np.save(OUT / "genres.npy", np.array(["|".join(g) for g in genres]))
for name in sys.argv[1:]:
    cand = CANDS[name]
    started = time.perf_counter()
    proba, classes = out_of_fold(cand, data[cand.feature].X, genres, fold)
    np.save(OUT / f"{name}.npy", proba)
    (OUT / "classes.txt").write_text("\n".join(classes))
    print(f"{name:50s} {accuracy(proba, classes, genres):.4f}  ({time.perf_counter() - started:.0f}s)", flush=True)
