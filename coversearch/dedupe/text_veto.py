"""Different printed words veto a near-duplicate match: a copy never changes a cover's words.

Keypoint verification (``verify.py``) cannot tell a copy from another single printed from the same
label template: both share hundreds of keypoints and, at the aligned comparison's 128 px, the
title's small print is a few grey levels in a few cells.  The ``text`` feature (opt-in,
``features/text.py``) reads those words at ingest.  Laid over each other by the transform the
keypoints found, two covers whose surely read lines sit in the same place but say different things
("WE CAN WORK IT OUT" / "DAY TRIPPER", "R 5389" / "R 5305") are two releases.  A copy can lose words
(a crop, a resize too small to read) and gain some (a sticker), but where both covers show a line
there, it is the same line; a sticker or a border laid over a line hides it: the aligned
pictures then differ strongly there, unlike two prints of one template, so such a line is not held
against the pair (``OCCLUDED``).

No text on either side, or a mirrored match (mirrored words read as nothing useful), vetoes nothing.
Everything here reads stored data: the two text records and the match that verification made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from coversearch.features.keypoints import SIDE
from coversearch.store.rows import TEXT_KIND

# Chosen on the calibration half of benchmarks/bench_dedupe.py's quality set (see docs/near-duplicates.md).
MIN_SCORE = 0.9  # only lines the recogniser is this sure of count
MIN_CHARS = 4  # letters and digits in a line (compact form): shorter ones are too easily misread
OVERLAP = 0.5  # two lines are in the same place when their boxes share this much of the smaller one's width and height
AGREE = 0.25  # the same words: edit distance at most this share of the shorter line (OCR slips, cut ends)
OCCLUDED = 40.0  # a line whose aligned cells differ by more than this many grey levels on average is hidden, not changed
CONFLICTS = 1  # lines in conflict that veto the pair


@dataclass(frozen=True)
class Line:
    compact: str
    box: np.ndarray  # (x0, y0, x1, y1) in the other cover's frame at SIDE scale (b's own frame for b's lines)


def parse(record: str | dict | None) -> dict | None:
    """A stored text record (JSON text as ``Store.text_rows`` returns it, or already parsed)."""
    if record is None:
        return None
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except ValueError:
            return None
    return record if isinstance(record, dict) and record.get("lines") is not None else None


def _lines(record: dict, transform: np.ndarray | None, min_score: float, min_chars: int) -> list[Line]:
    """The record's sure lines, boxes at SIDE scale, moved by ``transform`` (2 x 3) when given."""
    from coversearch.features.text import compact

    scale = SIDE / max(int(record.get("width") or 1), int(record.get("height") or 1), 1)
    out = []
    for line in record["lines"]:
        text = compact(str(line.get("text", "")))
        if float(line.get("score", 0.0)) < min_score or len(text) < min_chars:
            continue
        points = np.asarray(line["box"], dtype=np.float64).reshape(-1, 2) * scale
        if transform is not None:
            points = points @ np.asarray(transform, dtype=np.float64)[:, :2].T + np.asarray(transform, dtype=np.float64)[:, 2]
        out.append(Line(text, np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])))
    return out


def _everything(record: dict) -> str:
    from coversearch.features.text import compact

    return "".join(compact(str(line.get("text", ""))) for line in record["lines"])


def _overlap(p: np.ndarray, q: np.ndarray) -> float:
    """How far two boxes share one place: the lesser of their shared width (as a share of the
    narrower) and shared height (of the lower).  Per axis, so that a transform a few pixels off
    vertically still finds a line of one cover on the line of the other."""
    w = min(p[2], q[2]) - max(p[0], q[0])
    h = min(p[3], q[3]) - max(p[1], q[1])
    if w <= 0 or h <= 0:
        return 0.0
    narrower = min(p[2] - p[0], q[2] - q[0])
    lower = min(p[3] - p[1], q[3] - q[1])
    return float(min(w / narrower, h / lower)) if narrower > 0 and lower > 0 else 0.0


@lru_cache(maxsize=65536)
def contained_distance(short: str, long: str) -> int:
    """Edit distance between ``short`` and the closest stretch of ``long`` (semi-global: ``long``'s
    ends cost nothing)."""
    from coversearch.features.text import stretch_distances

    if len(short) > len(long):
        short, long = long, short
    if not short:
        return 0
    return int(stretch_distances(short, np.frombuffer(long.encode("utf-32-le"), dtype=np.int32)).min())


def _same_words(x: str, y: str, agree: float) -> bool:
    return contained_distance(x, y) <= agree * min(len(x), len(y))


