"""Readers list what to ingest: a path per image with its genres and optional metadata.

Three sources, one output type: a folder ``ROOT/<genre>/.../<image>``, a manifest CSV, and the
original study's links file (``url<TAB>genre/file.jpg``) resolved under a root folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from coversearch.csvfile import StrictCsv
from coversearch.errors import CoverSearchError
from coversearch.genres import SEPARATORS, check_genre


def absolute(path: Path) -> Path:
    """Absolute and without '..', symlinks kept: stored paths must not depend on where ingest ran."""
    return Path(os.path.abspath(path))


@dataclass(frozen=True)
class SourceItem:
    path: Path
    genres: tuple[str, ...]
    url: str | None = None
    artist: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class SourceProblem:
    """An entry that names no usable file (e.g. a malformed manifest line): recorded as an error."""

    where: str
    reason: str
    detail: str


@dataclass
class SourceListing:
    items: list[SourceItem]
    problems: list[SourceProblem]


def read_folder(root: Path) -> SourceListing:
    """Every non-hidden file below ``root/<genre>/``, sorted; files directly in root have no genre."""
    root = absolute(root)
    if not root.is_dir():
        raise CoverSearchError(f"not a folder: {root}")
    items: list[SourceItem] = []
    problems: list[SourceProblem] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            try:
                genre = check_genre(entry.name)
            except CoverSearchError as exc:
                problems.append(SourceProblem(str(entry), "bad-genre", f"folder name: {exc}; its files were left out"))
                continue
            for path in sorted(entry.rglob("*")):
                rel = path.relative_to(entry)
                if any(part.startswith(".") for part in rel.parts) or path.is_dir():
                    continue
                items.append(SourceItem(path=path, genres=(genre,)))
        else:
            problems.append(SourceProblem(str(entry), "no-genre", "file is not inside a genre folder ROOT/<genre>/"))
    return SourceListing(items, problems)


def _split_genres(text: str) -> tuple[str, ...]:
    """The genres of a manifest's genre(s) field (separated by ; | or ,), each checked (``check_genre``)."""
    for sep in SEPARATORS:
        text = text.replace(sep, ",")
    return tuple(dict.fromkeys(check_genre(g) for g in text.split(",") if g.strip()))


def read_manifest(manifest: Path, root: Path | None = None) -> SourceListing:
    """CSV with a header: ``path`` and ``genre`` or ``genres`` (separated by ; | or ,), optional
    ``artist``, ``title``, ``url``.  Relative paths are resolved against ``root`` or the
    manifest's own folder.  Read strictly (``coversearch.csvfile``): a bad line is a problem of
    its own, numbered as the file's line."""
    base = absolute(root if root is not None else manifest.parent)
    items: list[SourceItem] = []
    problems: list[SourceProblem] = []
    with StrictCsv(manifest, what="manifest") as table:
        header = set(table.header)
        if table.header and ("path" not in header or not ({"genre", "genres"} & header)):
            raise CoverSearchError(f"manifest {manifest} needs a header with 'path' and 'genre' (or 'genres') columns")
        for record in table:
            where = f"{manifest}:{record.line}"
            row = record.fields
            if row is None:
                problems.append(SourceProblem(where, "bad-manifest-line", record.problem))
                continue
            if any("\0" in value for value in row.values()):
                problems.append(SourceProblem(where, "bad-manifest-line", "NUL byte in the line"))
                continue
            path_text = (row.get("path") or "").strip()
            try:
                genres = _split_genres(row.get("genres") or row.get("genre") or "")
            except CoverSearchError as exc:
                problems.append(SourceProblem(where, "bad-genre", str(exc)))
                continue
            if not path_text or not genres:
                problems.append(SourceProblem(where, "bad-manifest-line", "missing path or genre"))
                continue
            path = Path(path_text)
            items.append(
                SourceItem(
                    path=path if path.is_absolute() else base / path,
                    genres=genres,
                    url=(row.get("url") or "").strip() or None,
                    artist=(row.get("artist") or "").strip() or None,
                    title=(row.get("title") or "").strip() or None,
                )
            )
    return SourceListing(items, problems)


def read_links(links: Path, root: Path) -> SourceListing:
    """The study's links file: each ``genre/file.jpg`` is looked for under ``root``."""
    from coversearch.sources.links import parse_links

    entries, link_problems = parse_links(links)
    listing = listing_from_links(root, entries)
    listing.problems += [SourceProblem(f"{links}:{p.line_no}", "bad-links-line", p.reason) for p in link_problems]
    return listing


def listing_from_links(root: Path, entries: Iterable) -> SourceListing:
    """Items for link entries already resolved (e.g. the files a download left under root)."""
    root = absolute(root)
    items, problems = [], []
    for e in entries:
        try:
            items.append(SourceItem(path=root / e.relpath, genres=(check_genre(e.genre),), url=e.url))
        except CoverSearchError as exc:
            problems.append(SourceProblem(str(root / e.relpath), "bad-genre", str(exc)))
    return SourceListing(items, problems)


def read_source(root: Path, manifest: Path | None = None, links: Path | None = None) -> SourceListing:
    """Pick the reader: explicit --manifest/--links, or ROOT itself a .csv (manifest) or .tsv (links)."""
    if manifest is not None and links is not None:
        raise CoverSearchError("give either --manifest or --links, not both")
    if manifest is None and links is None and root.is_file():
        if root.suffix.lower() == ".csv":
            return read_manifest(root)
        if root.suffix.lower() in (".tsv", ".txt"):
            return read_links(root, root.parent)
        raise CoverSearchError(f"{root} is a file: give a folder ROOT/<genre>/<image>, a .csv manifest or a .tsv links file")
    if not root.exists():
        raise CoverSearchError(f"no such folder: {root}")
    if manifest is not None:
        return read_manifest(manifest, root)
    if links is not None:
        return read_links(links, root)
    return read_folder(root)


def limit_items(items: Iterable[SourceItem], limit: int | None) -> list[SourceItem]:
    items = list(items)
    return items if limit is None else items[:limit]
