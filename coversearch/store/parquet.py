"""Parquet in and out of the store: export a feature set's vectors, import vectors made elsewhere.

DuckDB reads and writes Parquet itself (``COPY ... TO``, ``read_parquet``), so both directions
are SQL over the store's own connection.  An import is checked completely before anything is
written, and then written in one transaction: a bad file changes nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from coversearch import metrics
from coversearch.errors import CoverSearchError, FeatureError
from coversearch.fsutil import atomic_output
from coversearch.store.db import Store
from coversearch.store.rows import VECTOR_KIND, FeatureSet, utcnow

# Parquet key-value metadata written by export; import reads the metric and fingerprint from it
# when they are not given.
META_FEATURE = "coversearch.feature"
META_VERSION = "coversearch.feature_version"
META_METRIC = "coversearch.metric"
META_FINGERPRINT = "coversearch.model_fingerprint"

IMPORTED_VERSION = 1
IMPORT_METRICS = (metrics.COSINE, metrics.EUCLIDEAN)  # what imported vectors may be compared by
FEATURE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MATCH_COLUMNS = ("sha256", "path")
FLOAT32_MAX = 3.4028234663852886e38  # vectors are stored as FLOAT
_NUMERIC = {"FLOAT", "DOUBLE", "REAL", "DECIMAL", "HUGEINT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT"}


class ParquetImportError(CoverSearchError):
    """A Parquet file that cannot become a feature set (the store is left as it was)."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_known_feature(store: Store, name: str, builtin: tuple[str, ...]) -> None:
    """A feature name must be one coversearch computes or one the store holds (e.g. imported)."""
    held = {fs.name for fs in store.feature_sets()}
    if name not in builtin and name not in held:
        raise FeatureError(f"unknown feature {name!r}; choose from {', '.join(sorted(set(builtin) | held))}")


# -- export -----------------------------------------------------------------------------------------
def export_feature(store: Store, fs: FeatureSet, out: str | os.PathLike, metric: str) -> int:
    """Write album_id, sha256, path, genres and vector of every album with a ``fs`` vector.

    Written to a temporary name and renamed, so ``out`` is either the old file or the whole new
    one; ``out`` must be a regular file or absent (``fsutil.check_output``).  Returns the number of rows.
    """
    out = Path(out)
    meta = {META_FEATURE: fs.name, META_VERSION: str(fs.version), META_METRIC: metric,
            META_FINGERPRINT: fs.model_fingerprint or ""}
    kv = ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in meta.items())
    sql = (
        "SELECT a.id AS album_id, a.sha256, a.source_path AS path, coalesce(g.genres, []::VARCHAR[]) AS genres, "
        f"e.vector FROM {fs.vector_table} e JOIN albums a ON a.id = e.album_id "
        "LEFT JOIN (SELECT album_id, list(genre ORDER BY genre) AS genres FROM album_genres GROUP BY album_id) g "
        "ON g.album_id = a.id ORDER BY a.id"
    )
    with atomic_output(out, option="--out") as tmp:
        try:
            store.con.execute(f"COPY ({sql}) TO {_sql_string(str(tmp))} (FORMAT parquet, KV_METADATA {{{kv}}})")
            (rows,) = store.con.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp)]).fetchone()
        except duckdb.Error as exc:
            raise CoverSearchError(f"cannot write --out {out}: {str(exc).splitlines()[0]}") from None
    return int(rows)


# -- import -----------------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    feature: str
    version: int
    dim: int
    metric: str
    model_fingerprint: str | None
    matched_by: str
    rows: int
    albums: int
    added: int
    unchanged: int
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parquet_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's coversearch key-value metadata ({} when none, or not Parquet)."""
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT key, value FROM parquet_kv_metadata(?)", [str(path)]).fetchall()
    except duckdb.Error:
        return {}
    finally:
        con.close()
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in rows if k.startswith(b"coversearch.")}


def check_feature_name(name: str, builtin: tuple[str, ...]) -> str:
    if not FEATURE_NAME.match(name):
        raise FeatureError(f"feature name {name!r}: use lower-case letters, digits, '.', '_' or '-' (at most 64)")
    if name in builtin:
        raise FeatureError(f"{name!r} is computed by coversearch itself: import these vectors under another --feature name")
    return name


def check_import_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ParquetImportError(f"{path} is a folder; give the Parquet file to import")
    if not path.exists():
        raise ParquetImportError(f"no such file: {path}")
    if not path.is_file():
        raise ParquetImportError(f"{path} is not a regular file; give the Parquet file to import")
    return path


