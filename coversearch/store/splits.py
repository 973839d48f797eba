"""Named train/validation/test splits and the catalogue map's cached layouts (``Store`` inherits these)."""

from __future__ import annotations

from typing import Any, Sequence

import duckdb
import numpy as np

from coversearch.store.rows import utcnow


class SplitsAndLayouts:
    con: duckdb.DuckDBPyConnection

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
