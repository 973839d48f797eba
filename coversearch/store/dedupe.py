"""The store's near-duplicate tables (migration 0005): what each placed album's own neighbour search
found, per feature, and every keypoint verdict.  ``coversearch.dedupe.stored`` keeps them current;
this is only their reads and writes."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _ids(values) -> np.ndarray:
    return np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.int64)


class DedupeTables:
    """Mixed into ``Store``: reads and writes of the dedupe_* tables."""

    con: Any

    def dedupe_rules(self) -> dict[str, str]:
        """feature -> the rule (JSON) its stored rows were computed under."""
        return dict(self.con.execute("SELECT feature, rule FROM dedupe_rules").fetchall())

    def dedupe_placed(self, feature: str) -> tuple[np.ndarray, np.ndarray]:
        """(album ids, kth distances) of the albums placed under ``feature``, by id."""
        cols = self.con.execute(
            "SELECT album_id, kth FROM dedupe_placed WHERE feature = $1 ORDER BY album_id", [feature]
        ).fetchnumpy()
        ids = np.asarray(cols["album_id"], dtype=np.int64)
        kth = np.asarray(cols["kth"], dtype=np.float64) if len(ids) else np.zeros(0)
        return ids, np.nan_to_num(kth, nan=np.inf)

    def dedupe_sides(self, feature: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(album id, other album, distance) of every stored candidate under ``feature``."""
        cols = self.con.execute(
            "SELECT album_id, other, distance FROM dedupe_sides WHERE feature = $1 ORDER BY album_id, other", [feature]
        ).fetchnumpy()
        return (np.asarray(cols["album_id"], dtype=np.int64), np.asarray(cols["other"], dtype=np.int64),
                np.asarray(cols["distance"], dtype=np.float64))

    def dedupe_sides_touching(self, feature: str, album_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``dedupe_sides`` rows with ``album_ids`` on either side."""
        cols = self.con.execute(
            "SELECT album_id, other, distance FROM dedupe_sides WHERE feature = $1 AND "
            "(album_id IN (SELECT unnest($2)) OR other IN (SELECT unnest($2))) ORDER BY album_id, other",
            [feature, _ids(album_ids)],
        ).fetchnumpy()
        return (np.asarray(cols["album_id"], dtype=np.int64), np.asarray(cols["other"], dtype=np.int64),
                np.asarray(cols["distance"], dtype=np.float64))

    def dedupe_verdicts(self, album_ids: Sequence[int] | None = None) -> dict[tuple[int, int], tuple[int, float, bool]]:
        """(a, b) with a < b -> (inliers, share of differing cells, confirmed); only pairs with one of
        ``album_ids`` when given."""
        sql = "SELECT a, b, inliers, differing, confirmed FROM dedupe_verdicts"
        if album_ids is None:
            rows = self.con.execute(sql).fetchall()
        else:
            rows = self.con.execute(sql + " WHERE a IN (SELECT unnest($1)) OR b IN (SELECT unnest($1))", [_ids(album_ids)]).fetchall()
        return {(int(a), int(b)): (int(i), float(d), bool(c)) for a, b, i, d, c in rows}

    def dedupe_write(
        self,
        feature: str,
        rule: str,
        album_ids: Sequence[int],
        kth: Sequence[float],
        sides: tuple[np.ndarray, np.ndarray, np.ndarray],
        verdicts: Sequence[tuple[int, int, int, float, bool]],
        *,
        reset: bool = False,
    ) -> None:
        """Replace the placement of ``album_ids`` under ``feature`` (all of it with ``reset``), and add
        verdicts, in one transaction."""
        ids = _ids(album_ids)
        with self.transaction() as con:  # type: ignore[attr-defined]
            if reset:
                con.execute("DELETE FROM dedupe_placed WHERE feature = $1", [feature])
                con.execute("DELETE FROM dedupe_sides WHERE feature = $1", [feature])
            elif len(ids):
                con.execute("DELETE FROM dedupe_placed WHERE feature = $1 AND album_id IN (SELECT unnest($2))", [feature, ids])
                con.execute("DELETE FROM dedupe_sides WHERE feature = $1 AND album_id IN (SELECT unnest($2))", [feature, ids])
            con.execute("INSERT OR REPLACE INTO dedupe_rules VALUES ($1, $2)", [feature, rule])
            if len(ids):
                kth = np.asarray(kth, dtype=np.float64)
                con.execute(
                    "INSERT INTO dedupe_placed SELECT unnest($1), $2, unnest($3)",
                    [ids, feature, [None if not np.isfinite(x) else float(x) for x in kth.tolist()]],
                )
            a, b, d = sides
            if len(a):
                con.execute(
                    "INSERT INTO dedupe_sides SELECT unnest($1), $2, unnest($3), unnest($4)",
                    [_ids(a), feature, _ids(b), np.asarray(d, dtype=np.float64)],
                )
            if verdicts:
                cols = list(zip(*verdicts))
                con.execute(
                    "INSERT INTO dedupe_verdicts SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5)",
                    [_ids(cols[0]), _ids(cols[1]), [int(x) for x in cols[2]], [float(x) for x in cols[3]], [bool(x) for x in cols[4]]],
                )

    def dedupe_forget(self, album_ids: Sequence[int]) -> None:
        """Unplace ``album_ids`` (still stored) and every album whose candidates named one, and drop
        their verdicts: what they were judged on changed (their text was read since)."""
        ids = _ids(album_ids)
        if len(ids):
            with self.transaction() as con:  # type: ignore[attr-defined]
                forget_albums(con, ids)

    def dedupe_clear(self) -> None:
        """Forget every stored group (``dedupe --rebuild``)."""
        with self.transaction() as con:  # type: ignore[attr-defined]
            for table in ("dedupe_verdicts", "dedupe_sides", "dedupe_placed", "dedupe_rules"):
                con.execute(f"DELETE FROM {table}")


def forget_albums(con, album_ids: np.ndarray) -> None:
    """Inside a removal's transaction: the removed albums leave the dedupe tables, and every album
    whose candidates named one of them is unplaced (it is placed again, among those that remain)."""
    con.execute(
        "DELETE FROM dedupe_placed WHERE (album_id, feature) IN "
        "(SELECT DISTINCT album_id, feature FROM dedupe_sides WHERE other IN (SELECT unnest($1)))",
        [album_ids],
    )
    con.execute(
        "DELETE FROM dedupe_sides WHERE (album_id, feature) IN "
        "(SELECT DISTINCT album_id, feature FROM dedupe_sides WHERE other IN (SELECT unnest($1)))",
        [album_ids],
    )
    con.execute("DELETE FROM dedupe_placed WHERE album_id IN (SELECT unnest($1))", [album_ids])
    con.execute("DELETE FROM dedupe_verdicts WHERE a IN (SELECT unnest($1)) OR b IN (SELECT unnest($1))", [album_ids])
