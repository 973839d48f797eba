"""How many OpenMP threads FAISS may use.

A single query is answered in well under a millisecond, less than it costs FAISS to wake a team of
OpenMP threads, so single queries run on one thread; builds and batch searches use every core.

OpenMP threads that wait by spinning (libgomp's default) turn pathological when the cores are
shared: on a busy 2-core machine a 2-thread PQ training took 14-44 s against 5.7 s on one thread.
Passive waiting removes that (5.8 s) at the cost of microseconds per parallel region, so it is the
default here unless OMP_WAIT_POLICY is set.  It must be set before FAISS's OpenMP runtime loads,
so ``coversearch/index/__init__.py`` sets it too, before any kind's module can import FAISS.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run the block with FAISS limited to ``n`` OpenMP threads, then restore the previous limit."""
    import faiss  # here: a kind without FAISS (annoy, duckdb) does not load it

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def single_query_threads():
    return faiss_threads(1)


def all_threads():
    return faiss_threads(available_cores())
