"""An index folder's ``manifest.json``: what was indexed, how, from which store, and its files.

Layout of ``<index-dir>/<name>/``::

    manifest.json   this record (format_version, feature set, metric, kind, parameters, ...)
    ids.npy         row -> album id (int64), referenced as ``ids_file``
    index.faiss     the kind's own file (index.ann for annoy; none for duckdb)

Every file's size and sha256 are recorded, so a truncated or corrupted file is refused when the
index is opened instead of crashing (or silently misbehaving) inside FAISS or annoy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from coversearch.checksums import FileRecord, file_record, verify_records
from coversearch.index.base import IndexFileError

__all__ = ["FileRecord", "IndexManifest", "file_record", "read_manifest", "verify_files", "write_manifest"]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass
class IndexManifest:
    name: str
    kind: str
    metric: str
    feature: str  # feature set name, e.g. "vgg16"
    feature_version: int
    feature_set_id: int  # the store's feature_sets.id (its vectors live in embeddings_<id>)
    model_fingerprint: str | None
    dim: int
    build_params: dict[str, Any]  # resolved ("auto" replaced by the numbers used)
    query_params: dict[str, Any]
    given_params: dict[str, Any]  # what was asked for on the command line; re-applied on a rebuild
    vectors: int
    ids_file: str
    files: dict[str, FileRecord]
    build_seconds: float
    size_bytes: int  # the index's files on disk (ids included, manifest not)
    built_at: str  # ISO 8601, UTC
    store_path: str
    store_fingerprint: str  # Store.embedding_fingerprint(feature set) when built or refreshed
    refreshed_by: str | None = None  # None (fresh build), "add" / "remove" (vectors changed in place) or "rebuild"
    refreshed_at: str | None = None
    vectors_added: int = 0  # by the last refresh with "add" or "remove"
    sharding: dict[str, Any] | None = None  # sharded builds: options and timings (see sharded.py)
    format_version: int = FORMAT_VERSION
    folder: Path | None = field(default=None, compare=False)  # where it was read from (not stored)

    @property
    def feature_label(self) -> str:
        return f"{self.feature} v{self.feature_version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("folder")
        # A readable nesting on disk; from_dict flattens it again.
        data["feature"] = {
            "name": self.feature,
            "version": self.feature_version,
            "feature_set_id": self.feature_set_id,
            "dim": self.dim,
            "model_fingerprint": self.model_fingerprint,
        }
        data["store"] = {"path": self.store_path, "embedding_fingerprint": self.store_fingerprint}
        for key in ("feature_version", "feature_set_id", "dim", "model_fingerprint", "store_path", "store_fingerprint"):
            data.pop(key)
        order = ["format_version", "name", "kind", "metric", "feature", "vectors", "ids_file", "files"]
        return {key: data[key] for key in order} | {k: v for k, v in data.items() if k not in order}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> "IndexManifest":
        try:
            version = data["format_version"]
            if version != FORMAT_VERSION:
                raise IndexFileError(
                    f"{where} has index format {version}; this coversearch reads format {FORMAT_VERSION}: rebuild the index"
                )
            feature, store = data["feature"], data["store"]
            return cls(
                name=str(data["name"]),
                kind=str(data["kind"]),
                metric=str(data["metric"]),
                feature=str(feature["name"]),
                feature_version=int(feature["version"]),
                feature_set_id=int(feature["feature_set_id"]),
                model_fingerprint=feature["model_fingerprint"],
                dim=int(feature["dim"]),
                build_params=dict(data["build_params"]),
                query_params=dict(data["query_params"]),
                given_params=dict(data.get("given_params") or {}),
                vectors=int(data["vectors"]),
                ids_file=str(data["ids_file"]),
                files={name: FileRecord.from_json(rec) for name, rec in data["files"].items()},
                build_seconds=float(data["build_seconds"]),
                size_bytes=int(data["size_bytes"]),
                built_at=str(data["built_at"]),
                store_path=str(store["path"]),
                store_fingerprint=str(store["embedding_fingerprint"]),
                refreshed_by=data.get("refreshed_by"),
                refreshed_at=data.get("refreshed_at"),
                vectors_added=int(data.get("vectors_added") or 0),
                sharding=dict(data["sharding"]) if data.get("sharding") else None,
            )
        except IndexFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IndexFileError(f"{where} is not a valid index manifest (bad or missing field {exc})") from None


def write_manifest(folder: Path, manifest: IndexManifest) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> IndexManifest:
    path = folder / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFileError(f"{folder} is not an index: it has no {MANIFEST_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFileError(f"{path} is unreadable or not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise IndexFileError(f"{path} is not a valid index manifest")
    manifest = IndexManifest.from_dict(data, path)
    manifest.folder = folder
    return manifest


def verify_files(folder: Path, manifest: IndexManifest, required: Iterable[str] = ()) -> None:
    """Every file the manifest lists is there with the recorded size and sha256; the ids file and
    ``required`` (the kind's own file) must be listed: an emptied ``files`` is no way around the check."""
    verify_records(
        folder, manifest.files, f"index {manifest.name!r}", IndexFileError, required=[manifest.ids_file, *required]
    )
