"""Search covers by the words printed on them, and check catalogue metadata against those words.

Both read the ``text`` feature set the ingest stored (``features/text.py``): never the pixels.

Matching is approximate substring search on the compact form (no spaces), because OCR both
misreads letters and drops the spaces between words: "GORILLAZ DEMONDAYS" must answer "demon days"
and "demon dyas".  The distance of a query to a cover is the smallest edit distance between the
query and any stretch of the cover's text (Sellers' semi-global alignment); its similarity is
``1 - distance / len(query)``.  A query of several words is scored both as one phrase and word by
word (each word anywhere on the cover, weighted by its length), and the better of the two counts.

All covers are scanned at once: their compact texts joined into one array with a separator longer
than any query between them (crossing it costs more than matching nothing), one numpy pass per
query character.  About 0.1 s per query word for 5,000 covers on one core.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from coversearch.errors import CoverSearchError, FeatureError
from coversearch.features.text import compact, normalise, stretch_distances
from coversearch.store import Store
from coversearch.store.rows import TEXT_KIND, FeatureSet

TEXT_FEATURE = "text"
DEFAULT_MIN_SCORE = 0.7  # one wrong letter in four still matches; three in a six-letter word do not
MAX_QUERY_CHARS = 200
SEPARATOR = -1  # code point of no character: never equal to a query character


def text_feature_set(store: Store) -> FeatureSet:
    """The store's latest text set, or a clear error telling how to make it."""
    sets = [fs for fs in store.feature_sets(kind=TEXT_KIND) if fs.name == TEXT_FEATURE]
    if not sets:
        raise FeatureError("the store has no text read from covers: run `coversearch ingest ROOT --features text` "
                           "(with `pip install 'coversearch[text]'`)")
    return max(sets, key=lambda fs: fs.version)


@dataclass
class TextHit:
    album_id: int
    score: float  # 1: the query is printed on the cover exactly (case, accents, spaces, punctuation aside)
    matched: list[str] = field(default_factory=list)  # the cover's lines the query matched, as read

    def to_dict(self) -> dict[str, Any]:
        return {"album_id": self.album_id, "score": round(self.score, 3), "matched": self.matched}