def import_vectors(
    store: Store,
    path: str | os.PathLike,
    name: str,
    *,
    metric: str | None = None,
    model_fingerprint: str | None = None,
    match: str | None = None,
) -> ImportSummary:
    """Make the vectors of a Parquet file the feature set ``name`` (created, or extended when it
    exists as an import with the same dim, metric and fingerprint).

    The file needs a ``vector`` column (a list of numbers, the same length on every row) and a
    ``sha256`` or ``path`` column naming albums the store holds.  ``metric`` and
    ``model_fingerprint`` not given: the file's coversearch metadata, else the existing set's,
    else cosine and none.  Any problem raises before the store is touched; the write is one
    transaction.
    """
    path = check_import_file(path)
    con = store.con
    source = f"read_parquet({_sql_string(str(path))})"
    try:
        columns = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    except duckdb.Error as exc:
        raise ParquetImportError(f"cannot read {path} as Parquet: {str(exc).splitlines()[0]}") from None

    key = _match_column(columns, match, path)
    vector_type = columns.get("vector")
    if vector_type is None:
        raise ParquetImportError(f"{path} has no 'vector' column (columns: {', '.join(columns)})")
    element = re.sub(r"\[\d*\]$", "", vector_type)
    if element == vector_type or element.split("(")[0] not in _NUMERIC:
        raise ParquetImportError(f"{path}: column 'vector' is {vector_type}, not a list of numbers")

    meta = parquet_metadata(path)
    existing = next((fs for fs in store.feature_sets() if fs.name == name), None)
    if metric is None:
        metric = meta.get(META_METRIC) or (existing.params.get("metric") if existing else None) or "cosine"
    if metric not in IMPORT_METRICS:
        raise ParquetImportError(f"unknown metric {metric!r} for {path}; choose from {', '.join(IMPORT_METRICS)}")
    if model_fingerprint is None:
        model_fingerprint = meta.get(META_FINGERPRINT) or (existing.model_fingerprint if existing else None)

    with store.transaction() as con:
        # Temporary tables made here vanish with a rollback; a successful import drops them.  The
        # file's pages are first read here: a damaged one is a DuckDB error like any other.
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE import_rows AS SELECT row_number() OVER () AS row_no, "
                f"CAST({key} AS VARCHAR) AS key, CAST(vector AS DOUBLE[]) AS vector FROM {source}"
            )
            summary = _checked_import(store, con, path, key, name, metric, model_fingerprint)
        except duckdb.Error as exc:
            raise ParquetImportError(f"cannot import {path}: {str(exc).splitlines()[0]}; nothing was imported") from None
        con.execute("DROP TABLE import_rows")
        con.execute("DROP TABLE import_matched")
    return summary


def _match_column(columns: dict[str, str], match: str | None, path: Path) -> str:
    if match is not None:
        if match not in MATCH_COLUMNS:
            raise ParquetImportError(f"--match must be one of {', '.join(MATCH_COLUMNS)}, not {match!r}")
        if match not in columns:
            raise ParquetImportError(f"{path} has no {match!r} column to match albums by")
        return match
    for candidate in MATCH_COLUMNS:
        if candidate in columns:
            return candidate
    raise ParquetImportError(f"{path} has neither a 'sha256' nor a 'path' column to match albums by (columns: {', '.join(columns)})")


def _fail(path: Path, message: str) -> None:
    raise ParquetImportError(f"{path}: {message}; nothing was imported")


