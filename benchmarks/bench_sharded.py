"""Sharded IVF-PQ build and search at scale (issue 17): train once on a sample, encode shards,
merge into on-disk inverted lists; recall@10 and single-thread q/s with and without re-ranking.

Data: N synthetic vectors made from a store's real vgg16 vectors (tiled, each row plus Gaussian
noise of ``--noise`` x the median nearest-neighbour distance; see coversearch/bench/datasets.py),
written to a float32 file in chunks and never held in RAM at once; 1,000 held-out queries (fresh
noisy copies of random real covers) with exact ground truth computed chunk by chunk.  The shards
read their slice of that file in chunks, as the store-backed build reads its slice of the store.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sharded.py --store /tmp/covers5.duckdb --n 1000000 \\
        --work /tmp/bench-sharded --single

Writes ``<work>/results-<n>-t<train-per-list>[-single].json`` and prints the tables for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS loads OpenMP: see coversearch/index/threads.py

import faiss  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coversearch.bench.datasets import median_nn_distance  # noqa: E402
from coversearch import metrics  # noqa: E402
from coversearch.index.faiss_base import IVFDATA_FILE  # noqa: E402
from coversearch.index.registry import create_index  # noqa: E402
from coversearch.index.sharded import Shard, encode_shard, merge_on_disk  # noqa: E402
from coversearch.store import Store  # noqa: E402

K = 10


def peak_rss_mib() -> float:
    """This process's peak resident set so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_rows(path: Path, dim: int, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a raw float32 file, read (not mapped) so they leave RSS when dropped."""
    with open(path, "rb") as fh:
        fh.seek(start * dim * 4)
        return np.fromfile(fh, dtype=np.float32, count=(stop - start) * dim).reshape(-1, dim)


def make_data(args, work: Path) -> tuple[Path, np.ndarray, int]:
    """(base file of prepared (unit) vectors, queries, dim); reused when already made with the same settings."""
    with Store.open(args.store, read_only=True) as store:
        _, real = store.load_embeddings(store.feature_set(args.feature))
    unit = metrics.prepare(real, metrics.COSINE)
    dim = unit.shape[1]
    meta = {"n": args.n, "noise": args.noise, "seed": args.seed, "store": str(args.store), "real": len(unit), "dim": dim}
    base, queries_file, meta_file = work / f"base-{args.n}.f32", work / f"queries-{args.n}.npy", work / f"data-{args.n}.json"
    if meta_file.is_file() and json.loads(meta_file.read_text()) == meta:
        return base, np.load(queries_file), dim
    sigma = args.noise * median_nn_distance(real) / np.sqrt(dim)
    started = time.perf_counter()
    with open(base, "wb") as fh:
        for start in range(0, args.n, args.chunk):
            stop = min(args.n, start + args.chunk)
            rng = np.random.default_rng([args.seed, start])
            rows = unit[np.arange(start, stop) % len(unit)] + rng.normal(0, sigma, (stop - start, dim)).astype(np.float32)
            metrics.prepare(rows, metrics.COSINE).astype(np.float32).tofile(fh)
    rng = np.random.default_rng([args.seed, 2**32 - 1])  # not a chunk start
    sources = rng.integers(0, len(unit), size=args.queries)
    queries = metrics.prepare(unit[sources] + rng.normal(0, sigma, (args.queries, dim)).astype(np.float32), metrics.COSINE)
    np.save(queries_file, queries)
    meta_file.write_text(json.dumps(meta))
    print(f"data: {args.n:,} x {dim} in {time.perf_counter() - started:.0f} s (sigma {sigma:.5f})", flush=True)
    return base, queries, dim


def exact_truth(args, base: Path, queries: np.ndarray, dim: int, work: Path) -> np.ndarray:
    """Row numbers of each query's 10 true nearest neighbours, over the base file chunk by chunk."""
    path = work / f"truth-{args.n}.npy"
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    best_d = np.full((len(queries), K), np.inf, dtype=np.float32)
    best_i = np.full((len(queries), K), -1, dtype=np.int64)
    for start in range(0, args.n, args.chunk):
        x = read_rows(base, dim, start, min(args.n, start + args.chunk))
        flat = faiss.IndexFlatL2(dim)
        flat.add(x)
        d, i = flat.search(queries, K)
        d_all, i_all = np.hstack([best_d, d]), np.hstack([best_i, i + start])
        order = np.argsort(d_all, axis=1, kind="stable")[:, :K]
        best_d, best_i = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
    np.save(path, best_i)
    print(f"ground truth: {time.perf_counter() - started:.0f} s", flush=True)
    return best_i


