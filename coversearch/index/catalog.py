"""Indexes on disk: build, list, open, and keep them in step with the store.

An index is the folder ``<index-dir>/<name>/`` (see ``manifest.py``).  It is written into a
hidden temporary folder beside it and renamed into place, so a crash never leaves a half-written
index under its final name.

An index is *current* when the store's ``embedding_fingerprint`` for its feature set is the one
recorded at build time; the store's path does not matter (a copied store is fine).  A stale
index is refused, or refreshed: FAISS kinds add the new vectors in place when albums were only
added; kinds that can remove in place (exact, faiss-ivf) drop the removed albums' vectors, check
that every vector left is still the store's, and add the new ones; anything else (removals from
faiss-hnsw, faiss-ivfpq or annoy, a re-created feature set, a new model, vectors changed under the
same album ids) means a rebuild with the parameters it was built with.  A kind that searches the
store itself (``searches_store``: duckdb) is always current.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.fsutil import check_folder_name, staged_folder
from coversearch import metrics
from coversearch.features.registry import metric_for
from coversearch.index.base import IndexFileError, VectorIndex, load_ids
from coversearch.index.manifest import (
    MANIFEST_FILE,
    IndexManifest,
    file_record,
    read_manifest,
    verify_files,
    write_manifest,
)
from coversearch.index.params import kind_defaults, split_params
from coversearch.index.registry import create_index, index_class
from coversearch.store import FeatureSet, Store

if TYPE_CHECKING:
    from coversearch.index.sharded import Progress, ShardOptions

class StaleIndexError(CoverSearchError):
    """The index no longer matches the store's vectors."""


class UnknownIndexError(CoverSearchError):
    pass


@dataclass
class Freshness:
    current: bool
    reason: str = ""  # why not current
    added_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    removed: int = 0
    removed_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    can_add: bool = False  # bringing it up to date needs only adding ``added_ids``


@dataclass
class OpenedIndex:
    index: VectorIndex
    manifest: IndexManifest
    feature_set: FeatureSet
    refreshed_by: str | None = None  # "add" or "rebuild" when opening brought it up to date
    notes: list[str] = field(default_factory=list)


def default_index_name(feature: str, kind: str) -> str:
    return f"{feature}-{kind}"


def check_name(name: str) -> str:
    return check_folder_name(name, "index")


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# -- building -------------------------------------------------------------------------------------
def build_index(
    store: Store,
    *,
    feature: str,
    kind: str,
    index_dir: str | os.PathLike,
    name: str | None = None,
    metric: str | None = None,
    build_params: Mapping[str, Any] | None = None,
    query_params: Mapping[str, Any] | None = None,
    feature_version: int | None = None,
    sharding: ShardOptions | None = None,
    progress: Progress | None = None,
) -> IndexManifest:
    """Build ``kind`` over the store's ``feature`` vectors and write it as ``<index_dir>/<name>``.

    With ``sharding`` (faiss-ivf, faiss-ivfpq), train on a sample and add the store in shards
    (``sharded.py``) instead of loading every vector at once."""
    return _build(store, feature, kind, Path(index_dir), name, metric, build_params, query_params, feature_version,
                  sharding=sharding, progress=progress)


