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

import os
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from coversearch.csvfile import StrictCsv
from coversearch.errors import CoverSearchError
from coversearch.genres import check_genre, genre_key
from coversearch.store.db import Store
from coversearch.store.dedupe import forget_albums

ACTIONS = ("add", "remove")


ID_MAX = 2**63 - 1  # album ids are BIGINT


def _ids(values: Iterable[int]) -> np.ndarray:
    ids = sorted(set(int(v) for v in values))
    outside = [v for v in ids if not -ID_MAX <= v <= ID_MAX]
    if outside:  # no stored album can have it, and it does not fit the id column
        raise CoverSearchError(f"no album with id {', '.join(map(str, outside))} in the store")
    return np.asarray(ids, dtype=np.int64)


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
    if genre is not None and not genre_key(genre):
        raise CoverSearchError(f"--genre {genre!r} names no genre")
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
        genre = genre_key(genre)
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
                       for fs in store.feature_sets(kind=None)}
    plan.split_assignments = count("SELECT count(*) FROM split_assignments WHERE album_id IN (SELECT unnest($1))")
    return plan


def _albums_at_paths(store: Store, paths: Sequence[str | os.PathLike]) -> set[int]:
    """The albums recorded at each path: a file as it was recorded or resolved, or every file under a folder."""
    recorded = store.known_files()
    resolved: dict[Path, int] | None = None
    albums: set[int] = set()
    for raw in paths:
        text = str(raw)
        if not text.strip():
            raise CoverSearchError(f"--path {text!r} names no file or folder (an unset variable?)")
        if not os.path.abspath(text).strip(os.sep):  # "/", "//", "/.", "$UNSET/"
            raise CoverSearchError(f"--path {text} is the root folder: it would take every stored album; "
                                   "name the folder the covers are in")
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
        for fs in store.feature_sets(kind=None):
            con.execute(f"DELETE FROM {fs.table} WHERE album_id IN (SELECT unnest($1))", [chosen])
        forget_albums(con, chosen)  # near-duplicate groups: placed again by coversearch.dedupe.stored
        for table in ("split_assignments", "album_genres", "album_files", "map_coords"):  # a map layout goes stale, its points go now
            con.execute(f"DELETE FROM {table} WHERE album_id IN (SELECT unnest($1))", [chosen])
        if plan.unlinked:
            con.execute("DELETE FROM album_genres WHERE genre = $1 AND album_id IN (SELECT unnest($2))", [plan.genre, _ids(plan.unlinked)])
        con.execute("DELETE FROM albums WHERE id IN (SELECT unnest($1))", [chosen])
    plan.applied = True
    folder = store.thumbs_dir
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
    source: str = ""  # the CSV file's name, for messages
    line: int = 0

    @property
    def where(self) -> str:
        """e.g. "labels.csv line 3", or "" for a change given on the command line."""
        return f"{self.source} line {self.line}" if self.source else ""


class LabelChanges(Sequence[LabelChange]):
    """The changes of a CSV file, stored by column (a million rows take about 25 MB, not hundreds):
    each ``LabelChange`` is made when it is read."""

    def __init__(self, source: str):
        self.source = source
        self._albums = array("q")
        self._adds = bytearray()
        self._genres = array("l")  # index into _names
        self._lines = array("q")
        self._names: list[str] = []
        self._name_ids: dict[str, int] = {}

    def append(self, album_id: int, action: str, genre: str, line: int) -> None:
        genre_id = self._name_ids.get(genre)
        if genre_id is None:
            genre_id = self._name_ids[genre] = len(self._names)
            self._names.append(genre)
        self._albums.append(album_id)
        self._adds.append(action == "add")
        self._genres.append(genre_id)
        self._lines.append(line)

    def __len__(self) -> int:
        return len(self._albums)

    def __getitem__(self, i: int) -> LabelChange:  # type: ignore[override]
        return LabelChange(self._albums[i], "add" if self._adds[i] else "remove", self._names[self._genres[i]],
                           self.source, self._lines[i])

    def __iter__(self) -> Iterator[LabelChange]:
        return (self[i] for i in range(len(self)))


@dataclass
class LabelResult:
    added: list[tuple[int, str]] = field(default_factory=list)
    removed: list[tuple[int, str]] = field(default_factory=list)
    unchanged: list[tuple[int, str, str]] = field(default_factory=list)  # (album, action, genre) already so, each once
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
    unchanged: dict[tuple[int, str, str], None] = {}  # each once, in order, however often a file repeats it
    after = {a: set(g) for a, g in current.items()}
    for change in changes:
        where = f"{change.where}: " if change.where else ""
        if change.album_id not in after:
            raise CoverSearchError(f"{where}no album with id {change.album_id} in the store")
        genres = after[change.album_id]
        if (change.action == "add") == (change.genre in genres):
            unchanged[(change.album_id, change.action, change.genre)] = None
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
    result.unchanged = list(unchanged)
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


MAX_LABEL_CSV_BYTES = 64 * 1024**2  # about 5 million changes


def read_label_csv(path: str | os.PathLike) -> LabelChanges:
    """Changes from a CSV with a header ``album_id,action,genre`` (action: add or remove; other
    columns are ignored), read strictly (``coversearch.csvfile``): every line is checked, and the
    first bad one is the error, with its line number in the file."""
    path = Path(path)
    changes = LabelChanges(path.name)
    genres: dict[str, str] = {}  # each distinct text checked once
    with StrictCsv(path, max_bytes=MAX_LABEL_CSV_BYTES) as table:
        if not {"album_id", "action", "genre"} <= set(table.header):
            raise CoverSearchError(f"{path}: the header must name the columns album_id, action, genre "
                                   f"(found: {', '.join(table.header) or 'none'})")
        for record in table:
            where = f"{path.name} line {record.line}"
            if record.fields is None:
                raise CoverSearchError(f"{where}: {record.problem}")
            row = record.fields
            if not any(v.strip() for v in row.values()):
                continue
            text = row["album_id"].strip()
            try:
                album_id = int(text)
            except ValueError:
                raise CoverSearchError(f"{where}: album_id must be a whole number, not {row['album_id']!r}") from None
            if not -ID_MAX <= album_id <= ID_MAX:
                raise CoverSearchError(f"{where}: no album with id {album_id} in the store")
            action = row["action"].strip().lower()
            if action not in ACTIONS:
                raise CoverSearchError(f"{where}: action must be add or remove, not {row['action']!r}")
            raw = row["genre"]
            genre = genres.get(raw)
            if genre is None:
                genre = genres[raw] = check_genre(raw, where)
            changes.append(album_id, action, genre, record.line)
    if not changes:
        raise CoverSearchError(f"{path} lists no changes")
    return changes
