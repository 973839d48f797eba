"""Opening the store (migrating it on the way) and reading from it.

Bulk data goes through DuckDB's own Python connection: it passes numpy arrays straight into
``unnest`` and returns them with ``fetchnumpy``, which is far faster than row-wise SQLAlchemy.
SQLAlchemy (through duckdb-engine) is used for what it is good at here: running Alembic.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import numpy as np

from coversearch.errors import FeatureError, StoreError
from coversearch.store import migrate


@dataclass(frozen=True)
class FeatureSet:
    id: int
    name: str
    version: int
    dim: int
    params: dict[str, Any]
    model_fingerprint: str | None

    @property
    def table(self) -> str:
        return f"embeddings_{self.id}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise StoreError(f"store {path} is in use by another process (DuckDB allows one writer at a time)") from None
        raise StoreError(f"cannot open store {path}: {text.splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from None


def _revision(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None


class Store:
    """One DuckDB file holding albums, genres, feature sets and embeddings."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.con = con
        self.read_only = read_only

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> "Store":
        """Open (creating if needed, unless read-only) and bring the schema to the latest revision."""
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"store path {path} is a directory")
        if read_only and not path.exists():
            raise StoreError(f"no store at {path}; create one with `coversearch ingest`")
        if not path.exists() and not path.parent.is_dir():
            raise StoreError(f"cannot create store {path}: folder {path.parent} does not exist")
        head = migrate.head_revision()
        if read_only:
            con = _connect(path, read_only=True)
            if _revision(con) == head:
                return cls(path, con, read_only=True)
            con.close()  # an older schema: upgrade with a writer, then reopen read-only
        cls._upgrade(path)
        con = _connect(path, read_only=read_only)
        return cls(path, con, read_only=read_only)

    @staticmethod
    def _upgrade(path: Path) -> None:
        probe = _connect(path, read_only=False)  # fails clearly on a lock or a non-DuckDB file
        probe.close()
        try:
            migrate.upgrade(path)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"cannot upgrade store {path}: {message}") from exc

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_revision(self) -> str | None:
        return _revision(self.con)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.begin()
        try:
            yield self.con
        except BaseException:
            self.con.rollback()
            raise
        else:
            self.con.commit()

    # -- feature sets --------------------------------------------------------------------------
    def feature_sets(self) -> list[FeatureSet]:
        rows = self.con.execute(
            "SELECT id, name, version, dim, params, model_fingerprint FROM feature_sets ORDER BY name, version"
        ).fetchall()
        return [FeatureSet(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def feature_set(self, name: str, version: int | None = None) -> FeatureSet:
        """The named set (its latest version unless one is given); a clear error if absent."""
        candidates = [fs for fs in self.feature_sets() if fs.name == name and (version is None or fs.version == version)]
        if not candidates:
            known = ", ".join(sorted({fs.name for fs in self.feature_sets()})) or "none"
            raise FeatureError(f"the store has no {name!r} embeddings (it has: {known}); run `coversearch ingest --features {name}`")
        return max(candidates, key=lambda fs: fs.version)

    def ensure_feature_set(self, extractor) -> FeatureSet:
        """Register the extractor's feature set (and its vector table), or check it matches."""
        params = extractor.params()
        fingerprint = extractor.model_fingerprint()
        for fs in self.feature_sets():
            if fs.name == extractor.name and fs.version == extractor.version:
                if fs.model_fingerprint != fingerprint or fs.params != params or fs.dim != extractor.dim:
                    raise FeatureError(
                        f"the store's {fs.label} embeddings were made with model {fs.model_fingerprint} and "
                        f"params {fs.params}; this extractor has {fingerprint} and {params}: use the same "
                        "weights, or another store"
                    )
                return fs
        with self.transaction() as con:
            (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM feature_sets").fetchone()
            con.execute(
                "INSERT INTO feature_sets VALUES (?, ?, ?, ?, ?, ?, ?)",
                [next_id, extractor.name, extractor.version, extractor.dim, json.dumps(params), fingerprint, utcnow()],
            )
            fs = FeatureSet(next_id, extractor.name, extractor.version, extractor.dim, params, fingerprint)
            con.execute(f"CREATE TABLE {fs.table} (album_id BIGINT PRIMARY KEY, vector FLOAT[{fs.dim}] NOT NULL)")
        return fs

    # -- reads ---------------------------------------------------------------------------------
    def album_ids_by_sha(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT sha256, id FROM albums").fetchall())

    def album_id_for_sha256(self, sha256: str) -> int | None:
        row = self.con.execute("SELECT id FROM albums WHERE sha256 = ?", [sha256]).fetchone()
        return int(row[0]) if row else None

    def embedding_count(self, fs: FeatureSet) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {fs.table}").fetchone()[0])

    def embedded_album_ids(self, fs: FeatureSet) -> set[int]:
        return {r[0] for r in self.con.execute(f"SELECT album_id FROM {fs.table}").fetchall()}

    def known_files(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT path, album_id FROM album_files").fetchall())

    def load_embeddings(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(album ids int64 (n,), vectors float32 (n, dim)), ordered by album id."""
        sql = f"SELECT album_id, vector FROM {fs.table}"
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        cols = self.con.execute(sql + " ORDER BY album_id", params).fetchnumpy()
        ids = np.asarray(cols["album_id"], dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, fs.dim), dtype=np.float32)
        return ids, np.stack(cols["vector"]).astype(np.float32, copy=False)

    def embedding_fingerprint(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> str:
        """Changes whenever the set's vectors change: albums added or removed, or a new model.

        With ``album_ids``, the same fingerprint over those albums only (an index built from them
        can then tell whether its vectors are still exactly the store's).
        """
        sql = (
            "SELECT count(*), coalesce(bit_xor(hash(album_id)), 0), coalesce(bit_xor(hash(album_id, vector)), 0) "
            f"FROM {fs.table}"
        )
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        count, id_hash, vec_hash = self.con.execute(sql, params).fetchone()
        text = f"{fs.name}:{fs.version}:{fs.model_fingerprint}:{count}:{id_hash}:{vec_hash}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def genres_by_album(self, album_ids: Sequence[int] | None = None) -> dict[int, list[str]]:
        sql = "SELECT album_id, list(genre ORDER BY genre) FROM album_genres"
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        return {int(a): list(g) for a, g in self.con.execute(sql + " GROUP BY album_id", params).fetchall()}

    def albums(self, album_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Album rows with their genres, keyed by id."""
        rows = self.con.execute(
            "SELECT a.id, a.sha256, a.source_path, a.source_url, a.artist, a.title, a.width, a.height, a.format, "
            "list(g.genre ORDER BY g.genre) FILTER (WHERE g.genre IS NOT NULL) "
            "FROM albums a LEFT JOIN album_genres g ON g.album_id = a.id "
            "WHERE a.id IN (SELECT unnest($1)) GROUP BY ALL",
            [np.asarray(album_ids, dtype=np.int64)],
        ).fetchall()
        keys = ("id", "sha256", "path", "url", "artist", "title", "width", "height", "format", "genres")
        return {int(r[0]): dict(zip(keys, r)) for r in rows}

    def stats(self) -> dict[str, Any]:
        one = lambda sql: self.con.execute(sql).fetchone()[0]  # noqa: E731
        genres = dict(self.con.execute("SELECT genre, count(*) FROM album_genres GROUP BY genre ORDER BY genre").fetchall())
        feature_sets = []
        for fs in self.feature_sets():
            feature_sets.append(
                {
                    "name": fs.name,
                    "version": fs.version,
                    "dim": fs.dim,
                    "embeddings": one(f"SELECT count(*) FROM {fs.table}"),
                    "params": fs.params,
                    "model_fingerprint": fs.model_fingerprint,
                }
            )
        errors = dict(self.con.execute("SELECT reason, count(*) FROM ingest_errors GROUP BY reason ORDER BY reason").fetchall())
        return {
            "store": str(self.path),
            "schema_revision": self.schema_revision(),
            "albums": one("SELECT count(*) FROM albums"),
            "files": one("SELECT count(*) FROM album_files"),
            "albums_with_several_genres": one(
                "SELECT count(*) FROM (SELECT album_id FROM album_genres GROUP BY album_id HAVING count(*) > 1)"
            ),
            "albums_per_genre": genres,
            "feature_sets": feature_sets,
            "errors": sum(errors.values()),
            "errors_by_reason": errors,
        }
