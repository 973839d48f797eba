"""Opening the store (migrating it on the way) and reading from it.

Bulk data goes through DuckDB's own Python connection: it passes numpy arrays straight into
``unnest`` and returns them with ``fetchnumpy``, which is far faster than row-wise SQLAlchemy.
SQLAlchemy (through duckdb-engine) is used for what it is good at here: running Alembic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import numpy as np

from coversearch.errors import FeatureError, StoreError
from coversearch.store import migrate

LOCK_TIMEOUT_ENV = "COVERSEARCH_LOCK_TIMEOUT"
# Readers wait this long for a writer (an ingest, a remove) to let go of the file; writers do not wait.
DEFAULT_READ_LOCK_TIMEOUT = 30.0


# SQL for each metric's distance between the column ``vector`` and the query ``q`` (``Store.nearest``).
SQL_DISTANCE = {
    "cosine": "array_cosine_distance(vector, {q})",
    "euclidean": "array_distance(vector, {q})",
    "hamming": "round(pow(array_distance(vector, {q}), 2))",  # L2^2 of 0/1 vectors counts differing bits
}


TEXT_KIND = "text"


class StoreBusyError(StoreError):
    """Another process holds the store's write lock."""


_process_lock_timeout: float | None = None  # the CLI's global --lock-timeout


def set_process_lock_timeout(seconds: float | None) -> None:
    """The wait every ``Store.open`` of this process uses when it is given none (None: the defaults)."""
    global _process_lock_timeout
    _process_lock_timeout = seconds


def lock_timeout_for(read_only: bool, lock_timeout: float | None) -> float:
    """Seconds to wait for the lock: as given, else --lock-timeout, else env COVERSEARCH_LOCK_TIMEOUT,
    else 30 s to read and 0 to write."""
    if lock_timeout is None:
        lock_timeout = _process_lock_timeout
    if lock_timeout is not None:
        return max(0.0, float(lock_timeout))
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            raise StoreError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds, not {value!r}") from None
    return DEFAULT_READ_LOCK_TIMEOUT if read_only else 0.0


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "already attached" in text or "different configuration" in text


def _waiting_for_lock(path: Path, timeout: float, attempt):
    """Run ``attempt()`` until it gets past another process's lock, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            return attempt()
        except StoreBusyError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f" (waited {timeout:g} s, --lock-timeout)" if timeout else ""
                raise StoreBusyError(f"{exc}{waited}") from None
            time.sleep(min(pause, left))
            pause = min(1.0, pause * 2)


@dataclass(frozen=True)
class FeatureSet:
    id: int
    name: str
    version: int
    dim: int
    params: dict[str, Any]
    model_fingerprint: str | None
    kind: str = "vector"  # "vector": rows in embeddings_<id>; "text": the words read per cover, in text_<id>

    @property
    def table(self) -> str:
        return f"text_{self.id}" if self.kind == TEXT_KIND else f"embeddings_{self.id}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _vector_table(fs: FeatureSet) -> str:
    """The set's vector table; a clear error for a text set, which has none."""
    if fs.kind == TEXT_KIND:
        raise FeatureError(f"{fs.label} is the words read on each cover, not vectors: search it with "
                           "`coversearch search`, not by similarity")
    return fs.table


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _lock_holder(message: str) -> tuple[int | None, str]:
    """(PID, command line) of the process DuckDB names as holding the lock, where it says."""
    match = re.search(r"\(PID (\d+)\)", message)
    if match is None:
        return None, ""
    pid = int(match.group(1))
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid, ""
    return pid, " ".join(a.decode(errors="replace") for a in argv if a)


def _busy_message(path: Path, message: str, read_only: bool) -> str:
    """Who holds the store, and what to do, in one line."""
    pid, cmdline = _lock_holder(message)
    if "coversearch" in cmdline and "ingest" in cmdline.split():
        holder = f"an ingest (PID {pid}) is writing store {path}"
    else:
        # DuckDB does not say whether the holder reads or writes: name it as far as we can.
        shown = f" (PID {pid}{': ' + cmdline[:80] if cmdline else ''})" if pid else ""
        holder = f"store {path} is in use by another process{shown}"
    if read_only:
        return f"{holder}; DuckDB lets no one read a store while another process writes it: retry when it finishes"
    return f"{holder}; DuckDB allows one writing process at a time, and none while others read: retry when it is done"


