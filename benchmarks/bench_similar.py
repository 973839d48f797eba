"""Speed and quality of `coversearch similar`, per index kind.

(a) Identification on the real covers5 store (vgg16, cosine, every kind at its default
    parameters): for a seeded sample of stored covers, query with the cover's image file and with
    its mirrored, JPEG re-compressed (quality 75) copy; report how often the album comes back at
    rank 1.
(b) 100,000 x 512 synthetic vectors: the store's real vgg16 embeddings (unit length) tiled, each
    copy plus Gaussian noise whose expected norm equals the median nearest-neighbour distance of
    the real vectors (scale 1; scale 2 doubles it for a harder task), and 1,000 held-out noisy
    queries that are not in the index.  Recall@10 as in ann-benchmarks (coversearch.index.recall),
    single-thread queries per second, build time, memory.
(c) Exact-search latency: FAISS flat on 10,000 of those vectors, and the duckdb kind on the store.

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
from coversearch.bench.datasets import median_nn_distance, synthetic_vectors  # the shared construction
from coversearch.features.base import extract_images
from coversearch.features.images import decode_image, mirror, read_bytes
from coversearch.features.registry import get_extractor
from coversearch.index import metrics
from coversearch.index.catalog import build_index, open_index
from coversearch.index.recall import ground_truth, ids_to_rows, recall_at_k
from coversearch.index.registry import INDEX_KINDS, create_index
from coversearch.index.threads import available_cores
from coversearch.query.similar import SimilarSearcher
from coversearch.store import Store

REPO = Path(__file__).resolve().parents[1]
# The covers5 store with hsv + vgg16 (bench_classify.py builds it with the product if missing).
DEFAULT_DB = REPO / "benchmarks" / "results" / "covers5.duckdb"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "similar.md"
SYNTHETIC_KINDS = ["faiss-hnsw", "annoy", "faiss-ivf", "faiss-ivfpq"]
TARGETS = {"faiss-hnsw": "recall >= 0.95 at >= 1,000 q/s", "annoy": "recall >= 0.95"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


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
            for kind in INDEX_KINDS:
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
                f"{label} query of album {album_id} (`{albums[album_id]['path']}`): rank 1 is album {int(found.ids[0])} "
                f"(`{other['path']}`) at distance {found.distances[0]:.4f}, the album itself {where}"
            )
    lines.append(f"## (a) Rank-1 identification on covers5 (vgg16, cosine; {sample} stored covers, seed {seed})")
    lines.append("")
    lines.append(
        f"Store `{db}`: {len(ids):,} vgg16 vectors. Each sampled cover is queried with its image file and with a "
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


# -- (b) synthetic 100k x 512 -------------------------------------------------------------------
def bench_synthetic(
    real: np.ndarray, n: int, n_queries: int, seed: int, kinds: list[str], noise_scales: list[float]
) -> tuple[str, np.ndarray, np.ndarray]:
    median_nn = median_nn_distance(real)
    lines = [
        f"## (b) {n:,} x {real.shape[1]} synthetic vectors, {n_queries:,} held-out queries (cosine, k = 10)",
        "",
        f"The store's {len(real):,} real vgg16 vectors (unit length) tiled to {n:,} rows, each row plus Gaussian noise; "
        f"queries are fresh noisy copies of random real vectors (not in the index). Noise scale 1 means an expected "
        f"noise norm equal to the median nearest-neighbour distance between real covers, {median_nn:.4f} (L2 on unit "
        f"vectors, i.e. 1 - cos = {median_nn**2 / 2:.4f}); scale 2 doubles it, so that a query's true neighbours are "
        f"no longer almost all noisy copies of its own cover (the 'own copies' column). The targets apply at scale 1. "
        f"Recall@10 as in ann-benchmarks: a returned item is a hit when its true distance <= the true 10th-nearest "
        f"distance + 1e-3. Queries/s: single queries one at a time through `VectorIndex.search` on one FAISS thread "
        f"(the Python wrapper included); builds use all {available_cores()} cores. Default parameters throughout.",
        "",
        "| noise scale (sigma/dim) | own copies in true top-10 | kind | params (build; query) | build s | memory | recall@10 | single-thread q/s | median ms | target | met |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    base = queries = None
    for scale in noise_scales:
        log(f"(b) noise scale {scale}: making {n:,} x {real.shape[1]} vectors and {n_queries:,} queries")
        base, queries, sources, sigma = synthetic_vectors(real, n, n_queries, scale * median_nn, seed)
        ids = np.arange(n, dtype=np.int64)
        truth = ground_truth(base, queries, 10, metrics.COSINE)
        own = float(np.mean(truth.rows % len(real) == sources[:, None]))
        for kind in kinds:
            log(f"(b) building {kind} on {n:,} vectors")
            index = create_index(kind, metrics.COSINE, base.shape[1])
            started = time.perf_counter()
            index.fit(base, ids)
            build_seconds = time.perf_counter() - started
            found, seconds = timed_single_queries(index, queries, 10)
            recall = recall_at_k(base, queries, ids_to_rows(ids, found), 10, metrics.COSINE, truth)
            qps = len(queries) / sum(seconds)
            target, met = "-", "-"
            if scale == 1.0 and kind in TARGETS:
                target = TARGETS[kind]
                ok = recall >= 0.95 and (kind != "faiss-hnsw" or qps >= 1000)
                met = "yes" if ok else "NO"
            lines.append(
                f"| {scale:g} ({sigma:.4f}) | {own:.1%} | {kind} | {fmt_params(index.build_params)}; {fmt_params(index.query_params)} | "
                f"{build_seconds:.1f} | {mib(index.memory_bytes())} | {recall:.4f} | {qps:,.0f} | "
                f"{statistics.median(seconds) * 1000:.3f} | {target} | {met} |"
            )
            log(f"(b) scale {scale} {kind}: build {build_seconds:.1f} s, recall@10 {recall:.4f}, {qps:,.0f} q/s")
            del index
    return "\n".join(lines), base, queries


# -- (c) exact latency ---------------------------------------------------------------------------
def bench_exact_latency(base: np.ndarray, queries: np.ndarray, db: Path) -> str:
    n = min(10_000, len(base))
    exact = create_index("exact", metrics.COSINE, base.shape[1]).fit(base[:n], np.arange(n))
    _, seconds = timed_single_queries(exact, queries, 10)
    rows = [(f"synthetic (b), first {n:,} rows", "exact (FAISS IndexFlat)", n, seconds)]
    with Store.open(db, read_only=True) as store:
        fs = store.feature_set("vgg16")
        store_ids, vectors = store.load_embeddings(fs)
        exact_store = create_index("exact", metrics.COSINE, fs.dim).fit(vectors, store_ids)
        duck = create_index("duckdb", metrics.COSINE, fs.dim).fit(vectors, store_ids)
        duck.bind(store, fs)
        sample = vectors[np.random.default_rng(1).choice(len(vectors), size=200, replace=False)]
        rows.append(("covers5 store", "exact (FAISS IndexFlat)", len(store_ids), timed_single_queries(exact_store, sample, 10)[1]))
        rows.append(("covers5 store", "duckdb (array_cosine_distance scan)", len(store_ids), timed_single_queries(duck, sample, 10)[1]))
    lines = [
        "## (c) Exact search latency (k = 10, one query at a time, one FAISS thread)",
        "",
        "| vectors | kind | n | median ms | p95 ms | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for where, kind, count, secs in rows:
        target = "< 1 ms" if "synthetic" in where else "-"
        lines.append(
            f"| {where} | {kind} | {count:,} | {statistics.median(secs) * 1000:.3f} | {np.percentile(secs, 95) * 1000:.3f} | {target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="full covers5 store with vgg16 vectors (read only)")
    parser.add_argument("--vgg16-weights", type=Path, default=Path(os.environ.get("COVERSEARCH_VGG16_WEIGHTS") or DEFAULT_WEIGHTS))
    parser.add_argument("--sample", type=int, default=200, help="covers queried in (a)")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic vectors in (b)")
    parser.add_argument("--queries", type=int, default=1_000, help="held-out queries in (b)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(SYNTHETIC_KINDS), help="kinds for (b)")
    parser.add_argument("--noise-scales", default="1,2", help="noise norms in (b), in units of the median NN distance")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.db.is_file():
        parser.error(f"no store at {args.db}")

    started = time.perf_counter()
    part_a, facts = bench_identification(args.db, args.vgg16_weights, args.sample, args.seed)
    with Store.open(args.db, read_only=True) as store:
        _, real = store.load_embeddings(store.feature_set("vgg16"))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    scales = [float(x) for x in args.noise_scales.split(",") if x.strip()]
    part_b, base, queries = bench_synthetic(real, args.n, args.queries, args.seed, kinds, scales)
    part_c = bench_exact_latency(base, queries, args.db)
    header = [
        "# coversearch similar: benchmark",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()} with {available_cores()} cores "
        f"({platform.processor() or platform.platform()}), shared with other work; `benchmarks/bench_similar.py "
        f"--db {args.db} --sample {args.sample} --n {args.n} --queries {args.queries} --noise-scales {args.noise_scales} "
        f"--seed {args.seed}`; "
        f"total {time.perf_counter() - started:.0f} s.",
    ]
    report = "\n\n".join(["\n".join(header), part_a, part_b, part_c]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    replace_block(REPO / "benchmarks" / "README.md", "similar", report.split("\n", 1)[1].replace("\n## ", "\n### "))
    print(report)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
