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