def _build(
    store: Store,
    feature: str,
    kind: str,
    index_dir: Path,
    name: str | None,
    metric: str | None,
    build_params: Mapping[str, Any] | None,
    query_params: Mapping[str, Any] | None,
    feature_version: int | None,
    refreshed_by: str | None = None,
    sharding: ShardOptions | None = None,
    progress: Progress | None = None,
) -> IndexManifest:
    index_class(kind)  # an unknown kind fails before any work
    name = check_name(name or default_index_name(feature, kind))
    fs = store.feature_set(feature, feature_version)
    metric = metrics.check_metric(metric or metric_for(fs))
    build_given, query_given = split_params(kind, {**(build_params or {}), **(query_params or {})})
    if sharding is not None and "refine" in kind_defaults(kind).build:
        build_given.setdefault("refine", False)  # shards hold codes only; rerank reads the store
    index = create_index(kind, metric, fs.dim, build_given, query_given)
    _target_folder(index_dir, name)  # refuse a name taken by something else before the work
    fingerprint = store.embedding_fingerprint(fs)
    if sharding is not None:
        index_dir.mkdir(parents=True, exist_ok=True)
        # A hidden staging folder: a killed build leaves a leftover the next build removes.
        work = Path(tempfile.mkdtemp(prefix=f".{name}.staging-{os.getpid()}-", dir=index_dir))
        try:
            started = time.perf_counter()
            from coversearch.index.sharded import build_sharded

            sharding_report = build_sharded(store, fs, index, sharding, work, progress)
            seconds = time.perf_counter() - started
            manifest = _new_manifest(store, fs, name, kind, metric, index, build_given, query_given, seconds, fingerprint,
                                     refreshed_by)
            manifest.sharding = sharding_report
            return _write_index(index_dir, index, manifest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    ids, vectors = store.load_embeddings(fs)
    if len(ids) == 0:
        raise CoverSearchError(f"the store has no {fs.label} vectors to index; run `coversearch ingest --features {feature}`")
    started = time.perf_counter()
    index.fit(vectors, ids)
    seconds = time.perf_counter() - started
    manifest = _new_manifest(store, fs, name, kind, metric, index, build_given, query_given, seconds, fingerprint,
                             refreshed_by)
    return _write_index(index_dir, index, manifest)


def _new_manifest(
    store: Store, fs: FeatureSet, name: str, kind: str, metric: str, index: VectorIndex, build_given: dict,
    query_given: dict, seconds: float, fingerprint: str, refreshed_by: str | None,
) -> IndexManifest:
    return IndexManifest(
        name=name,
        kind=kind,
        metric=metric,
        feature=fs.name,
        feature_version=fs.version,
        feature_set_id=fs.id,
        model_fingerprint=fs.model_fingerprint,
        dim=fs.dim,
        build_params=dict(index.build_params),
        query_params=dict(index.query_params),
        given_params={**build_given, **query_given},
        vectors=len(index),
        ids_file="ids.npy",
        files={},
        build_seconds=round(seconds, 3),
        size_bytes=0,
        built_at=_now(),
        store_path=str(Path(store.path).resolve()),
        store_fingerprint=fingerprint,
        refreshed_by=refreshed_by,
        refreshed_at=_now() if refreshed_by else None,
    )


def _target_folder(index_dir: Path, name: str) -> Path:
    folder = index_dir / name
    if folder.exists() and not (folder / MANIFEST_FILE).is_file():
        if not folder.is_dir() or any(folder.iterdir()):
            raise CoverSearchError(f"{folder} exists and is not an index: choose another --name")
    return folder


def _write_index(index_dir: Path, index: VectorIndex, manifest: IndexManifest) -> IndexManifest:
    """Save into a temporary folder, then rename it over ``<index_dir>/<name>``."""
    final = _target_folder(index_dir, manifest.name)
    with staged_folder(index_dir, manifest.name) as staging:
        written = index.save(staging)
        manifest.files = {name: file_record(staging / name) for name in written}
        manifest.size_bytes = sum(record.bytes for record in manifest.files.values())
        manifest.vectors = len(index)
        write_manifest(staging, manifest)
    manifest.folder = final
    return manifest


# -- reading --------------------------------------------------------------------------------------
def load_manifest(index_dir: str | os.PathLike, name: str) -> IndexManifest:
    index_dir = Path(index_dir)
    folder = index_dir / check_name(name)
    if not folder.is_dir():
        names = [m.name for m in list_manifests(index_dir)[0]]
        known = ", ".join(names) if names else "none"
        raise UnknownIndexError(f"no index named {name!r} in {index_dir} (indexes there: {known})")
    return read_manifest(folder)


def list_manifests(index_dir: str | os.PathLike) -> tuple[list[IndexManifest], list[tuple[str, str]]]:
    """(readable manifests by name, [(folder name, problem)] for unreadable ones)."""
    index_dir = Path(index_dir)
    manifests: list[IndexManifest] = []
    problems: list[tuple[str, str]] = []
    if not index_dir.is_dir():
        return manifests, problems
    for folder in sorted(index_dir.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue  # temporary build folders, README files
        try:
            manifests.append(read_manifest(folder))
        except IndexFileError as exc:
            problems.append((folder.name, str(exc)))
    return manifests, problems


def indexes_for_feature(index_dir: str | os.PathLike, feature: str, metric: str | None = None) -> list[IndexManifest]:
    """Readable indexes over ``feature`` (and ``metric``), newest build (or refresh) first."""
    found = [m for m in list_manifests(index_dir)[0] if m.feature == feature and (metric is None or m.metric == metric)]
    found.sort(key=lambda m: m.name)  # ties (same second) go by name
    return sorted(found, key=lambda m: m.refreshed_at or m.built_at, reverse=True)


# -- freshness ------------------------------------------------------------------------------------
def check_current(store: Store, manifest: IndexManifest) -> Freshness:
    """Whether the index still matches the store's vectors, and if not, whether adding suffices."""
    candidates = [fs for fs in store.feature_sets() if fs.name == manifest.feature]
    if not candidates:
        return Freshness(False, f"the store has no {manifest.feature} embeddings any more")
    fs = max(candidates, key=lambda f: f.version)
    if fs.dim != manifest.dim:
        return Freshness(False, f"the store's {fs.label} vectors have dimension {fs.dim}, the index {manifest.dim}")
    if index_class(manifest.kind).searches_store:
        return Freshness(True)  # it reads the store on every query
    if fs.version != manifest.feature_version or fs.model_fingerprint != manifest.model_fingerprint:
        return Freshness(
            False,
            f"the store's {manifest.feature} vectors are now {fs.label} (model {fs.model_fingerprint}); "
            f"the index was built from {manifest.feature_label} (model {manifest.model_fingerprint})",
        )
    if fs.id != manifest.feature_set_id:
        return Freshness(False, f"the store's {fs.label} feature set was re-created since the build")
    fingerprint = store.embedding_fingerprint(fs)
    if fingerprint == manifest.store_fingerprint:
        return Freshness(True)
    store_ids = np.asarray(sorted(store.embedded_album_ids(fs)), dtype=np.int64)
    index_ids = load_ids(manifest.folder / manifest.ids_file)
    added = np.setdiff1d(store_ids, index_ids)
    removed_ids = np.setdiff1d(index_ids, store_ids)
    removed = int(len(removed_ids))
    reason = (
        f"the store's {fs.label} vectors changed since the build: {len(added)} added, {removed} removed "
        f"(index {len(index_ids)}, store {len(store_ids)})"
    )
    # Adding is enough only if every indexed vector is still exactly as it was.
    can_add = removed == 0 and store.embedding_fingerprint(fs, index_ids) == manifest.store_fingerprint
    if removed == 0 and len(added) == 0:
        reason = f"the store's {fs.label} vectors changed since the build (same albums, different vectors)"
    return Freshness(False, reason, added, removed, removed_ids=removed_ids, can_add=can_add and len(added) > 0)


# -- opening --------------------------------------------------------------------------------------
def _verify(manifest: IndexManifest) -> None:
    native = index_class(manifest.kind).native_file
    verify_files(manifest.folder, manifest, required=[native] if native else [])


def load_index(manifest: IndexManifest, *, verify: bool = True) -> VectorIndex:
    """The index object of a manifest read from disk, its files checked first."""
    if manifest.folder is None:
        raise ValueError("manifest was not read from a folder")
    if verify:
        _verify(manifest)
    cls = index_class(manifest.kind)
    return cls.load(
        manifest.folder,
        metric=manifest.metric,
        dim=manifest.dim,
        build_params=manifest.build_params,
        query_params=manifest.query_params,
    )


def open_index(store: Store, index_dir: str | os.PathLike, name: str, *, refresh: bool = False) -> OpenedIndex:
    """Load ``name``, checking it against the store: refuse a stale one, or refresh it."""
    manifest = load_manifest(index_dir, name)
    _verify(manifest)  # a damaged index is refused before anything else
    notes: list[str] = []
    freshness = check_current(store, manifest)
    refreshed_by = None
    if not freshness.current:
        if not refresh:
            raise StaleIndexError(
                f"index {manifest.name!r} is stale: {freshness.reason}; run again with --refresh to bring it up "
                f"to date, or rebuild it with `coversearch index build --feature {manifest.feature} "
                f"--kind {manifest.kind} --name {manifest.name}`"
            )
        manifest = refresh_index(store, Path(index_dir), manifest, freshness)
        refreshed_by = manifest.refreshed_by
        notes.append(
            f"index {manifest.name!r} refreshed by {refreshed_by}: {freshness.reason}; it now holds {manifest.vectors} vectors"
        )
    elif Path(manifest.store_path) != Path(store.path).resolve() and not index_class(manifest.kind).searches_store:
        notes.append(f"index {manifest.name!r} was built from {manifest.store_path}; its vectors match this store")
    index = load_index(manifest, verify=refreshed_by is not None)
    fs = store.feature_set(manifest.feature)
    index.bind(store, fs)  # kinds that read the store (duckdb's scan, faiss-ivfpq's rerank) keep it
    return OpenedIndex(index, manifest, fs, refreshed_by, notes)


def _remove_in_place(store: Store, index_dir: Path, manifest: IndexManifest, freshness: Freshness) -> IndexManifest | None:
    """Drop removed albums' vectors and add new ones, if every vector left is still the store's; else None."""
    index = load_index(manifest)
    fs = store.feature_set(manifest.feature)
    fingerprint = store.embedding_fingerprint(fs)
    index.remove(freshness.removed_ids)
    kept_ids, kept_vectors = store.load_embeddings(fs, index.ids)
    if len(kept_ids) != len(index.ids) or not index.holds_vectors(kept_vectors, kept_ids):
        return None  # vectors changed under the same album ids (e.g. an id reused): rebuild
    added = 0
    if len(freshness.added_ids):
        if not index.supports_add:
            return None
        ids, vectors = store.load_embeddings(fs, freshness.added_ids)
        index.add(vectors, ids)
        added = len(ids)
    manifest.store_fingerprint = fingerprint
    manifest.refreshed_by = "remove"
    manifest.refreshed_at = _now()
    manifest.vectors_added = added
    return _write_index(index_dir, index, manifest)


def refresh_index(store: Store, index_dir: Path, manifest: IndexManifest, freshness: Freshness | None = None) -> IndexManifest:
    """Bring a stale index up to date: add (and remove) vectors in place when the kind can, else rebuild."""
    freshness = freshness or check_current(store, manifest)
    if freshness.current:
        return manifest
    if freshness.can_add and index_class(manifest.kind).supports_add:
        index = load_index(manifest)
        fs = store.feature_set(manifest.feature)
        fingerprint = store.embedding_fingerprint(fs)
        ids, vectors = store.load_embeddings(fs, freshness.added_ids)
        index.add(vectors, ids)
        manifest.store_fingerprint = fingerprint
        manifest.refreshed_by = "add"
        manifest.refreshed_at = _now()
        manifest.vectors_added = len(ids)
        return _write_index(index_dir, index, manifest)
    if freshness.removed and index_class(manifest.kind).supports_remove:
        updated = _remove_in_place(store, index_dir, manifest, freshness)
        if updated is not None:
            return updated
    # Same kind, metric and asked-for parameters; "auto" values are resolved again for the new n.
    return _build(
        store, manifest.feature, manifest.kind, index_dir, manifest.name, manifest.metric,
        manifest.given_params, None, None, refreshed_by="rebuild", sharding=_sharding_of(manifest),
    )


def _sharding_of(manifest: IndexManifest) -> ShardOptions | None:
    """The shard options a sharded index was built with (a rebuild uses them again)."""
    if not manifest.sharding:
        return None
    from coversearch.index.sharded import ShardOptions

    fields = ShardOptions.__dataclass_fields__
    return ShardOptions(**{k: v for k, v in manifest.sharding.items() if k in fields})
