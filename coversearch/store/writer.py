"""The ingest's writer stage: one batch of mapped items becomes one transaction.

Everything a batch adds (albums, files, genre links, embeddings, errors) commits together or not
at all, so an ingest killed at any moment leaves the store as of its last whole batch, and a
re-run picks up from there.  Inserts skip what already exists, which makes re-runs idempotent.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from coversearch.store.db import Store
from coversearch.store.rows import RECORD_KIND, TEXT_KIND, FeatureSet, utcnow


# What a batch hands over, by shape: the store imports nothing from the layers that fill it.
class Source(Protocol):
    path: Any  # str or os.PathLike
    genres: tuple[str, ...]
    url: str | None
    artist: str | None
    title: str | None


class Failure(Protocol):
    reason: str
    detail: str


class FileRecord(Protocol):
    """One listed file: its bytes' identity, what decoding found, the vectors computed for it."""

    source: Source
    sha256: str | None
    size: int | None
    error: Failure | None
    image_info: tuple[int, int, str] | None  # width, height, format; set when the bytes were decoded
    vectors: Mapping[str, np.ndarray]

    @property
    def ok(self) -> bool: ...


class Problem(Protocol):
    """A listing entry that names no usable file."""

    where: str
    reason: str
    detail: str


@dataclass
class WriteCounts:
    albums: int = 0
    files: int = 0
    genre_links: int = 0
    embeddings: Counter = field(default_factory=Counter)
    unchanged: int = 0
    errors: Counter = field(default_factory=Counter)

    def add(self, other: "WriteCounts") -> None:
        self.albums += other.albums
        self.files += other.files
        self.genre_links += other.genre_links
        self.embeddings.update(other.embeddings)
        self.unchanged += other.unchanged
        self.errors.update(other.errors)


def text_forms(record_json: str) -> tuple[str, str]:
    """(plain, compact): the searchable forms a text record (features/text.py) carries."""
    record = json.loads(record_json)
    return record["plain"], record["compact"]


def _ids(values) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64)