def _hidden(box: np.ndarray, grid: np.ndarray | None, occluded: float | None) -> bool:
    """Whether the aligned pictures differ strongly over ``box`` (b's frame at SIDE scale)."""
    if occluded is None or grid is None:
        return False
    gh, gw = grid.shape
    cell = SIDE / max(gh, gw)  # a grid cell at SIDE scale: the longer side, COMPARE_SIDE pixels, is whole cells
    r0, r1 = int(max(box[1], 0) // cell), int(min(box[3], gh * cell - 1e-6) // cell)
    c0, c1 = int(max(box[0], 0) // cell), int(min(box[2], gw * cell - 1e-6) // cell)
    if r1 < r0 or c1 < c0:
        return False
    cells = grid[r0 : r1 + 1, c0 : c1 + 1]
    cells = cells[~np.isnan(cells)]
    return len(cells) > 0 and float(cells.mean()) > occluded


def conflicts(a_text: Any, b_text: Any, transform: np.ndarray | None, grid: np.ndarray | None = None, *,
              min_score: float = MIN_SCORE, min_chars: int = MIN_CHARS, overlap: float = OVERLAP,
              agree: float = AGREE, occluded: float | None = OCCLUDED) -> list[tuple[str, str]]:
    """The lines in conflict between two covers laid over each other by ``transform`` (a's points at
    SIDE scale to b's): (a line, what b reads in its place) for each surely read line of either cover
    whose place on the other holds surely read lines saying something else, unless the aligned
    pictures (``grid``: ``verify.Match.grid``) show that place covered.  Empty without text on
    either side or without a transform."""
    a_record, b_record = parse(a_text), parse(b_text)
    if a_record is None or b_record is None or transform is None:
        return []
    a_lines = _lines(a_record, transform, min_score, min_chars)
    b_lines = _lines(b_record, None, min_score, min_chars)
    if not a_lines or not b_lines:
        return []
    # Everything each cover reads, however unsure: OCR splits, merges and misses lines differently on
    # two copies, so only words the other cover shows nowhere are held against the pair.
    a_all, b_all = _everything(a_record), _everything(b_record)
    found = []
    for mine, theirs, a_side in ((a_lines, b_lines, True), (b_lines, a_lines, False)):
        mine_all, theirs_all = (a_all, b_all) if a_side else (b_all, a_all)
        for line in mine:
            there = [o for o in theirs if _overlap(line.box, o.box) >= overlap]
            if not there:
                continue
            said = "".join(o.compact for o in sorted(there, key=lambda o: (o.box[1], o.box[0])))
            if _same_words(line.compact, said, agree) or any(_same_words(line.compact, o.compact, agree) for o in there):
                continue
            if _same_words(line.compact, theirs_all, agree) or all(_same_words(o.compact, mine_all, agree) for o in there):
                continue
            if _hidden(line.box, grid, occluded):
                continue
            found.append((line.compact, said) if a_side else (said, line.compact))
    return found


def vetoes(a, b, found) -> bool:
    """Whether the printed words of two covers (``features.keypoints.Keypoints`` with their ``text``
    records) whose keypoints matched (``verify.Match``) say they are two releases, not one cover."""
    if found is None or found.mirrored or found.transform is None:
        return False
    text_a, text_b = getattr(a, "text", None), getattr(b, "text", None)
    if text_a is None or text_b is None:
        return False
    return len(conflicts(text_a, text_b, found.transform, found.grid)) >= CONFLICTS


# -- where the records come from ---------------------------------------------------------------------
def text_set(store):
    """The store's newest text feature set, or None (the veto then never applies)."""
    held = store.feature_sets(kind=TEXT_KIND)
    return max(held, key=lambda fs: fs.version) if held else None


def stored_texts(store, fs, album_ids) -> dict[int, dict]:
    """album id -> parsed text record, for those of ``album_ids`` the text set ``fs`` (``text_set``) holds."""
    if fs is None or len(album_ids) == 0:
        return {}
    return {a: r for a, lines, _, _ in store.text_rows(fs, list(album_ids)) if (r := parse(lines)) is not None}


def text_version(store) -> int | None:
    """The version of the text set the veto reads (None: the store holds no text)."""
    fs = text_set(store)
    return None if fs is None else int(fs.version)


def settings(version: int | None) -> dict | None:
    """What stored verdicts depend on, besides the keypoints: none without text."""
    if version is None:
        return None
    return {"text_version": version, "min_score": MIN_SCORE, "min_chars": MIN_CHARS, "overlap": OVERLAP, "agree": AGREE,
            "occluded": OCCLUDED, "conflicts": CONFLICTS}


def read_text(store, rgb: np.ndarray) -> dict | None:
    """A query cover's text record, read now, when the store holds text (so stored covers have theirs);
    None otherwise or when the OCR package is missing (no veto then)."""
    if text_set(store) is None:
        return None
    from coversearch.errors import FeatureError
    from coversearch.features.text import CoverText

    global _READER
    try:
        if _READER is None:
            _READER = CoverText()
        return json.loads(_READER.prepare(rgb))
    except FeatureError:
        return None


_READER = None  # one OCR engine for the queries of this process (its models load once)
