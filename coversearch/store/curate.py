"""Taking albums out of the store and changing their genres.

Both are planned first (every album, path and genre is checked, nothing changes on a bad one)
and then applied in one transaction, so a crash or a kill leaves the store as it was before or
as it is after, never in between.

Removal takes an album with everything that hangs off it: its files, genre links, the vector of
every feature set and its side in every split.  Indexes built before then no longer match the
store's vectors (``index build --refresh`` / ``similar --refresh`` bring them up to date) and
models trained before refuse the store, as after any change of its vectors.  Removing by genre
removes the albums filed under that genre alone; an album that also carries another genre only
loses the link, so no cover of another genre is lost with it.

Relabelling changes genre links only: vectors, indexes and models stay current, and a relabelled
album keeps its side in every split.  An album keeps at least one genre: to take one out
altogether, remove it.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.store.db import Store
from coversearch.store.dedupe import forget_albums
from coversearch.imaging.thumbs import thumbs_dir

ACTIONS = ("add", "remove")


def _ids(values: Iterable[int]) -> np.ndarray:
    return np.asarray(sorted(set(int(v) for v in values)), dtype=np.int64)


# -- removal -----------------------------------------------------------------------------------------
@dataclass
class RemovalPlan:
    album_ids: list[int]  # albums that go, with everything attached to them
    unlinked: list[int] = field(default_factory=list)  # albums that only lose ``genre`` (removal by genre)
    genre: str | None = None
    files: int = 0
    genre_links: int = 0
    embeddings: dict[str, int] = field(default_factory=dict)  # feature set label -> vectors
    split_assignments: int = 0
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["albums"] = len(self.album_ids)
        return data


def plan_removal(
    store: Store, *, album_ids: Sequence[int] = (), paths: Sequence[str | os.PathLike] = (), genre: str | None = None
) -> RemovalPlan:
    """What removing these albums would delete (nothing is changed): exactly one kind of selector."""
    given = [name for name, value in (("--album", album_ids), ("--path", paths), ("--genre", genre)) if value]
    if len(given) != 1:
        raise CoverSearchError("say what to remove with one of --album ID, --path PATH or --genre GENRE")
    unlinked: list[int] = []
    if album_ids:
        chosen = _ids(album_ids)
        found = {r[0] for r in store.con.execute("SELECT id FROM albums WHERE id IN (SELECT unnest($1))", [chosen]).fetchall()}
        missing = [int(a) for a in chosen if int(a) not in found]
        if missing:
            raise CoverSearchError(f"no album with id {', '.join(map(str, missing))} in the store")
    elif paths:
        chosen = _ids(_albums_at_paths(store, paths))
    else:
        rows = store.con.execute(
            "SELECT album_id, count(*) FILTER (WHERE genre <> $1) FROM album_genres "
            "WHERE album_id IN (SELECT album_id FROM album_genres WHERE genre = $1) GROUP BY album_id",
            [genre],
        ).fetchall()
        if not rows:
            known = [g for (g,) in store.con.execute("SELECT DISTINCT genre FROM album_genres ORDER BY genre").fetchall()]
            raise CoverSearchError(f"no album of genre {genre!r} in the store (genres: {', '.join(known) or 'none'})")
        chosen = _ids(a for a, others in rows if others == 0)
        unlinked = sorted(int(a) for a, others in rows if others > 0)
    plan = RemovalPlan([int(a) for a in chosen], unlinked, genre)
    count = lambda sql: store.con.execute(sql, [chosen]).fetchone()[0]  # noqa: E731
    plan.files = count("SELECT count(*) FROM album_files WHERE album_id IN (SELECT unnest($1))")
    plan.genre_links = count("SELECT count(*) FROM album_genres WHERE album_id IN (SELECT unnest($1))") + len(unlinked)
    plan.embeddings = {fs.label: count(f"SELECT count(*) FROM {fs.table} WHERE album_id IN (SELECT unnest($1))")
                       for fs in store.feature_sets(records=True)}
    plan.split_assignments = count("SELECT count(*) FROM split_assignments WHERE album_id IN (SELECT unnest($1))")
    return plan


def _albums_at_paths(store: Store, paths: Sequence[str | os.PathLike]) -> set[int]:
    """The albums recorded at each path: a file as it was recorded or resolved, or every file under a folder."""
    recorded = store.known_files()
    resolved: dict[Path, int] | None = None
    albums: set[int] = set()
    for raw in paths:
        text = str(raw)
        if text in recorded:
            albums.add(recorded[text])
            continue
        if resolved is None:
            # Absolute without following symlinks: a folder of links names its files by their own paths.
            resolved = {Path(os.path.abspath(p)): a for p, a in recorded.items()}
        target = Path(os.path.abspath(text))
        if target in resolved:
            albums.add(resolved[target])
            continue
        under = {a for p, a in resolved.items() if target in p.parents}
        if not under:
            raise CoverSearchError(f"no stored file at {text} (nor under it)")
        albums |= under
    return albums


def apply_removal(store: Store, plan: RemovalPlan) -> RemovalPlan:
    """Delete what ``plan`` lists, in one transaction; cached thumbnails of the removed albums go after it."""
    chosen = _ids(plan.album_ids)
    shas = [r[0] for r in store.con.execute("SELECT sha256 FROM albums WHERE id IN (SELECT unnest($1))", [chosen]).fetchall()]
    with store.transaction() as con:
        for fs in store.feature_sets(records=True):
            con.execute(f"DELETE FROM {fs.table} WHERE album_id IN (SELECT unnest($1))", [chosen])
        forget_albums(con, chosen)  # near-duplicate groups: placed again by coversearch.dedupe.stored
        for table in ("split_assignments", "album_genres", "album_files", "map_coords"):  # a map layout goes stale, its points go now
            con.execute(f"DELETE FROM {table} WHERE album_id IN (SELECT unnest($1))", [chosen])
        if plan.unlinked:
            con.execute("DELETE FROM album_genres WHERE genre = $1 AND album_id IN (SELECT unnest($2))", [plan.genre, _ids(plan.unlinked)])
        con.execute("DELETE FROM albums WHERE id IN (SELECT unnest($1))", [chosen])
    plan.applied = True
    folder = thumbs_dir(store)
    for sha in shas:
        try:
            (folder / f"{sha}.jpg").unlink()
        except OSError:
            pass  # never cached, or a read-only folder: nothing serves it by id any more
    return plan


def remove_albums(store: Store, **selectors) -> RemovalPlan:
    return apply_removal(store, plan_removal(store, **selectors))


# -- genres --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelChange:
    album_id: int
    action: str  # "add" | "remove"
    genre: str
    where: str = ""  # e.g. "labels.csv line 3", for messages


@dataclass
class LabelResult:
    added: list[tuple[int, str]] = field(default_factory=list)
    removed: list[tuple[int, str]] = field(default_factory=list)
    unchanged: list[tuple[int, str, str]] = field(default_factory=list)  # (album, action, genre) already so
    new_genres: list[str] = field(default_factory=list)  # genres no album carried before
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [{"album_id": a, "genre": g} for a, g in self.added],
            "removed": [{"album_id": a, "genre": g} for a, g in self.removed],
            "unchanged": [{"album_id": a, "action": act, "genre": g} for a, act, g in self.unchanged],
            "new_genres": self.new_genres,
            "applied": self.applied,
        }


def check_genre(genre: str, where: str = "") -> str:
    name = (genre or "").strip()
    prefix = f"{where}: " if where else ""
    if not name:
        raise CoverSearchError(f"{prefix}empty genre name")
    if any(c in name for c in ";|,") or any(ord(c) < 32 for c in name):
        raise CoverSearchError(f"{prefix}bad genre name {genre!r}: no ';', '|', ',' or control characters")
    return name


def relabel(store: Store, changes: Sequence[LabelChange], *, dry_run: bool = False) -> LabelResult:
    """Add and remove genre links, checked as a whole first, then in one transaction.

    Adding a genre the album has, or removing one it lacks, changes nothing (re-running a CSV is
    safe).  A change that would leave an album with no genre is refused.
    """
    if not changes:
        raise CoverSearchError("no genre changes given")
    for change in changes:
        if change.action not in ACTIONS:
            where = f"{change.where}: " if change.where else ""
            raise CoverSearchError(f"{where}action must be add or remove, not {change.action!r}")
    albums = _ids(c.album_id for c in changes)
    current: dict[int, set[str]] = {int(a): set() for a in
                                    (r[0] for r in store.con.execute("SELECT id FROM albums WHERE id IN (SELECT unnest($1))", [albums]).fetchall())}
    for album_id, genre in store.con.execute("SELECT album_id, genre FROM album_genres WHERE album_id IN (SELECT unnest($1))", [albums]).fetchall():
        current[int(album_id)].add(genre)
    known_genres = {g for (g,) in store.con.execute("SELECT DISTINCT genre FROM album_genres").fetchall()}
    result = LabelResult()
    after = {a: set(g) for a, g in current.items()}
    for change in changes:
        where = f"{change.where}: " if change.where else ""
        if change.album_id not in after:
            raise CoverSearchError(f"{where}no album with id {change.album_id} in the store")
        genres = after[change.album_id]
        if (change.action == "add") == (change.genre in genres):
            result.unchanged.append((change.album_id, change.action, change.genre))
        elif change.action == "add":
            genres.add(change.genre)
        else:
            genres.discard(change.genre)
    for album_id, genres in after.items():
        if not genres:
            raise CoverSearchError(
                f"album {album_id} would have no genre left; add another first, or remove the album with "
                f"`coversearch remove --album {album_id}`"
            )
        result.added += [(album_id, g) for g in sorted(genres - current[album_id])]
        result.removed += [(album_id, g) for g in sorted(current[album_id] - genres)]
    result.new_genres = sorted({g for _, g in result.added} - known_genres)
    if dry_run or not (result.added or result.removed):
        return result
    with store.transaction() as con:
        for rows, sql in ((result.removed, "DELETE FROM album_genres WHERE (album_id, genre) IN (SELECT unnest($1), unnest($2))"),
                          (result.added, "INSERT INTO album_genres SELECT unnest($1), unnest($2)")):
            if rows:
                con.execute(sql, [np.asarray([a for a, _ in rows], dtype=np.int64), [g for _, g in rows]])
    result.applied = True
    return result


def read_label_csv(path: str | os.PathLike) -> list[LabelChange]:
    """Changes from a CSV with a header ``album_id,action,genre`` (action: add or remove)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CoverSearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CoverSearchError(f"{path} is not UTF-8 text") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if not {"album_id", "action", "genre"} <= set(columns):
        raise CoverSearchError(f"{path}: the header must name the columns album_id, action, genre (found: {', '.join(columns) or 'none'})")
    reader.fieldnames = columns
    changes = []
    for line, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values()):
            continue
        where = f"{path.name} line {line}"
        try:
            album_id = int((row.get("album_id") or "").strip())
        except ValueError:
            raise CoverSearchError(f"{where}: album_id must be a whole number, not {row.get('album_id')!r}") from None
        action = (row.get("action") or "").strip().lower()
        changes.append(LabelChange(album_id, action, check_genre(row.get("genre") or "", where), where))
    if not changes:
        raise CoverSearchError(f"{path} lists no changes")
    return changes
