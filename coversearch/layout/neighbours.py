"""Each album's nearest albums, for a map file that must answer clicks without a server."""

from __future__ import annotations

import numpy as np

from coversearch.features.registry import metric_for


def nearest_albums(store, feature: str, k: int, batch: int = 1024) -> dict[int, list[int]]:
    """album id -> its ``k`` nearest other albums in ``feature``'s space (exact FAISS scan, batched)."""
    from coversearch.index.exact import ExactIndex

    fs = store.feature_set(feature)
    ids, vectors = store.load_embeddings(fs)
    if len(ids) < 2 or k < 1:
        return {}
    index = ExactIndex(metric_for(fs), fs.dim).fit(vectors, ids)
    want = min(k + 1, len(ids))
    out: dict[int, list[int]] = {}
    for start in range(0, len(ids), batch):
        found, _ = index.batch_search(vectors[start : start + batch], want)
        for album, row in zip(ids[start : start + batch].tolist(), found.tolist()):
            out[album] = [int(a) for a in row if a != album and a >= 0][:k]
    return out
