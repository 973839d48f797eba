"""Store reads (and the map's cached layouts) behind the page's looking tools: genre browse, map
coordinates.  A mixin of ``Store``: every SQL statement stays in the store package."""

from __future__ import annotations

from typing import Any

import numpy as np


class ExploreQueries:
    """Mixed into ``Store``: ``self.con`` is its DuckDB connection."""

    con: Any

    def albums_of_genre(self, genre: str, offset: int, limit: int) -> tuple[int, list[int]]:
        """(how many albums carry ``genre``, the ids of ``limit`` of them from ``offset``, by album id)."""
        (total,) = self.con.execute("SELECT count(DISTINCT album_id) FROM album_genres WHERE genre = ?", [genre]).fetchone()
        rows = self.con.execute(
            "SELECT DISTINCT album_id FROM album_genres WHERE genre = ? ORDER BY album_id LIMIT ? OFFSET ?",
            [genre, int(limit), int(offset)],
        ).fetchall()
        return int(total), [int(r[0]) for r in rows]

    def genre_names(self) -> list[str]:
        return [g for (g,) in self.con.execute("SELECT DISTINCT genre FROM album_genres ORDER BY genre").fetchall()]

    def first_genres(self, album_ids: np.ndarray) -> dict[int, str]:
        """Each album's first genre (alphabetically): the colour of its point on the map."""
        rows = self.con.execute(
            "SELECT album_id, min(genre) FROM album_genres WHERE album_id IN (SELECT unnest($1)) GROUP BY album_id",
            [np.asarray(album_ids, dtype=np.int64)],
        ).fetchall()
        return {int(a): g for a, g in rows}

    # -- the catalogue map's cached layouts ---------------------------------------------------------
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
        from coversearch.store.db import utcnow

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
