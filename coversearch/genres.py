"""Genre names: one rule for every way a name comes in (label, ingest folders, manifests, links).

A name is stored in Unicode NFC, so a folder name written decomposed (as macOS writes "É") is the
same genre as one typed composed.  Invisible and look-alike characters are refused rather than
stored: a zero-width space or a direction mark makes "Pop\u200b" a second genre that looks
exactly like "Pop", and a no-break space does the same to "Pop Rock".  Lengths are bounded so a
careless paste cannot make a 100,000-character genre.
"""

from __future__ import annotations

import unicodedata

from coversearch.errors import CoverSearchError

MAX_GENRE_LENGTH = 100  # characters, after normalisation
SEPARATORS = ";|,"  # they separate genres in a manifest's genres column
# Control, format (zero-width, direction marks), surrogate, private-use and unassigned characters,
# and line / paragraph separators: invisible, or shown differently everywhere.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def genre_key(name: str) -> str:
    """The stored form of a genre name, for looking one up (no checks: a stored name is found as it is)."""
    return unicodedata.normalize("NFC", name or "").strip()


def _refused(char: str) -> str | None:
    category = unicodedata.category(char)
    if char in SEPARATORS:
        return f"{char!r} separates genres"
    if category == "Cc":
        return f"U+{ord(char):04X} is a control character (a line break, a tab or the like)"
    if category in _REFUSED_CATEGORIES:
        return f"U+{ord(char):04X} {unicodedata.name(char, '(unnamed)')} is an invisible or non-text character"
    if category == "Zs" and char != " ":
        return f"U+{ord(char):04X} {unicodedata.name(char, 'space')} looks like a space but is not one"
    return None


def check_genre(name: str, where: str = "") -> str:
    """``name`` as it is stored (NFC, outer spaces trimmed), or a one-line error (``where``: e.g. "labels.csv line 3")."""
    prefix = f"{where}: " if where else ""
    text = genre_key(name)
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if not text:
        raise CoverSearchError(f"{prefix}empty genre name")
    if len(text) > MAX_GENRE_LENGTH:
        raise CoverSearchError(f"{prefix}genre name {shown} is too long: {len(text):,} characters (at most {MAX_GENRE_LENGTH})")
    for char in text:
        reason = _refused(char)
        if reason:
            raise CoverSearchError(f"{prefix}bad genre name {shown}: {reason}")
    return text
