"""The store's albums, their files and their genres: what ingest, search results and the
catalogue pages read about a cover (``Store`` inherits these reads)."""

from __future__ import annotations

from typing import Any, Sequence

import duckdb
import numpy as np

from coversearch.errors import StoreError


class AlbumReads:
    con: duckdb.DuckDBPyConnection

    def album_ids_by_sha(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT sha256, id FROM albums").fetchall())

    def album_id_for_sha256(self, sha256: str) -> int | None:
        row = self.con.execute("SELECT id FROM albums WHERE sha256 = ?", [sha256]).fetchone()
        return int(row[0]) if row else None

    def known_files(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT path, album_id FROM album_files").fetchall())

    def known_file_sizes(self) -> dict[str, tuple[int, int | None]]:
        """path -> (album id, size in bytes when it was ingested; None if not recorded)."""
        return {p: (a, s) for p, a, s in self.con.execute("SELECT path, album_id, size_bytes FROM album_files").fetchall()}

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

    def stats(self) -> dict[str, Any]:
        one = lambda sql: self.con.execute(sql).fetchone()[0]  # noqa: E731
        genres = dict(self.con.execute("SELECT genre, count(*) FROM album_genres GROUP BY genre ORDER BY genre").fetchall())
        feature_sets = []
        for fs in self.feature_sets(kind=None):
            feature_sets.append(
                {
                    "name": fs.name,
                    "version": fs.version,
                    "dim": fs.dim,
                    "kind": fs.kind,
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

    def album_metadata(self) -> list[tuple[int, str | None, str | None, str]]:
        """(album id, artist, title, source path) of every album with an artist or a title, by album id."""
        rows = self.con.execute(
            "SELECT id, artist, title, source_path FROM albums WHERE artist IS NOT NULL OR title IS NOT NULL ORDER BY id"
        ).fetchall()
        return [(int(a), artist, title, path) for a, artist, title, path in rows]
