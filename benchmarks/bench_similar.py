"""Quality of `coversearch similar` per index kind: identification of real covers and their altered copies.

(a) Identification on the real covers5 store (vgg16, cosine, every kind at its default
    parameters): for a seeded sample of stored covers, query with the cover's image file and with
    its mirrored, JPEG re-compressed (quality 75) copy; report how often the album comes back at
    rank 1.

Recall, speed, size and memory of every kind on synthetic and real vectors (this script's former
parts (b) and (c)) are `coversearch bench search`'s job (benchmarks/bench_search.py).

Prints a Markdown report and writes it to benchmarks/results/similar.md.

    .venv/bin/python benchmarks/bench_similar.py --db /tmp/setup/covers5_full.duckdb
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for benchmarks.readme_blocks
from benchmarks.readme_blocks import replace_block  # noqa: E402
from coversearch.features.base import extract_images
from coversearch.imaging.images import decode_image, mirror, read_bytes
from coversearch.features.registry import get_extractor
from coversearch.index.catalog import build_index, open_index
from coversearch.index.registry import INDEX_KINDS
from coversearch.index.threads import available_cores
from coversearch.query.similar import SimilarSearcher
from coversearch.store import Store

REPO = Path(__file__).resolve().parents[1]
# The covers5 store with hsv + vgg16 (bench_classify.py builds it with the product if missing).
DEFAULT_DB = REPO / "benchmarks" / "results" / "covers5.duckdb"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "similar.md"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _genre_file(path: str) -> str:
    """`<genre>/<file>` of a stored path: the README names covers, not the folder one machine keeps them in."""
    return "/".join(Path(path).parts[-2:])


def resolve_image(path: str) -> Path:
    """Album paths are stored as given to ingest (often relative to the repository)."""
    candidate = Path(path)
    for option in (candidate, REPO / candidate):
        if option.is_file():
            return option
    raise SystemExit(f"cannot find cover image {path} (run from the repository root)")


def mirrored_jpeg(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(mirror(rgb)).save(buffer, format="JPEG", quality=quality)
    return decode_image(buffer.getvalue()).rgb


def timed_single_queries(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """Answer queries one at a time through VectorIndex.search (one FAISS thread); ids and seconds."""
    found = np.full((len(queries), k), -1, dtype=np.int64)
    seconds = []
    for i, q in enumerate(queries):
        started = time.perf_counter()
        hits = index.search(q, k)
        seconds.append(time.perf_counter() - started)
        found[i, : len(hits)] = hits.ids
    return found, seconds


# -- (a) identification on covers5 ----------------------------------------------------------------
def bench_identification(db: Path, weights: Path, sample: int, seed: int) -> tuple[str, dict]:
    lines = []
    with Store.open(db, read_only=True) as store:
        fs = store.feature_set("vgg16")
        ids, _ = store.load_embeddings(fs)
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(ids, size=sample, replace=False))
        albums = store.albums(chosen.tolist())
        log(f"(a) embedding {sample} covers and their mirrored JPEG copies with vgg16")
        extractor = get_extractor("vgg16", vgg16_weights=weights)
        originals, mirrors = [], []
        for album_id in chosen.tolist():
            rgb = decode_image(read_bytes(resolve_image(albums[album_id]["path"]))).rgb
            originals.append(rgb)
            mirrors.append(mirrored_jpeg(rgb))
        started = time.perf_counter()
        vectors = extract_images(extractor, originals + mirrors)
        embed_seconds = time.perf_counter() - started
        query_sets = {"original": vectors[:sample], "mirror + JPEG q75": vectors[sample:]}

        rows = []
        misses = []  # (query set, album, what exact search returned): what the feature itself misses
        with tempfile.TemporaryDirectory(prefix="bench-similar-") as tmp:
            for kind in [k for k in INDEX_KINDS if "cosine" in INDEX_KINDS[k].supported_metrics]:  # vgg16's metric
                log(f"(a) building {kind} over {len(ids)} vgg16 vectors")
                manifest = build_index(store, feature="vgg16", kind=kind, index_dir=tmp)
                opened = open_index(store, tmp, manifest.name)
                searcher = SimilarSearcher(store, opened.feature_set, opened.index, opened.manifest)
                searcher.use_extractor(extractor)  # the fingerprint check the CLI does
                rates = {}
                latencies = []
                for label, queries in query_sets.items():
                    hits_at_1 = 0
                    for album_id, q in zip(chosen.tolist(), queries):
                        started = time.perf_counter()
                        found = opened.index.search(q, 10)
                        latencies.append(time.perf_counter() - started)
                        hits_at_1 += int(found.ids[0] == album_id)
                        if kind == "exact" and found.ids[0] != album_id:
                            misses.append((label, album_id, found))
                        # The library path too (genres, paths): must agree with the raw index.
                        if album_id == chosen[0]:
                            assert searcher.search_vector(q, 10).hits[0].album_id == found.ids[0]
                    rates[label] = hits_at_1 / len(chosen)
                rows.append((kind, manifest, rates, statistics.median(latencies) * 1000))
        miss_notes = []
        for label, album_id, found in misses:
            own = found.distances[found.ids == album_id]
            where = f"rank {int(np.flatnonzero(found.ids == album_id)[0]) + 1} at {own[0]:.4f}" if len(own) else "not in the top 10"
            other = store.albums([int(found.ids[0])])[int(found.ids[0])]
            miss_notes.append(
                f"{label} query of album {album_id} (`{_genre_file(albums[album_id]['path'])}`): rank 1 is album {int(found.ids[0])} "
                f"(`{_genre_file(other['path'])}`) at distance {found.distances[0]:.4f}, the album itself {where}"
            )
    lines.append(f"## (a) Rank-1 identification on covers5 (vgg16, cosine; {sample} stored covers, seed {seed})")
    lines.append("")
    lines.append(
        f"Store: {len(ids):,} vgg16 vectors. Each sampled cover is queried with its image file and with a "
        f"mirrored copy re-compressed as JPEG quality 75; a hit is the album itself at rank 1. "
        f"VGG16 embedding of the {2 * sample} query images took {embed_seconds:.0f} s (not in the latencies)."
    )
    lines.append("")
    lines.append("| kind | default params (build; query) | build s | size | rank-1, original | rank-1, mirror + JPEG q75 | median search ms (1 thread) |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    summary = {}
    for kind, manifest, rates, median_ms in rows:
        lines.append(
            f"| {kind} | {fmt_params(manifest.build_params)}; {fmt_params(manifest.query_params)} | {manifest.build_seconds:.2f} | "
            f"{mib(manifest.size_bytes)} | {rates['original']:.1%} | {rates['mirror + JPEG q75']:.1%} | {median_ms:.3f} |"
        )
        summary[kind] = rates
    if miss_notes:
        lines.append("")
        lines.append("Misses of exact search (so of the vgg16 feature, not of any index): " + "; ".join(miss_notes) + ".")
    return "\n".join(lines), {"vgg16": ids, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="full covers5 store with vgg16 vectors (read only)")
    parser.add_argument("--vgg16-weights", type=Path, default=Path(os.environ.get("COVERSEARCH_VGG16_WEIGHTS") or DEFAULT_WEIGHTS))
    parser.add_argument("--sample", type=int, default=200, help="covers queried in (a)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.db.is_file():
        parser.error(f"no store at {args.db}")

    started = time.perf_counter()
    part_a, facts = bench_identification(args.db, args.vgg16_weights, args.sample, args.seed)
    header = [
        "# coversearch similar: benchmark",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()} with {available_cores()} cores "
        f"({platform.processor() or platform.platform()}), shared with other work; `benchmarks/bench_similar.py "
        f"--db STORE --sample {args.sample} --seed {args.seed}` (STORE: a covers5 store, read only); "
        f"total {time.perf_counter() - started:.0f} s.",
    ]
    report = "\n\n".join(["\n".join(header), part_a]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    replace_block(REPO / "benchmarks" / "README.md", "similar", report.split("\n", 1)[1].replace("\n## ", "\n### "))
    print(report)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