class StoreWriter:
    def __init__(self, store: Store, feature_sets: dict[str, FeatureSet]):
        self.store = store
        self.feature_sets = feature_sets

    def write_problems(self, problems: Sequence[Problem]) -> WriteCounts:
        counts = WriteCounts()
        if not problems:
            return counts
        with self.store.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO ingest_errors SELECT unnest($1), unnest($2), unnest($3), $4",
                [[p.where for p in problems], [p.reason for p in problems], [p.detail for p in problems], utcnow()],
            )
        counts.errors.update(p.reason for p in problems)
        return counts

    def write(self, batch: Sequence[FileRecord]) -> WriteCounts:
        counts = WriteCounts()
        now = utcnow()
        good = [item for item in batch if item.ok]
        bad = [item for item in batch if not item.ok]
        changed: set[int] = set()  # positions in `good` of items that added anything
        with self.store.transaction() as con:
            shas = sorted({item.sha256 for item in good})
            album_of = dict(
                con.execute("SELECT sha256, id FROM albums WHERE sha256 IN (SELECT unnest($1))", [shas]).fetchall()
            ) if shas else {}

            # New albums: the first copy of new bytes (the mapper decoded it) defines the row.
            (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM albums").fetchone()
            new_rows = []
            for pos, item in enumerate(good):
                if item.sha256 in album_of:
                    continue
                if item.image_info is None:  # cannot happen: new bytes are always decoded first
                    raise RuntimeError(f"internal error: {item.source.path} has new bytes but was not decoded")
                album_of[item.sha256] = next_id
                width, height, fmt = item.image_info
                src = item.source
                new_rows.append((next_id, item.sha256, str(src.path), src.url, src.artist, src.title, width, height, fmt))
                changed.add(pos)
                next_id += 1
            if new_rows:
                cols = list(zip(*new_rows))
                con.execute(
                    "INSERT INTO albums SELECT unnest($1), unnest($2), unnest($3), unnest($4)::VARCHAR, "
                    "unnest($5)::VARCHAR, unnest($6)::VARCHAR, unnest($7), unnest($8), unnest($9), $10",
                    [_ids(cols[0]), *[list(c) for c in cols[1:]], now],
                )
                counts.albums = len(new_rows)

            # Files: one row per path; a path whose bytes changed now points at its new album.
            paths = [str(item.source.path) for item in good]
            if paths:
                known = dict(
                    con.execute("SELECT path, album_id FROM album_files WHERE path IN (SELECT unnest($1))", [paths]).fetchall()
                )
                file_rows: dict[str, tuple[int, int | None]] = {}
                for pos, item in enumerate(good):
                    path, album_id = str(item.source.path), album_of[item.sha256]
                    if known.get(path) != album_id:
                        file_rows[path] = (album_id, item.size)
                        changed.add(pos)
                if file_rows:
                    con.execute(
                        "INSERT OR REPLACE INTO album_files SELECT unnest($1), unnest($2), unnest($3), $4",
                        [list(file_rows), _ids(v[0] for v in file_rows.values()), [v[1] for v in file_rows.values()], now],
                    )
                counts.files = len(file_rows)
                # A file that was bad before and is good now is no longer an error.
                con.execute("DELETE FROM ingest_errors WHERE path IN (SELECT unnest($1))", [paths])

            # Genre links: the union over every copy of the bytes.
            wanted = {(album_of[item.sha256], genre): pos for pos, item in enumerate(good) for genre in item.source.genres}
            if wanted:
                have = set(
                    con.execute(
                        "SELECT album_id, genre FROM album_genres WHERE album_id IN (SELECT unnest($1))",
                        [_ids({a for a, _ in wanted})],
                    ).fetchall()
                )
                links = sorted(set(wanted) - have)
                if links:
                    con.execute(
                        "INSERT INTO album_genres SELECT unnest($1), unnest($2)",
                        [_ids(a for a, _ in links), [g for _, g in links]],
                    )
                    changed.update(wanted[link] for link in links)
                counts.genre_links = len(links)

            # Embeddings: skip any the store already has (e.g. written by a batch killed after commit).
            for name, fs in self.feature_sets.items():
                carriers = {album_of[item.sha256]: (pos, item.vectors[name]) for pos, item in enumerate(good) if name in item.vectors}
                if not carriers:
                    continue
                existing = {
                    r[0]
                    for r in con.execute(
                        f"SELECT album_id FROM {fs.table} WHERE album_id IN (SELECT unnest($1))", [_ids(carriers)]
                    ).fetchall()
                }
                fresh = [album_id for album_id in carriers if album_id not in existing]
                if fresh:
                    if fs.kind == TEXT_KIND:
                        records = [carriers[a][1] for a in fresh]
                        forms = [text_forms(r) for r in records]
                        con.execute(f"INSERT INTO {fs.table} SELECT unnest($1), unnest($2), unnest($3), unnest($4)",
                                    [_ids(fresh), records, [f[0] for f in forms], [f[1] for f in forms]])
                    elif fs.kind == RECORD_KIND:
                        values = [bytes(carriers[a][1]) for a in fresh]
                        con.execute(f"INSERT INTO {fs.table} SELECT unnest($1), unnest($2::BLOB[])", [_ids(fresh), values])
                    else:
                        vectors = np.stack([carriers[a][1] for a in fresh]).astype(np.float32)
                        con.execute(f"INSERT INTO {fs.table} SELECT unnest($1), unnest($2)", [_ids(fresh), vectors])
                    changed.update(carriers[a][0] for a in fresh)
                counts.embeddings[name] += len(fresh)

            if bad:
                con.execute(
                    "INSERT OR REPLACE INTO ingest_errors SELECT unnest($1), unnest($2), unnest($3), $4",
                    [[str(i.source.path) for i in bad], [i.error.reason for i in bad], [i.error.detail for i in bad], now],
                )
                counts.errors.update(i.error.reason for i in bad)

        counts.unchanged = len(good) - len(changed)
        return counts
