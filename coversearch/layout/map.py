"""The catalogue map: every album of a feature set laid out in 2-D, cached in the store.

Two methods:

- ``tsne`` (the default): openTSNE's t-SNE (``layout/tsne.py``), which keeps neighbourhoods: on
  covers5's vgg16 vectors 29% of each album's 10 nearest neighbours are among its 10 nearest on
  the map, against 2.4% for PCA (benchmarks/bench_map.py).  Seeded: the same store and
  seed give the same map.  Above ``tsne.FIT_SAMPLE`` albums a seeded sample is laid out and the
  rest placed into it.
- ``pca``: the two directions of largest variance (numpy, seconds at 100k): a faithful picture of
  the global spread that says little about which covers are alike.

Kept current: a cached t-SNE layout whose albums changed is updated, not redone.  Removed albums
drop out; new albums are placed into the layout (each optimised against the fixed positions of
the others), so no album already on the map moves.  A full layout runs again on ``rebuild`` or once
the albums placed since the last full layout pass ``MAX_PLACED_SHARE`` of the map, since placed
albums cannot reshape the map around a new region of the catalogue.  A PCA layout is recomputed
whenever its albums change (its axes depend on every album).

Each album also gets a cluster (k-means on the map, so clusters are regions a person sees), how
typical it is of that cluster (closeness to the cluster's mean vector: the page shows a cluster's
most typical covers), and its nearest-neighbour density (the mean distance to its 10 nearest
albums among those the layout fitted, a fixed reference so densities stay comparable as albums
are placed).  Coordinates are scaled into [0, 1], one scale for both axes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch import metrics
from coversearch.features.registry import metric_for
from coversearch.layout import tsne

TSNE = "tsne"
PCA = "pca"
METHODS = (TSNE, PCA)
METHOD_LABELS = {TSNE: "t-SNE", PCA: "PCA"}
DEFAULT_METHOD = TSNE
MAX_PLACED_SHARE = 0.25  # a full re-layout once more than this share of the map was placed since the last one
LAYOUT_VERSION = 1  # bump when a layout's recipe changes: cached layouts of older versions are laid out anew
MAX_CLUSTERS = 30
MARGIN = 0.02  # of the unit square left around a t-SNE layout, so placed albums rarely reach the edge


@dataclass
class MapLayout:
    feature: str  # feature set label, e.g. "vgg16 v1"
    method: str
    album_ids: np.ndarray  # int64 (n,)
    xy: np.ndarray  # float32 (n, 2) in [0, 1]
    seconds: float  # what computing (or updating) the layout took, when it was computed
    cache: str  # "hit", "computed" (nothing cached), "recomputed" (laid out anew) or "updated" (albums placed / dropped)
    saved: bool  # stored in the store for the next time
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    placed: np.ndarray | None = None  # bool (n,): placed into a layout rather than fitted by it
    cluster: np.ndarray | None = None  # int32 (n,)
    typicality: np.ndarray | None = None  # float32 (n,): higher = closer to its cluster's mean vector
    density: np.ndarray | None = None  # float32 (n,): 1 / mean distance to its 10 nearest fitted albums
    placed_since_fit: int = 0  # albums placed since the last full layout
    placed_now: int = 0  # albums placed by this call
    removed_now: int = 0  # albums dropped by this call
    seed: int = 0
    params: dict = field(default_factory=dict)  # what a later update needs (seed, the unit frame, settings)

    def summary(self) -> dict:
        return {"feature": self.feature, "method": self.method, "albums": int(len(self.album_ids)), "cache": self.cache,
                "saved": self.saved, "layout_seconds": round(self.seconds, 3), "seed": self.seed,
                "placed_since_full_layout": self.placed_since_fit, "placed_now": self.placed_now,
                "removed_now": self.removed_now, "clusters": int(self.cluster.max() + 1) if self.cluster is not None and len(self.cluster) else 0,
                "notes": self.notes}

    def columns(self) -> dict[str, np.ndarray]:
        return {"album_id": self.album_ids, "xy": self.xy, "placed": self.placed, "cluster": self.cluster,
                "typicality": self.typicality, "density": self.density}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise CoverSearchError(f"unknown map method {method!r}; choose from {', '.join(METHODS)}")
    return method


def pca_2d(vectors: np.ndarray, metric: str | None = None, chunk: int = 65536) -> np.ndarray:
    """(n, 2) float32 coordinates in [0, 1]: the vectors projected on their two principal axes."""
    n, dim = vectors.shape
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if metric == metrics.COSINE:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
    mean = vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
    cov = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, n, chunk):  # bounded memory: the centred copy is made a chunk at a time
        part = np.asarray(vectors[start : start + chunk], dtype=np.float32) - mean
        cov += part.T @ part  # float32 products (twice as fast), summed per chunk in float64
    values, axes = np.linalg.eigh(cov)
    axes = axes[:, np.argsort(values)[::-1][:2]]
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((dim, 2 - axes.shape[1]))])
    # Fix each axis's sign (eigh may flip it between runs on other machines): largest loading positive.
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    xy = np.empty((n, 2), dtype=np.float64)
    for start in range(0, n, chunk):
        xy[start : start + chunk] = (np.asarray(vectors[start : start + chunk], dtype=np.float32) - mean) @ axes.astype(np.float32)
    return scale_unit(xy)


def scale_unit(xy: np.ndarray) -> np.ndarray:
    low = np.percentile(xy, 0.1, axis=0) if len(xy) > 100 else xy.min(axis=0)
    high = np.percentile(xy, 99.9, axis=0) if len(xy) > 100 else xy.max(axis=0)
    span = float(max((high - low).max(), 1e-12))  # one scale for both axes: distances keep their meaning
    out = (np.clip(xy, low, high) - low) / span
    out += (1 - (high - low) / span) / 2  # centre the shorter axis
    return out.astype(np.float32)


def unit_frame(raw: np.ndarray) -> dict:
    """The affine map raw -> [0, 1] of a t-SNE layout (kept so later placements land in the same frame)."""
    low, high = raw.min(axis=0), raw.max(axis=0)
    span = float(max((high - low).max(), 1e-12))
    scale = (1 - 2 * MARGIN) / span
    origin = (low + high) / 2 - 0.5 / scale  # the centre of the layout goes to (0.5, 0.5)
    return {"origin": [float(origin[0]), float(origin[1])], "scale": scale}


def to_unit(raw: np.ndarray, frame: dict) -> np.ndarray:
    return np.clip((raw - np.asarray(frame["origin"])) * frame["scale"], 0, 1).astype(np.float32)


def from_unit(xy: np.ndarray, frame: dict) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64) / frame["scale"] + np.asarray(frame["origin"])


# -- full layouts and updates ------------------------------------------------------------------------
def _fit_sample(n: int, seed: int) -> np.ndarray:
    """bool (n,): the albums t-SNE lays out itself (all of them up to ``tsne.FIT_SAMPLE``)."""
    mask = np.zeros(n, dtype=bool)
    if n <= tsne.FIT_SAMPLE:
        mask[:] = True
    else:
        mask[np.random.default_rng(seed).choice(n, tsne.FIT_SAMPLE, replace=False)] = True
    return mask


def full_layout(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(unit coordinates float32 (n, 2), fitted bool (n,), params) of prepared vectors ``x``."""
    n = len(x)
    fitted = _fit_sample(n, seed)
    if method == PCA:
        return pca_2d(x), fitted, {"seed": seed, "version": LAYOUT_VERSION}
    raw = np.zeros((n, 2))
    raw[fitted] = tsne.fit(x[fitted], seed)
    if not fitted.all():
        raw[~fitted] = tsne.place(raw[fitted], x[fitted], x[~fitted], seed)
    frame = unit_frame(raw)
    params = {"seed": seed, "version": LAYOUT_VERSION, "perplexity": tsne.PERPLEXITY, "fit_sample": tsne.FIT_SAMPLE,
              "max_placed_share": MAX_PLACED_SHARE, **frame}
    return to_unit(raw, frame), fitted, params


