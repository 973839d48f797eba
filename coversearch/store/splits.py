"""Named train/validation/test splits and the catalogue map's cached layouts (``Store`` inherits these)."""

from __future__ import annotations

import json
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

    def map_layout(self, feature_set_id: int, method: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """(its record, its columns) of the cached layout, or None.  Columns, ordered by album id:
        album_id int64, xy float32 (n, 2), placed bool, cluster int32, typicality and density float32."""
        row = self.con.execute(
            "SELECT embedding_fingerprint, albums, seconds, computed_at, fitted, placed, params FROM map_layouts "
            "WHERE feature_set_id = ? AND method = ?",
            [feature_set_id, method],
        ).fetchone()
        if row is None:
            return None
        cols = self.con.execute(
            "SELECT album_id, x, y, placed, cluster, typicality, density FROM map_coords "
            "WHERE feature_set_id = ? AND method = ? ORDER BY album_id",
            [feature_set_id, method],
        ).fetchnumpy()
        record = {"embedding_fingerprint": row[0], "albums": int(row[1]), "seconds": float(row[2]), "computed_at": row[3],
                  "fitted": int(row[4] or 0), "placed": int(row[5] or 0), "params": json.loads(row[6] or "{}")}
        columns = {
            "album_id": np.asarray(cols["album_id"], dtype=np.int64),
            "xy": np.stack([np.asarray(cols["x"], dtype=np.float32), np.asarray(cols["y"], dtype=np.float32)], axis=1),
            "placed": np.asarray(cols["placed"], dtype=bool),
            "cluster": np.asarray(cols["cluster"], dtype=np.int32),
            "typicality": np.asarray(cols["typicality"], dtype=np.float32),
            "density": np.asarray(cols["density"], dtype=np.float32),
        }
        return record, columns

    def save_map_layout(
        self, feature_set_id: int, method: str, fingerprint: str, columns: dict[str, np.ndarray], seconds: float,
        *, fitted: int, placed: int, params: dict[str, Any],
    ) -> None:
        """Replace the cached layout of (feature set, method) in one transaction (columns as ``map_layout`` returns)."""
        ids = np.asarray(columns["album_id"], dtype=np.int64)
        n = len(ids)
        xy = columns["xy"]
        with self.transaction() as con:
            con.execute("DELETE FROM map_coords WHERE feature_set_id = ? AND method = ?", [feature_set_id, method])
            con.execute("DELETE FROM map_layouts WHERE feature_set_id = ? AND method = ?", [feature_set_id, method])
            con.execute(
                "INSERT INTO map_coords (feature_set_id, method, album_id, x, y, placed, cluster, typicality, density) "
                "SELECT $1, $2, unnest($3), unnest($4), unnest($5), unnest($6), unnest($7), unnest($8), unnest($9)",
                [feature_set_id, method, ids,
                 np.ascontiguousarray(xy[:, 0], dtype=np.float32), np.ascontiguousarray(xy[:, 1], dtype=np.float32),
                 np.asarray(columns.get("placed", np.zeros(n, bool)), dtype=bool),
                 np.asarray(columns.get("cluster", np.zeros(n, np.int32)), dtype=np.int32),
                 np.asarray(columns.get("typicality", np.zeros(n, np.float32)), dtype=np.float32),
                 np.asarray(columns.get("density", np.zeros(n, np.float32)), dtype=np.float32)],
            )
            con.execute(
                "INSERT INTO map_layouts (feature_set_id, method, embedding_fingerprint, albums, seconds, computed_at, fitted, placed, params) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [feature_set_id, method, fingerprint, n, float(seconds), utcnow(), int(fitted), int(placed), json.dumps(params)],
            )
