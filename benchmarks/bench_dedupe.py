"""Near-duplicate detection: quality on transformed copies of real covers, and dedupe at scale.

Stages (each caches its output under --out, so a later stage can be re-run alone):

  copies    For --originals covers drawn (seeded) from covers5, write one copy per transformation
            (coversearch/bench/transforms.py) as a JPEG file and embed each copy with the
            product's own extractors (phash, vgg16) from its file: copies.npz.
  quality   The store (covers5, with phash and vgg16 vectors; the copies' originals are in it) is the
            haystack.  For every copy, its stored neighbours (k-NN through the index layer) within a
            threshold are its predicted duplicates: a hit when the copy's original is among them,
            a false match for any other album.  Thresholds are chosen on the first half of the
            originals (the largest whose precision on all transformations but mirror is >= 0.99),
            and precision / recall / F1 are reported on the second half, per transformation and
            overall, per method, beside imagededup's defaults (pHash at Hamming 10, CNN cosine
            similarity 0.9 = distance 0.1).  Mirror is reported on its own.
  scale     Dedupe (`coversearch.index.duplicates`) over 100k and 1M synthetic vectors built from the
            store's real ones (tiled, plus noise), with planted duplicate pairs: time, peak RSS, and
            how many planted pairs were found.  Each size runs in a fresh process for a clean RSS.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_dedupe.py copies --db /tmp/covers5.duckdb
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dedupe.py quality --db /tmp/covers5.duckdb
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dedupe.py scale --db /tmp/covers5.duckdb --sizes 100000,1000000

The store must hold phash and vgg16 vectors for covers5 (`coversearch ingest ../shared/data/covers5`
adds phash to an existing store, computing nothing else).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from coversearch.bench.transforms import MIRROR, TRANSFORMS, transformed_jpeg  # noqa: E402
from coversearch.features.base import extract_images  # noqa: E402
from coversearch.features.images import decode_image  # noqa: E402
from coversearch.features.registry import get_extractor  # noqa: E402

DEFAULT_DB = REPO / "benchmarks" / "results" / "covers5.duckdb"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "dedupe"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5"
COVERS5 = REPO.parent / "shared" / "data" / "covers5"
METHOD_FEATURES = ("phash", "vgg16")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- stage 1: the copies ---------------------------------------------------------------------------
def pick_originals(n: int, seed: int) -> list[tuple[str, Path]]:
    """(sha256, path) of n distinct covers drawn with ``seed`` from covers5 (the store's albums are its bytes)."""
    import hashlib

    by_sha: dict[str, Path] = {}
    for path in sorted(COVERS5.glob("*/*")):
        by_sha.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    shas = sorted(by_sha)
    chosen = np.random.default_rng(seed).choice(len(shas), size=n, replace=False)
    return [(shas[i], by_sha[shas[i]]) for i in sorted(chosen)]


def make_copies(args) -> None:
    from PIL import Image

    out = Path(args.out)
    (out / "copies").mkdir(parents=True, exist_ok=True)
    originals = pick_originals(args.originals, args.seed)
    extractors = {name: get_extractor(name, vgg16_weights=args.vgg16_weights) for name in METHOD_FEATURES}
    names = list(TRANSFORMS)
    original_shas, transforms, paths = [], [], []
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in METHOD_FEATURES}
    started = time.perf_counter()
    for i, (sha, source) in enumerate(originals):
        with Image.open(source) as img:
            img = img.convert("RGB")
            rgbs = []
            for name in names:
                path = out / "copies" / name / f"{sha[:16]}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(transformed_jpeg(img, name))
                # Decoded from the file, as ingest or a query would see it.
                rgbs.append(decode_image(path.read_bytes()).rgb)
                original_shas.append(sha)
                transforms.append(name)
                paths.append(str(path))
        for feature, extractor in extractors.items():
            vectors[feature].append(extract_images(extractor, rgbs))
        if (i + 1) % 10 == 0:
            rate = (i + 1) * len(names) / (time.perf_counter() - started)
            log(f"{i + 1}/{len(originals)} originals, {rate:.1f} copies/s")
    np.savez(
        out / "copies.npz",
        original_shas=np.asarray(original_shas),
        transforms=np.asarray(transforms),
        paths=np.asarray(paths),
        **{f"vectors_{feature}": np.concatenate(v) for feature, v in vectors.items()},
    )
    log(f"wrote {len(paths)} copies of {len(originals)} originals to {out} in {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["copies", "quality", "scale"])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--vgg16-weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--readme", action="store_true", help="write the tables into benchmarks/README.md")
    args = parser.parse_args()
    {"copies": make_copies}[args.stage](args)


if __name__ == "__main__":
    main()
