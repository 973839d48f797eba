"""Opening the store (migrating it on the way) and reading from it.

Bulk data goes through DuckDB's own Python connection: it passes numpy arrays straight into
``unnest`` and returns them with ``fetchnumpy``, which is far faster than row-wise SQLAlchemy.
SQLAlchemy (through duckdb-engine) is used for what it is good at here: running Alembic.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from coversearch.config import LOCK_TIMEOUT_ENV  # defined in config so the CLI can name it without loading DuckDB
from coversearch.errors import StoreError
from coversearch.store.dedupe import DedupeTables
from coversearch.store import migrate
from coversearch.store.albums import AlbumReads
from coversearch.store.embeddings import EmbeddingReads
from coversearch.store.splits import SplitsAndLayouts

# Readers wait this long for a writer (an ingest, a remove) to let go of the file; writers do not wait.
DEFAULT_READ_LOCK_TIMEOUT = 30.0


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


class Store(AlbumReads, EmbeddingReads, SplitsAndLayouts, DedupeTables):
    """One DuckDB file holding albums, genres, feature sets and embeddings: the one facade.

    This module opens it (migrating, waiting for locks) and runs transactions; what it holds is
    read and written by concern in ``albums.py`` (albums, files, genres), ``embeddings.py``
    (feature sets, vectors, exact search), ``splits.py`` (splits, map layouts), ``dedupe.py`` (near-duplicate groups), ``writer.py``
    (an ingest batch), ``curate.py`` (removal, relabelling) and ``parquet.py`` (import, export).
    """

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

    @property
    def thumbs_dir(self) -> Path:
        """Where cached thumbnails of this store's covers go (beside the file)."""
        return Path(str(self.path) + ".thumbs")

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