def _connect(path: Path, read_only: bool, lock_timeout: float = 0.0) -> duckdb.DuckDBPyConnection:
    return _waiting_for_lock(path, lock_timeout, lambda: _connect_once(path, read_only))


def _connect_once(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise StoreBusyError(_busy_message(path, text, read_only)) from None
        raise StoreError(f"cannot open store {path}: {text.splitlines()[0]}") from None
    except duckdb.Error as exc:
        if _is_lock_error(exc):
            raise StoreBusyError(f"store {path} is in use (DuckDB allows one writer at a time)") from None
        raise StoreError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from None


def _revision(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]


def _refuse_foreign(path: Path, con: duckdb.DuckDBPyConnection) -> str | None:
    """The connection's schema revision (None: an empty DuckDB file), or a refusal, before any write,
    of a database that is not a coversearch store."""
    revision = _revision(con)
    if revision is None:
        tables = _tables(con)
        if tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(
                f"{path} is a DuckDB database but not a coversearch store (it holds tables {shown}); "
                "it was left untouched: give another --db"
            )
    elif revision not in migrate.known_revisions():
        raise StoreError(f"store {path} has schema revision {revision}, unknown to this coversearch (newer?); it was left untouched")
    return revision


class Store:
    """One DuckDB file holding albums, genres, feature sets and embeddings."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.con = con
        self.read_only = read_only

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | Path, *, read_only: bool = False, create: bool = True, lock_timeout: float | None = None
    ) -> "Store":
        """Open the store at ``path`` at the latest schema revision.

        Only a writer (``read_only=False``) changes the file: with ``create`` it makes a new store
        (the commands that may: ingest, db upgrade), and it brings an older schema up to date.  A
        reader refuses a missing store or one at an older revision and never writes.  A file that
        is not a coversearch store is refused, whatever the mode, and left byte-identical.  While
        another process writes, wait up to ``lock_timeout`` seconds for it (see ``lock_timeout_for``).
        """
        path = Path(path)
        wait = lock_timeout_for(read_only, lock_timeout)
        if path.is_dir():
            raise StoreError(f"store path {path} is a directory")
        if not path.exists():
            if read_only or not create:
                raise StoreError(f"no store at {path}; create one with `coversearch ingest`")
            if not path.parent.is_dir():
                raise StoreError(f"cannot create store {path}: folder {path.parent} does not exist")
        head = migrate.head_revision()
        existed = path.exists() and path.stat().st_size > 0
        con = _connect(path, read_only=read_only, lock_timeout=wait) if existed else None
        try:
            revision = _refuse_foreign(path, con) if con is not None else None
            if read_only and revision != head:
                state = "an empty DuckDB file, not yet a store" if revision is None else f"at schema revision {revision}"
                raise StoreError(
                    f"store {path} is {state}; this coversearch needs {head}: run `coversearch db upgrade` "
                    "(read-only commands never change a store)"
                )
            if revision is None and not create:
                raise StoreError(f"no store at {path} (an empty DuckDB file); create one with `coversearch ingest`")
        except BaseException:
            if con is not None:
                con.close()
            raise
        if revision == head:
            return cls(path, con, read_only=read_only)
        if con is not None:
            con.close()
        cls._upgrade(path, wait)
        return cls(path, _connect(path, read_only=False, lock_timeout=wait), read_only=False)

    @classmethod
    def snapshot(cls, path: str | Path, *, lock_timeout: float | None = None) -> "Store":
        """An in-memory copy of the whole store, read like the file, holding no lock on it.

        The copy is consistent (one read-only attach); the file is free again as soon as it is made,
        so writers (ingest, remove, label) can run while the copy serves reads.
        """
        path = Path(path)
        wait = lock_timeout_for(True, lock_timeout)
        cls.open(path, read_only=True, lock_timeout=wait).close()  # missing, foreign or old-schema files fail here
        con = duckdb.connect(":memory:")
        literal = "'" + str(path).replace("'", "''") + "'"

        def attach_and_copy() -> None:
            try:
                con.execute(f"ATTACH {literal} AS snapshot_source (READ_ONLY)")
            except duckdb.Error as exc:
                if _is_lock_error(exc):
                    raise StoreBusyError(str(exc)) from None
                raise StoreError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from None
            try:
                con.execute("COPY FROM DATABASE snapshot_source TO memory")
            finally:
                con.execute("DETACH snapshot_source")

        try:
            _waiting_for_lock(path, wait, attach_and_copy)
        except BaseException:
            con.close()
            raise
        return cls(path, con, read_only=True)

    @staticmethod
    def _upgrade(path: Path, lock_timeout: float = 0.0) -> None:
        probe = _connect(path, read_only=False, lock_timeout=lock_timeout)  # fails clearly on a lock or a non-DuckDB file
        probe.close()
        try:
            migrate.upgrade(path)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"cannot upgrade store {path}: {message}") from exc

    def cursor(self) -> "Store":
        """The same database through a cursor of its own (another thread need not wait for this one's
        queries); close it when done."""
        return Store(self.path, self.con.cursor(), read_only=self.read_only)

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
            "SELECT id, name, version, dim, params, model_fingerprint, kind FROM feature_sets ORDER BY name, version"
        ).fetchall()
        return [FeatureSet(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6] or "vector") for r in rows]

    def vector_feature_sets(self) -> list[FeatureSet]:
        """The sets holding vectors (what indexes, similar, train and export read)."""
        return [fs for fs in self.feature_sets() if fs.kind != TEXT_KIND]

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
        kind = getattr(extractor, "kind", "vector")
        for fs in self.feature_sets():
            if fs.name == extractor.name and fs.version == extractor.version:
                if fs.model_fingerprint != fingerprint or fs.params != params or fs.dim != extractor.dim or fs.kind != kind:
                    raise FeatureError(
                        f"the store's {fs.label} embeddings were made with model {fs.model_fingerprint} and "
                        f"params {fs.params}; this extractor has {fingerprint} and {params}: use the same "
                        "weights, or another store"
                    )
                return fs
        with self.transaction() as con:
            (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM feature_sets").fetchone()
            con.execute(
                "INSERT INTO feature_sets (id, name, version, dim, params, model_fingerprint, created_at, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [next_id, extractor.name, extractor.version, extractor.dim, json.dumps(params), fingerprint, utcnow(), kind],
            )
            fs = FeatureSet(next_id, extractor.name, extractor.version, extractor.dim, params, fingerprint, kind)
            if kind == TEXT_KIND:
                # lines: the recognised lines as JSON; plain / compact: their searchable forms (features/text.py).
                con.execute(f"CREATE TABLE {fs.table} (album_id BIGINT PRIMARY KEY, lines VARCHAR NOT NULL, "
                            "plain VARCHAR NOT NULL, compact VARCHAR NOT NULL)")
            else:
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

    def known_file_sizes(self) -> dict[str, tuple[int, int | None]]:
        """path -> (album id, size in bytes when it was ingested; None if not recorded)."""
        return {p: (a, s) for p, a, s in self.con.execute("SELECT path, album_id, size_bytes FROM album_files").fetchall()}

    def load_embeddings(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(album ids int64 (n,), vectors float32 (n, dim)), ordered by album id."""
        sql = f"SELECT album_id, vector FROM {_vector_table(fs)}"
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        cols = self.con.execute(sql + " ORDER BY album_id", params).fetchnumpy()
        ids = np.asarray(cols["album_id"], dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, fs.dim), dtype=np.float32)
        return ids, np.stack(cols["vector"]).astype(np.float32, copy=False)

    def embedding_album_ids(self, fs: FeatureSet) -> np.ndarray:
        """The album ids with a vector in the set, ascending (int64)."""
        cols = self.con.execute(f"SELECT album_id FROM {fs.table} ORDER BY album_id").fetchnumpy()
        return np.asarray(cols["album_id"], dtype=np.int64)

    def iter_embeddings(
        self, fs: FeatureSet, first_id: int, last_id: int, chunk_rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(album ids, vectors) chunks of at most ``chunk_rows``, for album ids in [first_id, last_id]
        ascending: one shard of a sharded index build, read without holding it all in memory."""
        after = int(first_id) - 1
        while True:
            cols = self.con.execute(
                f"SELECT album_id, vector FROM {_vector_table(fs)} WHERE album_id > $1 AND album_id <= $2 "
                "ORDER BY album_id LIMIT $3",
                [after, int(last_id), int(chunk_rows)],
            ).fetchnumpy()
            ids = np.asarray(cols["album_id"], dtype=np.int64)
            if len(ids) == 0:
                return
            yield ids, np.stack(cols["vector"]).astype(np.float32, copy=False)
            after = int(ids[-1])

    def sample_embeddings(self, fs: FeatureSet, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded reservoir sample of ``n`` (album ids, vectors) (all of them when the set is smaller),
        ordered by album id: what an IVF index trains its centroids and codebooks on."""
        cols = self.con.execute(
            f"SELECT album_id, vector FROM (SELECT album_id, vector FROM {_vector_table(fs)} "
            f"USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE ({int(seed)})) ORDER BY album_id"
        ).fetchnumpy()
        ids = np.asarray(cols["album_id"], dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, fs.dim), dtype=np.float32)
        return ids, np.stack(cols["vector"]).astype(np.float32, copy=False)

    def vectors_for(self, fs: FeatureSet, album_ids: Sequence[int]) -> np.ndarray:
        """The vectors of ``album_ids`` (float32, in the order given); every id must have one."""
        wanted = np.asarray(album_ids, dtype=np.int64)
        ids, vectors = self.load_embeddings(fs, np.unique(wanted))
        at = np.searchsorted(ids, wanted)
        if len(ids) == 0 or (at >= len(ids)).any() or (ids[np.clip(at, 0, len(ids) - 1)] != wanted).any():
            raise FeatureError(f"the store's {fs.label} vectors lack some of the albums asked for")
        return vectors[at]

    def embedding_fingerprint(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> str:
        """Changes whenever the set's vectors change: albums added or removed, or a new model.

        With ``album_ids``, the same fingerprint over those albums only (an index built from them
        can then tell whether its vectors are still exactly the store's).
        """
        sql = (
            "SELECT count(*), coalesce(bit_xor(hash(album_id)), 0), coalesce(bit_xor(hash(album_id, vector)), 0) "
            f"FROM {_vector_table(fs)}"
        )
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        count, id_hash, vec_hash = self.con.execute(sql, params).fetchone()
        text = f"{fs.name}:{fs.version}:{fs.model_fingerprint}:{count}:{id_hash}:{vec_hash}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def text_rows(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> list[tuple[int, str, str, str]]:
        """(album id, lines JSON, plain, compact) of a text feature set, by album id."""
        if fs.kind != TEXT_KIND:
            raise FeatureError(f"{fs.label} holds vectors, not text")
        sql = f"SELECT album_id, lines, plain, compact FROM {fs.table}"
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        return [(int(a), l, p, c) for a, l, p, c in self.con.execute(sql + " ORDER BY album_id", params).fetchall()]

    def album_metadata(self) -> list[tuple[int, str | None, str | None, str]]:
        """(album id, artist, title, source path) of every album with an artist or a title, by album id."""
        rows = self.con.execute(
            "SELECT id, artist, title, source_path FROM albums WHERE artist IS NOT NULL OR title IS NOT NULL ORDER BY id"
        ).fetchall()
        return [(int(a), artist, title, path) for a, artist, title, path in rows]

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

    def album_paths(self, album_id: int) -> list[str]:
        """Every file path recorded for the album, sorted."""
        return [p for (p,) in self.con.execute("SELECT path FROM album_files WHERE album_id = ? ORDER BY path", [album_id]).fetchall()]

    def album_count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM albums").fetchone()[0])

    def genres(self) -> list[str]:
        """Every genre some album carries, sorted."""
        return [g for (g,) in self.con.execute("SELECT DISTINCT genre FROM album_genres ORDER BY genre").fetchall()]

    def album_ids_in_genre(self, genre: str) -> np.ndarray:
        """The albums carrying ``genre``, ascending (int64; empty for a genre no album has)."""
        cols = self.con.execute(
            "SELECT DISTINCT album_id FROM album_genres WHERE genre = ? ORDER BY album_id", [genre]
        ).fetchnumpy()
        return np.asarray(cols["album_id"], dtype=np.int64)

    def album_ids_of_known_genre(self, genre: str) -> np.ndarray:
        """``album_ids_in_genre``, refusing a genre no album carries with the genres there are."""
        ids = self.album_ids_in_genre(genre)
        if len(ids) == 0:
            raise StoreError(f"no album of genre {genre!r} in the store (genres: {', '.join(self.genres()) or 'none'})")
        return ids

    def labelled_albums(self) -> list[tuple[int, str, tuple[str, ...]]]:
        """(album id, sha256, genres) of every album with at least one genre."""
        rows = self.con.execute(
            "SELECT a.id, a.sha256, list(g.genre) FROM albums a JOIN album_genres g ON g.album_id = a.id GROUP BY a.id, a.sha256"
        ).fetchall()
        return [(r[0], r[1], tuple(r[2])) for r in rows]

    # -- splits ----------------------------------------------------------------------------------
    def split_exists(self, name: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM splits WHERE name = ?", [name]).fetchone()[0])

    def save_split(self, name: str, seed: int, fractions: Sequence[float], sides: dict[int, str], created_at) -> None:
        """Store split ``name`` (replacing one of that name) in one transaction."""
        with self.transaction() as con:
            con.execute("DELETE FROM split_assignments WHERE split = ?", [name])
            con.execute("DELETE FROM splits WHERE name = ?", [name])
            con.execute("INSERT INTO splits VALUES (?, ?, ?, ?, ?, ?)", [name, seed, *fractions, created_at])
            if sides:
                con.execute(
                    "INSERT INTO split_assignments SELECT $1, unnest($2), unnest($3)",
                    [name, np.array(list(sides), dtype=np.int64), list(sides.values())],
                )

    def read_split(self, name: str) -> tuple[int, tuple[float, float, float], dict[int, str], list[tuple[int, str]]] | None:
        """(seed, fractions, album id -> side, (album id, sha256) of labelled albums it does not
        assign yet), or None when there is no split ``name``."""
        row = self.con.execute(
            "SELECT seed, train_fraction, val_fraction, test_fraction FROM splits WHERE name = ?", [name]
        ).fetchone()
        if row is None:
            return None
        sides = {int(a): s for a, s in self.con.execute("SELECT album_id, side FROM split_assignments WHERE split = ?", [name]).fetchall()}
        newer = self.con.execute(
            "SELECT a.id, a.sha256 FROM albums a WHERE a.id IN (SELECT album_id FROM album_genres) "
            "AND a.id NOT IN (SELECT album_id FROM split_assignments WHERE split = ?)",
            [name],
        ).fetchall()
        return int(row[0]), (row[1], row[2], row[3]), sides, [(int(a), sha) for a, sha in newer]

    # -- exact search inside the store (the duckdb index kind) ------------------------------------
    def nearest(self, fs: FeatureSet, metric: str, queries: np.ndarray, k: int,
                allowed_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest albums of each query by one SQL scan of the set's vectors: (ids (nq, k)
        padded with -1, distances (nq, k) padded with inf), ties broken by album id."""
        if metric not in SQL_DISTANCE:
            raise ValueError(f"no SQL distance for metric {metric!r}")
        sql = (
            f"SELECT album_id, {SQL_DISTANCE[metric].format(q=f'$query::FLOAT[{fs.dim}]')} AS distance "
            f"FROM {_vector_table(fs)}"
        )
        params: dict = {}
        if allowed_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($allowed))"
            params["allowed"] = np.asarray(allowed_ids, dtype=np.int64)
        sql += f" ORDER BY distance, album_id LIMIT {int(k)}"
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        for i, vector in enumerate(queries):
            params["query"] = vector.tolist()
            found = self.con.execute(sql, params).fetchnumpy()
            n = len(found["album_id"])
            ids[i, :n] = found["album_id"]
            distances[i, :n] = found["distance"]
        return ids, distances

    def albums_of_genre(self, genre: str, offset: int, limit: int) -> tuple[int, list[int]]:
        """(how many albums carry ``genre``, the ids of ``limit`` of them from ``offset``, by album id)."""
        (total,) = self.con.execute("SELECT count(DISTINCT album_id) FROM album_genres WHERE genre = ?", [genre]).fetchone()
        rows = self.con.execute(
            "SELECT DISTINCT album_id FROM album_genres WHERE genre = ? ORDER BY album_id LIMIT ? OFFSET ?",
            [genre, int(limit), int(offset)],
        ).fetchall()
        return int(total), [int(r[0]) for r in rows]

    def first_genres(self, album_ids: np.ndarray) -> dict[int, str]:
        """Each album's first genre (alphabetically): the colour of its point on the map."""
        rows = self.con.execute(
            "SELECT album_id, min(genre) FROM album_genres WHERE album_id IN (SELECT unnest($1)) GROUP BY album_id",
            [np.asarray(album_ids, dtype=np.int64)],
        ).fetchall()
        return {int(a): g for a, g in rows}

    # -- the catalogue map's cached layouts (the page's genre browse and map) ------------------------
    def map_layout(self, feature_set_id: int, method: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray] | None:
        """(its record, album ids int64 (n,), coordinates float32 (n, 2)) of the cached layout, or None."""
        row = self.con.execute(
            "SELECT embedding_fingerprint, albums, seconds, computed_at FROM map_layouts WHERE feature_set_id = ? AND method = ?",
            [feature_set_id, method],
        ).fetchone()
        if row is None:
            return None
        cols = self.con.execute(
            "SELECT album_id, x, y FROM map_coords WHERE feature_set_id = ? AND method = ? ORDER BY album_id",
            [feature_set_id, method],
        ).fetchnumpy()
        record = {"embedding_fingerprint": row[0], "albums": int(row[1]), "seconds": float(row[2]), "computed_at": row[3]}
        xy = np.stack([np.asarray(cols["x"], dtype=np.float32), np.asarray(cols["y"], dtype=np.float32)], axis=1)
        return record, np.asarray(cols["album_id"], dtype=np.int64), xy

    def save_map_layout(
        self, feature_set_id: int, method: str, fingerprint: str, album_ids: np.ndarray, xy: np.ndarray, seconds: float
    ) -> None:
        """Replace the cached layout of (feature set, method) in one transaction."""
        with self.transaction() as con:
            con.execute("DELETE FROM map_coords WHERE feature_set_id = ? AND method = ?", [feature_set_id, method])
            con.execute("DELETE FROM map_layouts WHERE feature_set_id = ? AND method = ?", [feature_set_id, method])
            con.execute(
                "INSERT INTO map_coords SELECT $1, $2, unnest($3), unnest($4), unnest($5)",
                [feature_set_id, method, np.asarray(album_ids, dtype=np.int64),
                 np.ascontiguousarray(xy[:, 0], dtype=np.float32), np.ascontiguousarray(xy[:, 1], dtype=np.float32)],
            )
            con.execute("INSERT INTO map_layouts VALUES (?, ?, ?, ?, ?, ?)",
                        [feature_set_id, method, fingerprint, len(album_ids), float(seconds), utcnow()])

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