def cluster_count(n: int) -> int:
    return int(max(1, min(MAX_CLUSTERS, round(np.sqrt(n / 4)))))


def clusters_on_map(xy: np.ndarray, seed: int) -> np.ndarray:
    """int32 (n,): k-means regions of the map (k grows with the square root of the albums, at most 30)."""
    from sklearn.cluster import KMeans

    n = len(xy)
    k = min(cluster_count(n), n)
    if k <= 1:
        return np.zeros(n, dtype=np.int32)
    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(np.asarray(xy, dtype=np.float64))
    # Number clusters by their position (top-left first), not by k-means' arbitrary order.
    centres = np.array([xy[labels == c].mean(axis=0) if (labels == c).any() else (9, 9) for c in range(k)])
    order = np.lexsort((centres[:, 0], np.round(centres[:, 1] * 5)))
    rank = np.empty(k, dtype=np.int32)
    rank[order] = np.arange(k, dtype=np.int32)
    return rank[labels]


def nearest_cluster(xy_new: np.ndarray, xy: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """The cluster of each new point: that of the nearest cluster centre on the map."""
    if len(xy_new) == 0:
        return np.zeros(0, dtype=np.int32)
    labels = np.unique(cluster)
    centres = np.stack([xy[cluster == c].mean(axis=0) for c in labels])
    d = ((xy_new[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return labels[d.argmin(axis=1)].astype(np.int32)


def typicality(x: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """float32 (n,): minus the distance of each album to its cluster's mean prepared vector."""
    out = np.zeros(len(x), dtype=np.float32)
    for c in np.unique(cluster):
        rows = np.flatnonzero(cluster == c)
        centre = x[rows].mean(axis=0, dtype=np.float64).astype(np.float32)
        out[rows] = -np.linalg.norm(x[rows] - centre, axis=1)
    return out


def densities(x: np.ndarray, fitted: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """float32: 1 / mean distance to the 10 nearest fitted albums, for ``rows`` of ``x`` (all by default)."""
    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    reference_rows = np.flatnonzero(fitted)
    position = np.full(len(x), -1, dtype=np.int64)
    position[reference_rows] = np.arange(len(reference_rows))
    mean = tsne.neighbour_distances(x[rows], x[reference_rows], position[rows])
    return (1.0 / np.maximum(mean, 1e-6)).astype(np.float32)


def catalogue_map(
    store,
    feature: str,
    *,
    method: str = DEFAULT_METHOD,
    rebuild: bool = False,
    save: bool = True,
    seed: int = 0,
    fit_limit: int | None = None,
    recompute: bool | None = None,
) -> MapLayout:
    """The cached layout of ``feature`` when it is current; else the cached one updated (t-SNE:
    new albums placed, removed ones dropped) or a new one; saved when the store is writable.

    ``fit_limit``: the most albums a full t-SNE layout may take here (the page, which must answer
    soon, passes one); above it a PCA layout is returned instead, with a note."""
    check_method(method)
    rebuild = bool(rebuild or recompute)
    fs = store.feature_set(feature)
    metric = metric_for(fs)
    fingerprint = store.embedding_fingerprint(fs)
    cached = store.map_layout(fs.id, method)
    usable = (cached is not None and cached[0]["params"].get("version") == LAYOUT_VERSION
              and cached[0]["params"].get("seed") == seed and len(cached[1]["album_id"]) > 0)
    if usable and not rebuild and cached[0]["embedding_fingerprint"] == fingerprint:
        record, cols = cached
        return MapLayout(fs.label, method, cols["album_id"], cols["xy"], record["seconds"], "hit", True, fingerprint,
                         placed=cols["placed"], cluster=cols["cluster"], typicality=cols["typicality"],
                         density=cols["density"], placed_since_fit=record["placed"], seed=seed, params=record["params"])
    ids, vectors = store.load_embeddings(fs)
    if len(ids) == 0:
        raise CoverSearchError(f"the store has no {fs.label} vectors to lay out; run `coversearch ingest --features {feature}`")
    x = tsne.prepared(vectors, metric)
    del vectors
    notes: list[str] = []
    started = time.perf_counter()
    layout = None
    if usable and not rebuild and method == TSNE:
        layout = _update(fs.label, cached, ids, x, seed, notes)
    if layout is None:
        if method == TSNE and fit_limit is not None and len(ids) > fit_limit:
            notes.append(f"no current t-SNE layout of {len(ids):,} albums is cached and laying one out takes minutes: "
                         f"showing PCA; run `coversearch map --feature {feature}` to lay out and cache the t-SNE map")
            pca = catalogue_map(store, feature, method=PCA, save=save, seed=seed)
            pca.notes[:0] = notes
            return pca
        xy, fitted, params = full_layout(x, method, seed)
        cluster = clusters_on_map(xy, seed)
        layout = MapLayout(fs.label, method, ids, xy, 0.0, "computed" if cached is None else "recomputed", False, fingerprint,
                           notes, placed=~fitted, cluster=cluster, typicality=typicality(x, cluster),
                           density=densities(x, fitted), seed=seed, params=params)
    layout.seconds = time.perf_counter() - started
    layout.fingerprint = fingerprint
    if save and not store.read_only:
        store.save_map_layout(fs.id, method, fingerprint, layout.columns(), layout.seconds,
                              fitted=int(len(ids) - layout.placed_since_fit), placed=layout.placed_since_fit,
                              params=layout.params)
        layout.saved = True
    elif save:
        layout.notes.append("the store is open read-only: this layout was not cached")
    return layout


def _update(label: str, cached, ids: np.ndarray, x: np.ndarray, seed: int, notes: list[str]) -> MapLayout | None:
    """The cached t-SNE layout with removed albums dropped and new ones placed; None when a full
    layout is due (too much of the map would have been placed, or nothing of it is left)."""
    record, cols = cached
    old_ids = cols["album_id"]
    keep_old = np.isin(old_ids, ids)
    kept_ids = old_ids[keep_old]
    new_mask = ~np.isin(ids, kept_ids)
    placed_since = record["placed"] + int(new_mask.sum())  # removed ones still count: the map was shaped without them
    if len(kept_ids) < 2 or placed_since > MAX_PLACED_SHARE * len(ids):
        if len(kept_ids) >= 2:
            notes.append(f"{placed_since:,} of {len(ids):,} albums would have been placed since the last full layout "
                         f"(more than {MAX_PLACED_SHARE:.0%}): laid out anew")
        return None
    frame = record["params"]
    at = np.searchsorted(ids, kept_ids)  # both ascending; kept ids are all in ids
    xy = np.zeros((len(ids), 2), dtype=np.float32)
    placed = np.zeros(len(ids), dtype=bool)
    cluster = np.zeros(len(ids), dtype=np.int32)
    density = np.zeros(len(ids), dtype=np.float32)
    xy[at] = cols["xy"][keep_old]
    placed[at] = cols["placed"][keep_old]
    cluster[at] = cols["cluster"][keep_old]
    density[at] = cols["density"][keep_old]
    new_rows = np.flatnonzero(new_mask)
    if len(new_rows):
        raw = tsne.place(from_unit(xy[at], frame), x[at], x[new_rows], seed)
        xy[new_rows] = to_unit(raw, frame)
        placed[new_rows] = True
        cluster[new_rows] = nearest_cluster(xy[new_rows], xy[at], cluster[at])
        fitted = ~placed
        if fitted.sum() >= 2:
            density[new_rows] = densities(x, fitted, new_rows)
    layout = MapLayout(label, TSNE, ids, xy, 0.0, "updated", False, "", notes, placed=placed, cluster=cluster,
                       typicality=typicality(x, cluster), density=density, placed_since_fit=placed_since,
                       placed_now=len(new_rows), removed_now=int((~keep_old).sum()), seed=seed, params=frame)
    return layout


def layout_state(store, feature: str, method: str = DEFAULT_METHOD, seed: int = 0) -> str:
    """"none", "current" or "stale": what a cached layout of ``feature`` is worth now."""
    fs = store.feature_set(feature)
    cached = store.map_layout(fs.id, method)
    if cached is None:
        return "none"
    fresh = (cached[0]["embedding_fingerprint"] == store.embedding_fingerprint(fs)
             and cached[0]["params"].get("version") == LAYOUT_VERSION and cached[0]["params"].get("seed") == seed)
    return "current" if fresh else "stale"


def duplicate_groups(store) -> list[np.ndarray] | None:
    """The store's near-duplicate groups under the default rule (as `coversearch dedupe`), for
    colouring the map; None when the store holds none of the rule's features."""
    from coversearch.dedupe.groups import store_groups
    from coversearch.dedupe.rules import default_rules
    from coversearch.dedupe.stored import is_current, stored_groups

    rules = default_rules(store)
    if not rules:
        return None
    groups = stored_groups(store, rules) if is_current(store, rules) else store_groups(store, rules)
    return [g for g in groups if len(g) > 1]
