"""Score soft votes of the out-of-fold probabilities e10.py saved: ens10.py NAME+NAME+... ..."""

import sys
from pathlib import Path

import numpy as np

OUT = Path("/tmp/exp3")
genres = [g.split("|") for g in np.load(OUT / "genres.npy")]
classes = (OUT / "classes.txt").read_text().split("\n")
for vote in sys.argv[1:]:
    proba = np.mean([np.load(OUT / f"{m}.npy") for m in vote.split("+")], axis=0)
    acc = np.mean([classes[p] in g for p, g in zip(proba.argmax(axis=1), genres)])
    print(f"{vote:120s} {acc:.4f}")