def chunks(base: Path, dim: int, first: int, stop: int, chunk: int):
    for start in range(first, stop, chunk):
        end = min(stop, start + chunk)
        yield np.arange(start, end), read_rows(base, dim, start, end)


def new_index(args, dim: int):
    index = create_index("faiss-ivfpq", metrics.COSINE, dim, {"nlist": args.nlist, "m": args.m, "refine": False})
    index.resolve_params(args.n)
    return index


def train(args, index, base: Path, dim: int, per_list: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(args.n, size=min(args.n, per_list * args.nlist), replace=False))
    with open(base, "rb") as fh:  # sorted rows: one forward pass over the file
        sample = np.empty((len(rows), dim), dtype=np.float32)
        for j, row in enumerate(rows):
            fh.seek(int(row) * dim * 4)
            sample[j] = np.fromfile(fh, dtype=np.float32, count=dim)
    started = time.perf_counter()
    trained = index._new_faiss_index(args.n)
    trained.train(sample)
    return trained, time.perf_counter() - started, len(rows)


def row_reader(path: Path, dim: int):
    """fetch(rows) -> their vectors, one pread each: a memory map would count the kernel's fault-around
    pages (64 KiB per touched row) as resident and inflate the measured RSS to most of the file."""
    fd = os.open(path, os.O_RDONLY)
    row_bytes = dim * 4

    def fetch(rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), dim), dtype=np.float32)
        for j, row in enumerate(rows):
            out[j] = np.frombuffer(os.pread(fd, row_bytes, int(row) * row_bytes), dtype=np.float32)
        return out

    return fetch