def _checked_import(store: Store, con, path: Path, key: str, name: str, metric: str, fingerprint: str | None) -> ImportSummary:
    one = lambda sql, params=None: con.execute(sql, params or []).fetchone()  # noqa: E731
    (rows,) = one("SELECT count(*) FROM import_rows")
    if rows == 0:
        _fail(path, "the file has no rows")
    missing_key, first = one("SELECT count(*), min(row_no) FROM import_rows WHERE key IS NULL OR trim(key) = ''")
    if missing_key:
        _fail(path, f"{missing_key} rows have no {key} (first: row {first})")
    null_vectors, first = one("SELECT count(*), min(row_no) FROM import_rows WHERE vector IS NULL")
    if null_vectors:
        _fail(path, f"{null_vectors} rows have no vector (first: row {first})")
    shortest, longest = one("SELECT min(len(vector)), max(len(vector)) FROM import_rows")
    if shortest != longest:
        (first,) = one("SELECT min(row_no) FROM import_rows WHERE len(vector) <> ?", [longest])
        _fail(path, f"vectors have different lengths ({shortest} to {longest}; first short one: row {first})")
    dim = int(longest)
    if dim < 1:
        _fail(path, "vectors are empty")
    bad, first = one(
        "SELECT count(*), min(row_no) FROM import_rows "
        "WHERE list_count(vector) < len(vector) OR list_bool_or(list_transform(vector, lambda x: NOT isfinite(x)))"
    )
    if bad:
        _fail(path, f"{bad} vectors hold NaN, infinite or missing values (first: row {first})")
    huge, first = one(
        "SELECT count(*), min(row_no) FROM import_rows WHERE list_bool_or(list_transform(vector, lambda x: abs(x) > ?))",
        [FLOAT32_MAX],
    )
    if huge:
        _fail(path, f"{huge} vectors hold values beyond the float32 range (|x| > {FLOAT32_MAX:.4g}; first: row {first})")
    if metric == "cosine":
        # A zero vector has no direction: its cosine distance to everything is undefined (computed as 1,
        # or as 0 between two of them), so it would match anything or nothing.
        zero, first = one("SELECT count(*), min(row_no) FROM import_rows WHERE list_bool_and(list_transform(vector, lambda x: CAST(x AS FLOAT) = 0))")
        if zero:
            _fail(path, f"{zero} vectors are all zeros, which have no direction under the cosine metric (first: row {first}); "
                        "leave those albums out, or import with --metric euclidean")

    # Match rows to albums.
    if key == "sha256":
        con.execute("UPDATE import_rows SET key = lower(trim(key))")
        join = "LEFT JOIN albums a ON a.sha256 = r.key"
        album = "a.id"
    else:
        join = "LEFT JOIN album_files a ON a.path = r.key"
        album = "a.album_id"
    con.execute(f"CREATE OR REPLACE TEMP TABLE import_matched AS SELECT r.row_no, r.key, {album} AS album_id, "
                f"CAST(r.vector AS FLOAT[{dim}]) AS vector FROM import_rows r {join}")
    unknown, first_row = one("SELECT count(*), min(row_no) FROM import_matched WHERE album_id IS NULL")
    if unknown:
        (first_key,) = one("SELECT key FROM import_matched WHERE row_no = ?", [first_row])
        _fail(path, f"{unknown} of {rows} rows name no album in the store (first: row {first_row}, {key} {first_key})")
    clash = one(
        "SELECT album_id, count(DISTINCT vector) FROM import_matched GROUP BY album_id "
        "HAVING count(DISTINCT vector) > 1 ORDER BY album_id LIMIT 1"
    )
    if clash:
        _fail(path, f"album {clash[0]} is given {clash[1]} different vectors")

    fs, created = _feature_set(store, con, path, name, dim, metric, fingerprint)
    changed, first = one(
        f"SELECT count(*), min(m.album_id) FROM (SELECT DISTINCT album_id, vector FROM import_matched) m "
        f"JOIN {fs.table} e ON e.album_id = m.album_id WHERE e.vector IS DISTINCT FROM m.vector"
    )
    if changed:
        _fail(path, f"{changed} albums already have other {name} vectors (first: album {first}); "
                    "import under another --feature name")
    (added,) = one(
        f"SELECT count(*) FROM (SELECT DISTINCT album_id FROM import_matched "
        f"WHERE album_id NOT IN (SELECT album_id FROM {fs.table}))"
    )
    con.execute(
        f"INSERT INTO {fs.table} SELECT DISTINCT album_id, vector FROM import_matched "
        f"WHERE album_id NOT IN (SELECT album_id FROM {fs.table})"
    )
    (albums,) = one("SELECT count(DISTINCT album_id) FROM import_matched")
    return ImportSummary(
        feature=name, version=fs.version, dim=dim, metric=metric, model_fingerprint=fingerprint, matched_by=key,
        rows=int(rows), albums=int(albums), added=int(added), unchanged=int(albums - added), created=created,
    )


def _feature_set(store: Store, con, path: Path, name: str, dim: int, metric: str, fingerprint: str | None):
    """The imported feature set ``name``: created here, or the existing one when it agrees."""
    params = {"imported": True, "metric": metric}
    existing = [fs for fs in store.feature_sets(kind=None) if fs.name == name]
    for fs in existing:
        if not fs.imported:
            _fail(path, f"the store's {fs.label} was computed by coversearch, not imported; choose another --feature name")
        if fs.dim != dim or fs.params.get("metric") != metric or fs.model_fingerprint != fingerprint:
            _fail(
                path,
                f"feature set {name!r} exists with dim {fs.dim}, metric {fs.params.get('metric')} and model "
                f"{fs.model_fingerprint}; this import has dim {dim}, metric {metric} and model {fingerprint}",
            )
        return fs, False
    (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM feature_sets").fetchone()
    con.execute(
        "INSERT INTO feature_sets (id, name, version, dim, params, model_fingerprint, created_at, kind) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [next_id, name, IMPORTED_VERSION, dim, json.dumps(params), fingerprint, utcnow(), VECTOR_KIND],
    )
    fs = FeatureSet(next_id, name, IMPORTED_VERSION, dim, params, fingerprint, VECTOR_KIND)
    con.execute(f"CREATE TABLE {fs.table} (album_id BIGINT PRIMARY KEY, vector FLOAT[{dim}] NOT NULL)")
    return fs, True



# -- ingest shards ----------------------------------------------------------------------------------
def read_rows(store: Store, path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of a (small) Parquet file as a dict, in file order: for loading ingest shards."""
    try:
        cursor = store.con.execute(f"SELECT * FROM read_parquet({_sql_string(str(path))})")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    except duckdb.Error as exc:
        raise CoverSearchError(f"cannot read shard {path}: {str(exc).splitlines()[0]}") from None
