"""Search by colour: one to three colours (with their shares of the cover) as a query in the
``hsv`` feature's space.

A stored ``hsv`` vector is OpenCV's 8x8x8 histogram of the cover's pixels over HSV, L2-normalised
(``features/hsv.py``).  A palette is the histogram of an imagined cover whose pixels are those
colours in those shares: each colour's share goes into the bin its pixels would fall in (the same
``cv2.cvtColor`` conversion and the same bin edges), then the vector is L2-normalised like the
stored ones.  The nearest stored histograms are then the covers made mostly of those colours.

``palette_of_image`` goes the other way (a cover's dominant colours, from its histogram's peaks),
so a palette taken from a stored cover can be checked to find that cover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.features.hsv import BINS, RANGES, HSVHistogram

MAX_COLOURS = 3
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
# Bin width per channel in OpenCV's 8-bit HSV units (hue 0-179, saturation and value 0-255).
_WIDTH = np.array([(RANGES[1] - RANGES[0]) / BINS[0], (RANGES[3] - RANGES[2]) / BINS[1], (RANGES[5] - RANGES[4]) / BINS[2]])


class ColourError(CoverSearchError):
    """A palette the user can fix."""


@dataclass(frozen=True)
class Colour:
    rgb: tuple[int, int, int]
    share: float  # of the palette, the shares summing to 1

    @property
    def hex(self) -> str:
        return "#%02x%02x%02x" % self.rgb


def parse_hex(text: str) -> tuple[int, int, int]:
    match = _HEX.match(text.strip())
    if match is None:
        raise ColourError(f"{text.strip()!r} is not a colour: write it as #rrggbb (e.g. #c0a000) or #rgb")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def parse_palette(text: str | None) -> list[Colour]:
    """``"#101010:0.6,#c0a000:0.4"`` -> colours with shares summing to 1.

    Shares are optional: colours without one split what the others leave of 1 equally (all
    without: equal shares).  Given shares are fractions in (0, 1]; when every colour has one and
    they do not sum to 1 they are taken as proportions.
    """
    if text is None or not text.strip():
        raise ColourError("no colours: give one to three, e.g. --colours \"#101010:0.6,#c0a000:0.4\"")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ColourError(f"empty colour in {text!r}: separate colours with single commas, e.g. \"#101010:0.6,#c0a000:0.4\"")
    if len(items) > MAX_COLOURS:
        raise ColourError(f"{len(items)} colours given; a palette has one to {MAX_COLOURS}")
    rgbs: list[tuple[int, int, int]] = []
    shares: list[float | None] = []
    for item in items:
        hex_part, sep, share_part = item.partition(":")
        rgbs.append(parse_hex(hex_part))
        if not sep:
            shares.append(None)
            continue
        try:
            share = float(share_part)
        except ValueError:
            raise ColourError(f"share {share_part.strip()!r} of {hex_part.strip()} is not a number: give a fraction in (0, 1], e.g. 0.4") from None
        if not np.isfinite(share) or not 0 < share <= 1:
            raise ColourError(f"share {share_part.strip()} of {hex_part.strip()} is out of range: give a fraction in (0, 1]")
        shares.append(share)
    given = [s for s in shares if s is not None]
    missing = len(shares) - len(given)
    if missing:
        left = 1.0 - sum(given)
        if left <= 1e-9:
            raise ColourError(
                f"the given shares already sum to {sum(given):g}, leaving nothing for the {missing} colour(s) without one"
            )
        shares = [s if s is not None else left / missing for s in shares]
    total = float(sum(shares))  # type: ignore[arg-type]
    return [Colour(rgb, float(s) / total) for rgb, s in zip(rgbs, shares)]  # type: ignore[arg-type]


def rgb_to_hsv(rgbs: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 RGB -> (n, 3) OpenCV 8-bit HSV, converted exactly as ``features/hsv.py`` converts pixels."""
    pixels = np.asarray(rgbs, dtype=np.uint8).reshape(1, -1, 3)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int64)