class CoverTexts:
    """The text of every cover that has some, ready for approximate search."""

    def __init__(self, rows: Sequence[tuple[int, str, str, str]]):
        self.ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        self._lines_json = [r[1] for r in rows]
        self.plain = [r[2] for r in rows]
        self.compact = [r[3] for r in rows]
        self._row_of = {int(a): i for i, a in enumerate(self.ids)}
        self._codes: np.ndarray | None = None
        self._starts: np.ndarray | None = None
        self._pad = 0

    @classmethod
    def from_store(cls, store: Store) -> "CoverTexts":
        return cls(store.text_rows(text_feature_set(store)))

    def __len__(self) -> int:
        return len(self.ids)

    def lines(self, album_id: int) -> list[dict[str, Any]]:
        """The recognised lines of one cover (text, score, box), as stored."""
        row = self._row_of.get(int(album_id))
        return [] if row is None else json.loads(self._lines_json[row])["lines"]

    def text_of(self, album_id: int) -> str:
        row = self._row_of.get(int(album_id))
        return "" if row is None else self.plain[row]

    # -- the scan -----------------------------------------------------------------------------------
    def _layout(self, pad: int) -> None:
        """Every cover's compact text in one code-point array, ``pad`` separators before each."""
        if self._codes is not None and self._pad >= pad:
            return
        pad = max(pad, 32)
        parts, starts, at = [], [], 0
        gap = np.full(pad, SEPARATOR, dtype=np.int32)
        for text in self.compact:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.int32) if text else np.zeros(0, np.int32)
            parts += [gap, codes]
            starts.append(at + pad)
            at += pad + len(codes)
        parts.append(gap)
        self._codes = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        self._starts = np.asarray(starts, dtype=np.int64)
        self._pad = pad

    def distances(self, pattern: str) -> tuple[np.ndarray, np.ndarray]:
        """(per cover: the smallest edit distance between ``pattern`` and any stretch of its compact
        text, and where in that text the best stretch ends), by Sellers' algorithm over all covers at once."""
        m = len(pattern)
        if m == 0 or len(self) == 0:
            return np.zeros(len(self), np.int32), np.zeros(len(self), np.int64)
        self._layout(m + 1)
        n = len(self._codes)
        ends = stretch_distances(pattern, self._codes)[1:]
        # each cover's segment runs from its start to the next cover's separator run
        bounds = np.append(self._starts, n)
        best = np.minimum.reduceat(ends, self._starts) if len(self._starts) else np.zeros(0, np.int32)
        where = np.empty(len(self), dtype=np.int64)
        for k, (lo, hi) in enumerate(zip(self._starts, bounds[1:])):
            segment = ends[lo:hi]
            where[k] = int(np.argmin(segment)) if len(segment) else 0
        return np.minimum(best, m).astype(np.int32), where

    def similarities(self, query: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Per cover: the query's similarity in [0, 1] (the better of phrase and word by word), the
        phrase's alone, and for the phrase and each word where its best match ends."""
        words = [w for w in normalise(query).split() if w]
        phrase = "".join(words)
        if not phrase:
            raise CoverSearchError("the query has no letters or digits to look for")
        ends: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        d, end = self.distances(phrase)
        ends[phrase] = (end, d)
        phrase_score = 1.0 - d / len(phrase)
        score = phrase_score
        if len(words) > 1:
            total = np.zeros(len(self), dtype=np.float64)
            for word in dict.fromkeys(words):
                dw, end = self.distances(word)
                ends[word] = (end, dw)
                total += words.count(word) * len(word) * (1.0 - dw / len(word))
            score = np.maximum(phrase_score, total / len(phrase))
        return score, phrase_score, ends

    def matched_lines(self, album_id: int, pattern_ends: dict[str, tuple[int, int]]) -> list[str]:
        """The cover's lines (as read) under the best match of each pattern (pattern -> (where it ends,
        its distance)), in reading order."""
        lines = self.lines(album_id)
        spans, at = [], 0
        for line in lines:
            n = len(compact(line["text"]))
            spans.append((at, at + n))
            at += n
        hit: set[int] = set()
        for pattern, (end, distance) in pattern_ends.items():
            start = end - max(1, len(pattern) - distance) + 1  # the matched stretch is about this long
            for k, (lo, hi) in enumerate(spans):
                if lo <= end and hi > max(start, 0):
                    hit.add(k)
        return [lines[k]["text"] for k in sorted(hit)]

    def search(self, query: str, k: int = 10, allowed_ids: Iterable[int] | None = None,
               min_score: float = DEFAULT_MIN_SCORE) -> list[TextHit]:
        """The ``k`` covers whose printed text best matches ``query``, best first (ties: more of the
        query's words whole on the cover, then album id); only those scoring at least ``min_score``."""
        if k < 1:
            raise CoverSearchError("-k must be at least 1")
        query = query.strip()
        if not query:
            raise CoverSearchError("give the words to look for")
        if len(query) > MAX_QUERY_CHARS:
            raise CoverSearchError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        if len(self) == 0:
            return []
        score, phrase_score, ends = self.similarities(query)
        keep = score >= min_score
        if allowed_ids is not None:
            keep &= np.isin(self.ids, np.asarray(list(allowed_ids), dtype=np.int64))
        rows = np.flatnonzero(keep)
        words = normalise(query).split()
        phrase = "".join(words)
        whole = np.array([sum(w in self.plain[r].split() for w in words) for r in rows], dtype=np.int64)
        order = np.lexsort((self.ids[rows], -whole, -score[rows]))[:k]
        hits = []
        for i in order:
            r = rows[i]
            album_id = int(self.ids[r])
            # the lines under the phrase where it scored, else under each word
            found = [phrase] if phrase_score[r] >= score[r] else list(dict.fromkeys(words))
            hits.append(TextHit(album_id, float(score[r]), self.matched_lines(album_id, {p: (int(ends[p][0][r]), int(ends[p][1][r])) for p in found})))
        return hits


def search_text(store: Store, query: str, k: int = 10, genre: str | None = None,
                min_score: float = DEFAULT_MIN_SCORE, texts: CoverTexts | None = None) -> list[dict[str, Any]]:
    """The search as the CLI and the API report it: hits with album path, genres and the matched lines."""
    texts = texts if texts is not None else CoverTexts.from_store(store)
    allowed = store.album_ids_of_known_genre(genre) if genre else None
    hits = texts.search(query, k=k, allowed_ids=allowed, min_score=min_score)
    albums = store.albums([h.album_id for h in hits]) if hits else {}
    out = []
    for rank, hit in enumerate(hits, start=1):
        album = albums.get(hit.album_id, {})
        out.append({"rank": rank, **hit.to_dict(), "path": album.get("path"), "genres": album.get("genres") or [],
                    "artist": album.get("artist"), "title": album.get("title"), "text": texts.text_of(hit.album_id)})
    return out


# -- metadata check ----------------------------------------------------------------------------------
MATCH_AT = 0.75  # the artist or the title printed at least this closely: the metadata agrees
WORD_MATCH_AT = 0.85  # or one of their words of 4+ letters this closely ("HARRIS" for Emmylou Harris)
LEGIBLE_SCORE = 0.8  # lines read at least this surely count as legible text
LEGIBLE_CHARS = 5  # fewer legible letters and digits than this (boilerplate aside): "unknown"
# Printed on covers of every artist: they say nothing about whose record it is.
BOILERPLATE = tuple(compact(p) for p in (
    "parental advisory", "explicit content", "explicit lyrics", "stereo", "mono", "remastered", "digitally remastered",
    "original soundtrack", "original motion picture soundtrack", "limited edition", "deluxe edition", "side a", "side b",
))
STOPWORDS = frozenset({"the", "a", "an", "and", "of", "with", "feat", "featuring", "presents", "vs"})


@dataclass
class MetadataVerdict:
    album_id: int
    path: str
    verdict: str  # "match", "mismatch" or "unknown" (no legible text: nothing to contradict)
    score: float  # how surely the printed text contradicts the metadata: 1 - the best similarity (0 unless mismatch)
    artist: str | None
    title: str | None
    artist_similarity: float | None
    title_similarity: float | None
    cover_text: str  # what the cover says (its legible lines)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("score", "artist_similarity", "title_similarity"):
            out[key] = None if out[key] is None else round(out[key], 3)
        return out


def legible_text(lines: Sequence[dict[str, Any]]) -> str:
    """The cover's surely-read lines, as plain text, in reading order."""
    return " ".join(line["text"] for line in lines if line["score"] >= LEGIBLE_SCORE)


def _legible_chars(text: str) -> int:
    rest = compact(text)
    for phrase in BOILERPLATE:
        rest = rest.replace(phrase, "")
    return len(rest)


def _field_query(value: str | None) -> str | None:
    """The words of an artist or title to look for: stop words dropped unless nothing else is left."""
    words = normalise(value or "").split()
    kept = [w for w in words if w not in STOPWORDS] or words
    return " ".join(kept) or None


def check_album(texts: CoverTexts, album_id: int, path: str, artist: str | None, title: str | None) -> MetadataVerdict:
    """Does the text printed on the cover agree with its artist / title?"""
    lines = texts.lines(album_id)
    shown = legible_text(lines)
    sims: dict[str, float | None] = {"artist": None, "title": None}
    if _legible_chars(shown) < LEGIBLE_CHARS:
        return MetadataVerdict(album_id, path, "unknown", 0.0, artist, title, None, None, shown)
    one = CoverTexts([(album_id, "", normalise(shown), compact(shown))])
    for key, value in (("artist", artist), ("title", title)):
        query = _field_query(value)
        if query:
            sims[key] = float(one.similarities(query)[0][0])
    known = [s for s in sims.values() if s is not None]
    if not known:
        return MetadataVerdict(album_id, path, "unknown", 0.0, artist, title, None, None, shown)
    best = max(known)
    # Covers often print only part of it (a surname, the title's first word): one long word suffices.
    words = {w for value in (artist, title) for w in (_field_query(value) or "").split() if len(w) >= 4}
    word_best = max((1.0 - float(one.distances(w)[0][0]) / len(w) for w in words), default=0.0)
    verdict = "match" if best >= MATCH_AT or word_best >= WORD_MATCH_AT else "mismatch"
    return MetadataVerdict(album_id, path, verdict, 0.0 if verdict == "match" else 1.0 - best, artist, title,
                           sims["artist"], sims["title"], shown)


def check_metadata(texts: CoverTexts, catalogue: Iterable[tuple[int, str | None, str | None, str]]) -> list[MetadataVerdict]:
    """A verdict for every (album id, artist, title, path): mismatches first (surest first), then unknown, then match."""
    rank = {"mismatch": 0, "unknown": 1, "match": 2}
    verdicts = [check_album(texts, a, path, artist, title) for a, artist, title, path in catalogue]
    return sorted(verdicts, key=lambda v: (rank[v.verdict], -v.score, v.album_id))


def catalogue_from_store(store: Store) -> list[tuple[int, str | None, str | None, str]]:
    """(album id, artist, title, path) of every stored album the ingest was given an artist or title for."""
    return store.album_metadata()


def catalogue_from_manifest(store: Store, manifest: Path) -> tuple[list[tuple[int, str | None, str | None, str]], list[str]]:
    """(album id, artist, title, path) from a CSV with ``path`` and ``artist`` and/or ``title`` columns
    (paths relative to the CSV's folder), matched to the store's files; and the paths the store lacks."""
    import csv

    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CoverSearchError(f"cannot read manifest {manifest}: {exc}") from None
    header = set(rows[0]) if rows else set()
    if rows and ("path" not in header or not ({"artist", "title"} & header)):
        raise CoverSearchError(f"manifest {manifest} needs a header with 'path' and 'artist' and/or 'title' columns")
    files = {os.path.abspath(p): a for p, a in store.known_files().items()}
    base = Path(manifest).resolve().parent
    found, missing = [], []
    for row in rows:
        text = (row.get("path") or "").strip()
        if not text:
            continue
        path = os.path.abspath(text if Path(text).is_absolute() else base / text)
        album_id = files.get(path)
        if album_id is None:
            missing.append(text)
            continue
        artist = (row.get("artist") or "").strip() or None
        title = (row.get("title") or "").strip() or None
        if artist or title:
            found.append((album_id, artist, title, path))
    return found, missing