def sweep(args, index, queries: np.ndarray, truth: np.ndarray, base: Path, dim: int, rows: list, save) -> None:
    """Append one row per (nprobe, rerank) point to ``rows``, saving after each (a long run can be stopped)."""
    index.ids = np.arange(args.n, dtype=np.int64)
    index.bind_exact_vectors(row_reader(base, dim))
    for nprobe in args.nprobe:
        for rerank in args.rerank:
            index.set_query_arguments(nprobe=nprobe, rerank=rerank)
            found = np.empty((len(queries), K), dtype=np.int64)
            started = time.perf_counter()
            for i, q in enumerate(queries):  # one query at a time, one FAISS thread (VectorIndex.search)
                hit = index.search(q, K)
                found[i, : len(hit)] = hit.ids
            seconds = time.perf_counter() - started
            recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
            rows.append({"nprobe": nprobe, "rerank": rerank, "recall@10": round(recall, 4), "qps": round(len(queries) / seconds, 1),
                         "ms_per_query": round(1000 * seconds / len(queries), 3)})
            save()
            print(f"  nprobe={nprobe} rerank={rerank}: recall@10 {recall:.4f}, {len(queries) / seconds:,.0f} q/s", flush=True)
    return rows


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store with real vgg16 vectors (read only)")
    parser.add_argument("--feature", default="vgg16")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--train-per-list", type=int, default=256, help="training sample = this x nlist")
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--nprobe", type=lambda s: [int(v) for v in s.split(",")], default=[8, 16, 32, 64])
    parser.add_argument("--rerank", type=lambda s: [int(v) for v in s.split(",")], default=[0, 100])
    parser.add_argument("--single", action="store_true", help="also build in one process (trained on 256 per list) for comparison")
    parser.add_argument("--search-only", action="store_true", help="sweep the index the previous run left in --work")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    faiss.omp_set_num_threads(cores)
    results: dict = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "cores": cores}
    out = args.work / f"results-{args.n}-t{args.train_per_list}{'-single' if args.single else ''}{'-search' if args.search_only else ''}.json"

    def save():
        out.write_text(json.dumps(results, indent=2))

    base, queries, dim = make_data(args, args.work)
    truth = exact_truth(args, base, queries, dim, args.work)
    results["rss_after_data_mib"] = round(peak_rss_mib(), 1)

    merged_dir = args.work / f"sharded-{args.n}"
    if args.search_only:
        # Another sweep over the index the last run built (same --n, --nlist, --m).
        index = new_index(args, dim)
        index.faiss_index = faiss.read_index(str(merged_dir / "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
        results["sharded"] = {"search": []}
        sweep(args, index, queries, truth, base, dim, results["sharded"]["search"], save)
        results["peak_rss_mib"] = round(peak_rss_mib(), 1)
        save()
        return

    # -- sharded: train on a sample, encode shards one after another, merge on disk --------------
    index = new_index(args, dim)
    results["factory"] = index._factory_string()
    trained, train_s, sample = train(args, index, base, dim, args.train_per_list, args.seed + 1)
    print(f"sharded: trained {results['factory']} on {sample:,} in {train_s:.1f} s", flush=True)
    bounds = np.linspace(0, args.n, args.shards + 1).astype(np.int64)
    shard_dir = args.work / f"shards-{args.n}"
    shard_dir.mkdir(exist_ok=True)
    shard_stats, paths = [], []
    for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = shard_dir / f"shard-{s:04d}.faiss"
        stats = encode_shard(trained, chunks(base, dim, int(lo), int(hi), args.chunk), Shard(s, int(lo), int(hi - lo), int(lo), int(hi - 1)),
                             metrics.COSINE, path)
        shard_stats.append({"rows": stats["rows"], "seconds": stats["seconds"], "vectors_per_s": round(stats["rows"] / stats["seconds"])})
        paths.append(path)
        print(f"  shard {s}: {stats['rows']:,} in {stats['seconds']:.1f} s", flush=True)
    merged_dir.mkdir(exist_ok=True)
    started = time.perf_counter()
    merged = merge_on_disk(trained, paths, merged_dir / IVFDATA_FILE)
    faiss.write_index(merged, str(merged_dir / "index.faiss"))
    merge_s = time.perf_counter() - started
    for path in paths:
        path.unlink()
    results["sharded"] = {
        "train_vectors": sample, "train_seconds": round(train_s, 1), "shards": shard_stats, "merge_seconds": round(merge_s, 1),
        "disk_bytes": folder_bytes(merged_dir), "peak_rss_build_mib": round(peak_rss_mib(), 1),
    }
    save()
    print(f"  merged on disk in {merge_s:.1f} s; {folder_bytes(merged_dir) / 2**20:,.0f} MiB; peak RSS {peak_rss_mib():,.0f} MiB", flush=True)
    index.faiss_index = merged
    results["sharded"]["search"] = []
    sweep(args, index, queries, truth, base, dim, results["sharded"]["search"], save)
    results["sharded"]["peak_rss_search_mib"] = round(peak_rss_mib(), 1)
    save()
    del merged, index

    if args.single:
        # -- single: one process adds everything into one in-memory index -----------------------
        index = new_index(args, dim)
        trained, train_s, sample = train(args, index, base, dim, 256, args.seed + 2)
        print(f"single: trained on {sample:,} in {train_s:.1f} s", flush=True)
        started = time.perf_counter()
        for rows, x in chunks(base, dim, 0, args.n, args.chunk):
            trained.add(x)
        add_s = time.perf_counter() - started
        index.faiss_index = trained
        results["single"] = {"train_vectors": sample, "train_seconds": round(train_s, 1), "add_seconds": round(add_s, 1),
                             "peak_rss_build_mib": round(peak_rss_mib(), 1)}
        print(f"  added in {add_s:.1f} s", flush=True)
        results["single"]["search"] = []
        sweep(args, index, queries, truth, base, dim, results["single"]["search"], save)
        save()
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    save()
    print(markdown(results))


def markdown(results: dict) -> str:
    """The sweep tables for benchmarks/README.md."""
    lines = []
    for build in ("sharded", "single"):
        if build not in results:
            continue
        r = results[build]
        lines += [f"{build}: trained on {r['train_vectors']:,} in {r['train_seconds']} s", "",
                  "| build | nprobe | rerank | recall@10 | q/s (1 thread) | ms/query |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {build} | {p['nprobe']} | {p['rerank']} | {p['recall@10']:.4f} | {p['qps']:,.0f} | {p['ms_per_query']:.2f} |"
                  for p in r["search"]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