def hsv_bins(hsv: np.ndarray) -> np.ndarray:
    """Flat histogram bin of each (n, 3) HSV value: calcHist's uniform bins over ``RANGES``, row-major (h, s, v)."""
    lows = np.array(RANGES[0::2])
    idx = np.floor((hsv - lows) / _WIDTH).astype(np.int64)
    idx = np.clip(idx, 0, np.array(BINS) - 1)
    return (idx[:, 0] * BINS[1] + idx[:, 1]) * BINS[2] + idx[:, 2]


def palette_vector(colours: list[Colour]) -> np.ndarray:
    """The palette's ``hsv`` vector (512 float32, unit L2 norm): each share in its colour's bin."""
    if not colours:
        raise ColourError("no colours: give one to three")
    vector = np.zeros(HSVHistogram.dim, dtype=np.float64)
    bins = hsv_bins(rgb_to_hsv(np.array([c.rgb for c in colours])))
    np.add.at(vector, bins, [c.share for c in colours])
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def palette_of_image(rgb: np.ndarray, n: int = MAX_COLOURS) -> list[Colour]:
    """The ``n`` dominant colours of a decoded RGB image: its histogram's ``n`` fullest bins, each
    as the per-channel median HSV of its pixels (which stays inside the bin) and its share of the
    pixels (renormalised over the ``n``, as a palette's shares are)."""
    if not 1 <= n <= MAX_COLOURS:
        raise ColourError(f"a palette has one to {MAX_COLOURS} colours, not {n}")
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int64)
    bins = hsv_bins(hsv)
    counts = np.bincount(bins, minlength=HSVHistogram.dim)
    top = [int(b) for b in np.argsort(-counts, kind="stable")[:n] if counts[b] > 0]
    colours = []
    total = float(sum(counts[b] for b in top))
    for b in top:
        median = np.median(hsv[bins == b], axis=0).round().astype(np.uint8).reshape(1, 1, 3)
        rgb_of = cv2.cvtColor(median, cv2.COLOR_HSV2RGB).reshape(3)
        colour = tuple(int(v) for v in rgb_of)
        # HSV -> RGB -> HSV rounds; keep the bin's own pixel nearest the median if the trip left the bin.
        if hsv_bins(rgb_to_hsv(np.array([colour])))[0] != b:
            members = np.flatnonzero(bins == b)
            nearest = members[np.argmin(np.abs(hsv[members] - median.reshape(3)).sum(axis=1))]
            colour = tuple(int(v) for v in np.asarray(rgb).reshape(-1, 3)[nearest])
        colours.append(Colour(colour, counts[b] / total))  # type: ignore[arg-type]
    return colours


def format_palette(colours: list[Colour]) -> str:
    """The ``--colours`` text of a palette (what ``parse_palette`` reads back)."""
    return ",".join(f"{c.hex}:{c.share:.4f}" for c in colours)


def check_hsv_space(searcher) -> None:
    """Refuse a store whose ``hsv`` vectors were made otherwise than ``features/hsv.py`` makes them
    (another version, parameters, or imported): a palette vector would mean nothing there."""
    from coversearch.query.similar import check_extractor_matches

    check_extractor_matches(HSVHistogram(), searcher.feature_set)


def search_by_colours(searcher, colours: list[Colour], k: int, genre: str | None = None):
    """The ``k`` covers whose ``hsv`` histograms are nearest the palette's (a ``SimilarResult``)."""
    if searcher.feature_set.name != "hsv":
        raise ColourError(f"colour search runs in the hsv feature's space, not {searcher.feature_set.name}")
    check_hsv_space(searcher)
    return searcher.search_vector(palette_vector(colours), k, genre, label="colours " + format_palette(colours))


def find_by_colours(store, colours: list[Colour], *, k: int = 10, genre: str | None = None, index_dir=None, index_name=None):
    """``search_by_colours`` with the newest hsv index (or exact search), as ``find_similar`` picks one."""
    from coversearch.query.similar import SimilarSearcher

    searcher = SimilarSearcher.open(store, feature="hsv", index_dir=index_dir, index_name=index_name)
    return search_by_colours(searcher, colours, k, genre)
