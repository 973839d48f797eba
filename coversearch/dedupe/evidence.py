"""Evidence a person can check for a near-duplicate group: each joining pair's covers side by side,
the keypoints that agree on one transform joined by lines, the cells where the aligned pictures
differ outlined, and the figures (distances, inliers, share of differing cells).

The figures come from the stored keypoints (``features.keypoints``); only the picture decodes the
covers' files, for their colours (the stored grey picture stands in for a file that is gone).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from coversearch.dedupe.groups import DuplicateGroup
from coversearch.dedupe.verify import CELL, CELL_DIFFERS, MAX_DIFFERING, MIN_INLIERS, KeypointCache, match
from coversearch.errors import CoverSearchError
from coversearch.features.keypoints import COMPARE_SIDE, SIDE
from coversearch.imaging.thumbs import decode_album

MAX_PAIRS = 6  # rows in one picture: a group's first pairs (all are in the figures)
GAP = 24
TEXT = 34  # pixels under each row for its figures
INK, AGREE, DIFFER = (20, 20, 20), (40, 190, 60), (230, 40, 40)


@dataclass
class PairEvidence:
    a: int
    b: int
    distances: dict[str, float]  # feature -> distance, for the rules that joined the pair
    inliers: int  # keypoints agreeing on one transform (MIN_INLIERS needed)
    differing: float  # share of the shared cells differing by more than CELL_DIFFERS grey levels
    differing_cells: int
    shared_cells: int
    confirmed: bool  # the keypoint verdict (a pair within a sure distance needs none)
    mirrored: bool
    drawn_matches: int = 0  # lines drawn in the picture

    def to_dict(self) -> dict:
        return asdict(self)


def pair_evidence(cache: KeypointCache, group: DuplicateGroup) -> list[tuple[PairEvidence, object]]:
    """(figures, match) of each pair that joined ``group``, in the group's pair order."""
    by_pair: dict[tuple[int, int], dict[str, float]] = {}
    for a, b, feature, distance in group.pairs:
        by_pair.setdefault((a, b), {})[feature] = distance
    out = []
    for (a, b), distances in by_pair.items():
        ka, kb = cache.get(a), cache.get(b)
        if ka is None or kb is None:
            out.append((PairEvidence(a, b, distances, 0, 1.0, 0, 0, False, False), None))
            continue
        found = match(ka, kb)
        grid = found.grid
        shared = 0 if grid is None else int((~np.isnan(grid)).sum())
        differ = 0 if grid is None else int(np.nansum(grid > CELL_DIFFERS))
        differing = found.differing(CELL_DIFFERS)
        ok = found.inliers >= MIN_INLIERS and differing <= MAX_DIFFERING
        out.append((PairEvidence(a, b, distances, int(found.inliers), round(differing, 4), differ, shared, ok, found.mirrored), found))
    return out


def _cover(store, album_id: int, fallback) -> Image.Image:
    """The cover at SIDE pixels on its longer side (the keypoints' scale), in colour when its file reads."""
    rgb = decode_album(store, store.albums([album_id]).get(album_id, {}))
    if rgb is None:
        if fallback is None or fallback.small is None:
            return Image.new("RGB", (SIDE, SIDE), (200, 200, 200))
        img = Image.fromarray(fallback.small).convert("RGB")
    else:
        img = Image.fromarray(rgb)
    scale = SIDE / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


def draw_evidence(store, group: DuplicateGroup, evidence: list[tuple[PairEvidence, object]]) -> bytes:
    """A PNG: one row per pair (at most MAX_PAIRS), a's cover left, b's right."""
    if not evidence:
        raise CoverSearchError(f"group {group.group} has no pair to show")
    cache_images: dict[int, Image.Image] = {}
    rows = evidence[:MAX_PAIRS]
    width = 2 * SIDE + 3 * GAP
    height = len(rows) * (SIDE + TEXT + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    keypoints_of = KeypointCache(store)
    for row, (figures, found) in enumerate(rows):
        top = GAP + row * (SIDE + TEXT + GAP)
        left_a, left_b = GAP, 2 * GAP + SIDE
        for album_id, left in ((figures.a, left_a), (figures.b, left_b)):
            if album_id not in cache_images:
                cache_images[album_id] = _cover(store, album_id, keypoints_of.get(album_id))
            img = cache_images[album_id]
            if album_id == figures.a and figures.mirrored:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # the points were found on the mirror image
            canvas.paste(img, (left, top))
        if found is not None and found.grid is not None:
            cell = CELL * SIDE / COMPARE_SIDE
            for r, c in zip(*np.nonzero(np.nan_to_num(found.grid, nan=0.0) > CELL_DIFFERS)):
                x, y = left_b + c * cell, top + r * cell
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=DIFFER, width=2)
        if found is not None and found.a_points is not None and len(found.a_points):
            drawn = 0
            for (xa, ya), (xb, yb) in zip(found.a_points, found.b_points):
                draw.line((left_a + xa, top + ya, left_b + xb, top + yb), fill=AGREE, width=1)
                for x, y in ((left_a + xa, top + ya), (left_b + xb, top + yb)):
                    draw.ellipse((x - 2, y - 2, x + 2, y + 2), outline=AGREE)
                drawn += 1
            figures.drawn_matches = drawn
        how = ", ".join(f"{f} {d}" for f, d in figures.distances.items())
        verdict = "same picture" if figures.confirmed else "not confirmed by keypoints"
        draw.text((left_a, top + SIDE + 4), f"#{figures.a} vs #{figures.b}{' (mirrored)' if figures.mirrored else ''}: {how}", fill=INK)
        draw.text((left_a, top + SIDE + 18), f"{figures.inliers} inliers (>= {MIN_INLIERS}), {figures.differing_cells}/"
                  f"{figures.shared_cells} cells differ ({figures.differing:.0%}, <= {MAX_DIFFERING:.0%}): {verdict}", fill=INK)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def group_evidence(store, result, group_number: int) -> tuple[DuplicateGroup, list[tuple[PairEvidence, object]]]:
    """Group ``group_number`` (1 = largest) of a dedupe result, with each pair's evidence."""
    found = [g for g in result.groups if g.group == group_number]
    if not found:
        raise CoverSearchError(f"no group {group_number}: the store has {len(result.groups)} near-duplicate groups (1 = largest)")
    return found[0], pair_evidence(KeypointCache(store), found[0])
