"""Ingest throughput: HSV over all of covers5, and VGG16 ingest against bare `model.predict`.

    .venv/bin/python benchmarks/bench_ingest.py [--covers ../shared/data/covers5] [--vgg-images 512]

Targets (issue 2): HSV ingest >= 400 images/s; VGG16 ingest >= 90% of the throughput of bare
`model.predict` on the same images, measured in the same run.  The table is printed and written
between the `ingest` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.report import machine_line, replace_block  # noqa: E402
from coversearch.features.images import decode_image, read_bytes  # noqa: E402
from coversearch.features.registry import get_extractor  # noqa: E402
from coversearch.ingest.pipeline import ingest  # noqa: E402
from coversearch.ingest.readers import SourceListing, read_folder  # noqa: E402
from coversearch.store import Store  # noqa: E402


def distinct_items(listing: SourceListing, n: int) -> SourceListing:
    """n items with distinct bytes, taken round-robin over genres so every genre is in."""
    by_genre: dict[str, list] = {}
    for item in listing.items:
        by_genre.setdefault(item.genres[0], []).append(item)
    seen, picked = set(), []
    queues = [list(v) for v in by_genre.values()]
    while len(picked) < n and any(queues):
        for queue in queues:
            while queue:
                item = queue.pop(0)
                data = item.path.read_bytes()
                if data not in seen:
                    seen.add(data)
                    picked.append(item)
                    break
            if len(picked) == n:
                break
    return SourceListing(picked, [])


def bench_hsv(covers: Path, workdir: Path) -> dict:
    listing = read_folder(covers)
    with Store.open(workdir / "hsv.duckdb") as store:
        summary = ingest(store, listing, [get_extractor("hsv")])
    return {"images": summary.seen, "seconds": summary.seconds, "rate": summary.seen / summary.seconds}


def bench_vgg16(covers: Path, workdir: Path, n: int, weights: Path) -> dict:
    listing = distinct_items(read_folder(covers), n)
    vgg = get_extractor("vgg16", vgg16_weights=weights)
    model = vgg.model()
    from keras.applications.vgg16 import preprocess_input

    # Bare model.predict: images already decoded, resized and preprocessed in memory.
    batch = preprocess_input(np.stack([vgg.prepare(decode_image(read_bytes(i.path)).rgb) for i in listing.items]))
    model.predict(batch[:32], batch_size=32, verbose=0)  # warm-up (graph tracing) outside the clock
    started = time.perf_counter()
    model.predict(batch, batch_size=32, verbose=0)
    bare_seconds = time.perf_counter() - started
    # The ingest calls predict_on_batch (no tf.data pipeline per call); time that bare too, so the
    # ratio below is against the faster of the two and measures only what overlapping costs.
    started = time.perf_counter()
    for start in range(0, len(batch), 32):
        model.predict_on_batch(batch[start : start + 32])
    on_batch_seconds = time.perf_counter() - started

    # Full ingest of the same files into a fresh store: read, hash, decode, resize, predict, write.
    with Store.open(workdir / "vgg16.duckdb") as store:
        summary = ingest(store, listing, [vgg])
    assert summary.counts.embeddings["vgg16"] == n
    return {
        "images": n,
        "bare_seconds": bare_seconds,
        "bare_rate": n / bare_seconds,
        "on_batch_seconds": on_batch_seconds,
        "on_batch_rate": n / on_batch_seconds,
        "ingest_seconds": summary.seconds,
        "ingest_rate": n / summary.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--covers", type=Path, default=REPO.parent / "shared" / "data" / "covers5")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--vgg-images", type=int, default=512)
    parser.add_argument("--no-readme", action="store_true", help="Print only; leave benchmarks/README.md alone.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        hsv = bench_hsv(args.covers, Path(tmp))
        vgg = bench_vgg16(args.covers, Path(tmp), args.vgg_images, args.weights)
    ratio = vgg["ingest_rate"] / max(vgg["bare_rate"], vgg["on_batch_rate"])
    table = "\n".join(
        [
            "| measurement | images | seconds | images/s | target | met |",
            "|---|---:|---:|---:|---|---|",
            f"| HSV ingest, all of covers5 | {hsv['images']} | {hsv['seconds']:.1f} | {hsv['rate']:.0f} | >= 400 | {'yes' if hsv['rate'] >= 400 else 'NO'} |",
            f"| VGG16 bare `model.predict` (preloaded arrays) | {vgg['images']} | {vgg['bare_seconds']:.1f} | {vgg['bare_rate']:.1f} | | |",
            f"| VGG16 bare `model.predict_on_batch`, batches of 32 (preloaded arrays) | {vgg['images']} | {vgg['on_batch_seconds']:.1f} | {vgg['on_batch_rate']:.1f} | | |",
            f"| VGG16 ingest (read, hash, decode, predict, write) | {vgg['images']} | {vgg['ingest_seconds']:.1f} | {vgg['ingest_rate']:.1f} | >= 90% of the faster bare row | {ratio:.0%} {'yes' if ratio >= 0.9 else 'NO'} |",
        ]
    )
    block = (
        f"Command: `.venv/bin/python benchmarks/bench_ingest.py --vgg-images {args.vgg_images}`  \n"
        f"Machine: {machine_line()}\n\n{table}\n"
    )
    print(block)
    if not args.no_readme:
        replace_block(HERE / "README.md", "ingest", block)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
