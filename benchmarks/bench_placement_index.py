"""What placing one cover costs in the placement index at catalogue size (the index alone).

For vgg16 (512-d float vectors, cosine: the ``exact`` kind) and pHash (64-bit codes, Hamming: the
``faiss-binary`` kind) a random 1M-album index is built and saved through
``coversearch.dedupe.placement_index``'s own writer, then --repeats times: open it (``_read``: the
saved base and its delta), check the vectors of 32 albums (as ``open_placement_index`` does), add
one album, search k=16 for it (the placement's batch search, and one single-thread query), and
write the delta (``_record_changes``).  Each step's median, in ms.

Each tree runs in a process of its own, so before/after are measured in one run: ``--tree`` is
repeated (e.g. a ``git archive`` export of main at /tmp/pindex/before, and this checkout):

    git archive HEAD | tar -x -C /tmp/pindex/before
    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/bench_placement_index.py \\
        --tree before=/tmp/pindex/before --tree after=. --out /tmp/pindex/bench
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

FEATURES = {"vgg16": (512, "cosine"), "phash": (64, "hamming")}


def child(args) -> None:
    from coversearch.dedupe import placement_index as pi
    from coversearch.index.exact import ExactIndex
    from coversearch.index.faiss_binary import BinaryIndex

    rng = np.random.default_rng(args.seed)
    out = {}
    for name in args.features.split(","):
        dim, metric = FEATURES[name]
        fs = SimpleNamespace(name=name, version=1, dim=dim)
        cls = BinaryIndex if metric == "hamming" else ExactIndex
        home = Path(args.out) / f"{args.label}.dedupe-index" / name
        clock = time.perf_counter()
        ids = np.arange(args.n, dtype=np.int64)
        if metric == "hamming":
            vectors = rng.integers(0, 2, (args.n, dim), dtype=np.uint8).astype(np.float32)
        else:
            vectors = rng.standard_normal((args.n, dim), dtype=np.float32)
        probe_ids = pi._probe_ids(ids)
        probes = vectors[probe_ids].copy()
        built = cls(metric, dim).fit(vectors, ids)
        del vectors
        pi._write_whole(home, pi.PlacementIndex(built) if hasattr(pi, "PlacementIndex") else built, fs, metric)
        del built
        build_s = time.perf_counter() - clock
        steps = {s: [] for s in ("open", "check", "add", "search", "search_1thread", "write_delta", "total")}
        for i in range(args.repeats):
            new_ids = np.asarray([args.n + i], dtype=np.int64)
            new = (rng.integers(0, 2, (1, dim)).astype(np.float32) if metric == "hamming"
                   else rng.standard_normal((1, dim), dtype=np.float32))
            t = [time.perf_counter()]
            index, why = pi._read(home, cls, fs, metric)
            assert why is None, why
            t.append(time.perf_counter())
            ok = index.holds_vectors(probes, probe_ids) if index.supports_remove else pi._codes_match(index, probes, probe_ids)
            assert ok
            t.append(time.perf_counter())
            index.add(new, new_ids)
            t.append(time.perf_counter())
            found, _ = index.batch_search(new, 16)
            assert found[0, 0] == new_ids[0]
            t.append(time.perf_counter())
            assert index.search(new[0], 16).ids[0] == new_ids[0]
            t.append(time.perf_counter())
            pi._record_changes(home, index, fs, metric, new_ids, new, np.zeros(0, np.int64))
            t.append(time.perf_counter())
            for step, a, b in zip(list(steps)[:-1], t, t[1:]):
                steps[step].append(b - a)
            steps["total"].append(t[-1] - t[0] - (t[5] - t[4]))  # a placement: all but the extra single-thread query
            del index
        out[name] = {"build_s": round(build_s, 1), **{s: round(statistics.median(v) * 1000, 1) for s, v in steps.items()}}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    out["peak_rss_gb"] = round(usage.ru_maxrss / 2**20, 2)
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", default=[], help="LABEL=PATH of a coversearch checkout (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/placement-index-bench"))
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--features", default="vgg16,phash")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--label", help=argparse.SUPPRESS)  # child
    args = parser.parse_args()
    if args.label:
        child(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    trees = args.tree or [f"this={Path(__file__).resolve().parents[1]}"]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}, {os.cpu_count()} CPUs", flush=True)
    for spec in trees:
        label, path = spec.split("=", 1)
        env = {**os.environ, "PYTHONPATH": str(Path(path).resolve())}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--label", label, "--out", str(args.out), "--n", str(args.n),
               "--repeats", str(args.repeats), "--features", args.features, "--seed", str(args.seed)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=path)
        if result.returncode:
            sys.exit(f"error: {label} failed:\n{result.stderr[-2000:]}")
        print(json.dumps({"tree": label, "load": os.getloadavg(), **json.loads(result.stdout.strip().splitlines()[-1])}), flush=True)


if __name__ == "__main__":
    main()
