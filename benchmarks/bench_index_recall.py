"""recall@10 of an index built in the catalog, with the query parameters it opens with (as `similar`
and the server use it) and with others, against exact search over the store's vectors.

    coversearch --db c5.duckdb --index-dir idx index build --feature hsv --kind faiss-ivfpq \\
        --engine ray --shards 4 --name hsv-pq-sharded
    PYTHONPATH=. .venv/bin/python benchmarks/bench_index_recall.py --db c5.duckdb --index-dir idx \\
        --name hsv-pq-sharded --queries 1000 --also rerank=0

Queries are stored albums' own vectors (a seeded random sample); the album itself counts as one of
its true neighbours, as in exact search.  Prints one line per set of query parameters.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from coversearch.index import catalog
from coversearch.index.recall import ground_truth
from coversearch.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--index-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--also", action="append", default=[], help="other query parameters, e.g. rerank=0,nprobe=32")
    args = parser.parse_args()
    with Store.open(args.db, read_only=True) as store:
        opened = catalog.open_index(store, args.index_dir, args.name)
        index = opened.index
        ids, x = store.load_embeddings(opened.feature_set)
        rows = np.sort(np.random.default_rng(args.seed).choice(len(ids), size=min(args.queries, len(ids)), replace=False))
        queries = x[rows]
        truth = ground_truth(x, queries, args.k, index.metric)
        defaults = dict(index.query_params)
        for label, params in [("default", {}), *((text, dict(p.split("=", 1) for p in text.split(","))) for text in args.also)]:
            index.set_query_arguments(**defaults)
            if params:
                index.set_query_arguments(**params)
            started = time.perf_counter()
            found = np.vstack([index.search(q, args.k).ids for q in queries])
            seconds = time.perf_counter() - started
            recall = np.mean([len(set(f) & set(ids[t])) / args.k for f, t in zip(found, truth.rows)])
            print(f"{args.name} {label}: recall@{args.k} {recall:.4f} over {len(queries)} queries ({len(ids)} vectors), "
                  f"{1000 * seconds / len(queries):.2f} ms/query; query params {index.query_params}", flush=True)


if __name__ == "__main__":
    main()
