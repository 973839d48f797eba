"""The ingest use case on a listing: load the extractors, ingest on an engine, and (optionally)
report near-duplicates.

``coversearch ingest`` and ``coversearch download --ingest`` both call ``run_ingest``; the CLI only
parses options and prints the result.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from typing import Callable

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.features.embedder import Embedder
from coversearch.imaging.images import MAX_FILE_BYTES
from coversearch.features.registry import get_extractor, parse_feature_list
from coversearch.dedupe.rules import default_rules
from coversearch.ingest.pipeline import DEFAULT_BATCH_SIZE, ingest
from coversearch.ingest.readers import SourceListing
from coversearch.dedupe.stored import forget_newly_read, new_album_duplicates, place, read_texts
from coversearch.store import Store

# progress(total) -> a context yielding (set_total(n), advance(n)): the CLI passes its progress bar.
ProgressFactory = Callable[[int], AbstractContextManager]


class _NoBar:
    def __call__(self, n: int) -> None:
        pass

    def set_total(self, n: int) -> None:
        pass


def _no_progress(total: int) -> AbstractContextManager:
    return nullcontext(_NoBar())


def run_ingest(
    db: str | os.PathLike,
    listing: SourceListing,
    features: str,
    vgg16_weights: str | os.PathLike | None,
    *,
    engine: str = "local",
    ray=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_file_bytes: int = MAX_FILE_BYTES,
    report_duplicates: bool = False,
    progress: ProgressFactory = _no_progress,
) -> dict:
    """Ingest ``listing`` into the store at ``db`` (made if missing) on ``engine`` ("local", or
    "ray" with ``ray``: RayOptions); the summary as a dict, with ``near_duplicates`` when
    ``report_duplicates``."""
    names = parse_feature_list(features)
    extractors = [get_extractor(name, vgg16_weights=vgg16_weights) for name in names]
    if engine == "local":
        Embedder(extractors).load()  # a missing or broken weights file fails before any work
    else:
        for ex in extractors:
            ex.model_fingerprint()  # a missing weights file fails here, not in every actor
    with Store.open(db) as store:
        before = set(store.album_ids_by_sha().values()) if report_duplicates else set()
        texts_before = read_texts(store) if "text" in names else None
        with progress(len(listing.items)) as bar:
            summary = ingest(store, listing, extractors, engine=engine, ray=ray, vgg16_weights=vgg16_weights,
                             batch_size=batch_size, max_file_bytes=max_file_bytes,
                             on_plan=bar.set_total, on_progress=lambda n, _: bar(n))
        result = summary.to_dict()
        if default_rules(store):  # each new cover joins its group now, near-copies in this run included
            forget_newly_read(store, texts_before)  # covers read for the first time are judged again, with their text
            result["duplicate_groups"] = place(store).to_dict()
        if report_duplicates:
            new_ids = np.asarray(sorted(set(store.album_ids_by_sha().values()) - before), dtype=np.int64)
            rules = default_rules(store)
            if not rules:
                raise CoverSearchError("--report-duplicates needs phash or vgg16 vectors: add --features phash")
            found = new_album_duplicates(store, rules, new_ids)  # the stored groups, near-copies within this run included
            result["near_duplicates"] = {"rules": [r.label for r in rules], "found": [asdict(d) for d in found]}
    return result
