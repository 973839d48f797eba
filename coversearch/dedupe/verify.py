"""Keypoint verification of a candidate near-duplicate pair: do the two covers show the same picture?

The second stage of near-duplicate detection (``coversearch.dedupe.candidates`` is the first): a
global vector (pHash, vgg16) finds candidates; this decides the uncertain ones.  Each cover is
described by its ORB keypoints and a small grey picture (``coversearch.features.keypoints``).  Two
covers match when enough of their keypoints pair up (Lowe's ratio test) *and* agree on one
similarity transform (rotation, uniform scale, shift; RANSAC): ``inliers`` counts those.  A crop, a border, a resize, a small rotation, a sticker or a colour
change keeps most keypoints in place relative to each other, so copies score in the hundreds;
unrelated covers, however alike in colour or style, have no common geometry and score a handful.

A mirrored copy is not a similarity transform of its original; ``match`` also tries the mirrored
keypoints, so a mirror counts too.

Geometry alone cannot tell a copy from another release built on the same photograph (a compilation
reusing an album's picture with its own title, one label template printed for many singles): both
share hundreds of keypoints.  So ``match`` also lays one cover over the other with the transform
found, fits the brightness and contrast of one to the other, and measures, cell by cell of a 16 x 16
grid, how far the aligned pictures differ.  A copy differs only where it was edited (a sticker, the
lost corners of a rotation); another release differs wherever its lettering or layout does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from coversearch.dedupe import text_veto
from coversearch.dedupe.rules import Rule
from coversearch.errors import ImageError
from coversearch.features.keypoints import COMPARE_SIDE, MIN_KEYPOINTS, SIDE, KeypointFeatures, Keypoints, keypoints
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.imaging.thumbs import candidate_paths
from coversearch.index.threads import single_query_threads

RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
RANSAC_PX = 4.0  # reprojection error, in pixels at SIDE, for a keypoint pair to agree with the transform
CELL = 8  # pixels at COMPARE_SIDE: a 16 x 16 grid
MIN_INLIERS = 20  # keypoint pairs agreeing on one transform for a candidate to be confirmed
# ... and, laid over each other by that transform, at most MAX_DIFFERING of the cells they share
# may differ by more than CELL_DIFFERS grey levels: a sticker, not another release's lettering.
CELL_DIFFERS = 40
MAX_DIFFERING = 0.2
# A pHash sets exactly half its bits (the DCT coefficients above their median) unless coefficients
# tie, which in a picture happens only where they are exactly zero: a flat colour, a 1-pixel cover,
# two flat halves.  Such a hash says almost nothing (black hashes 1 bit from white), so a pair with
# one holds only when the pictures' mean grey levels, cell by cell of an 8 x 8 grid, differ by at
# most SAME_GREYS on average, whatever the distance.
SAME_GREYS = 10
PLAIN_GRID = 8

def _nearest_two(da: np.ndarray, db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances, positions in ``db``) of each row of ``da``'s two nearest rows of ``db`` by Hamming
    distance, nearest first: FAISS's popcount scan, about 3x faster than OpenCV's brute-force
    matcher on 32-byte ORB descriptors, with the same distances (and the same nearest row wherever
    it is unique, the only case the ratio test keeps).  On one OpenMP thread: a team of threads
    costs more to wake than 400 x 400 distances take (several ms against 0.2)."""
    import faiss

    da, db = np.ascontiguousarray(da, dtype=np.uint8), np.ascontiguousarray(db, dtype=np.uint8)
    distances = np.empty((len(da), 2), dtype=np.int32)
    positions = np.empty((len(da), 2), dtype=np.int64)
    heap = faiss.int_maxheap_array_t()
    heap.k, heap.nh = 2, len(da)
    heap.ids, heap.val = faiss.swig_ptr(positions), faiss.swig_ptr(distances)
    with single_query_threads():
        faiss.hammings_knn_hc(heap, faiss.swig_ptr(da), faiss.swig_ptr(db), len(db), da.shape[1], 1)
    return distances, positions


@dataclass
class Match:
    """How two covers' pictures agree: keypoint pairs on one similarity transform, and how much the
    aligned pictures differ per grid cell they share (computed on first use: a pair whose
    geometry already fails never needs it)."""

    inliers: int
    transform: np.ndarray | None = None  # 2 x 3, from a's points to b's, at SIDE scale
    mirrored: bool = False  # a's mirror image matched
    a_points: np.ndarray | None = None  # (inliers, 2) the agreeing keypoints at SIDE scale (a's mirrored when ``mirrored``)
    b_points: np.ndarray | None = None
    a_keypoints: Keypoints | None = field(default=None, repr=False)
    b_keypoints: Keypoints | None = field(default=None, repr=False)

    @cached_property
    def a_small(self) -> np.ndarray | None:
        """a at COMPARE_SIDE, mirrored when the mirror matched (read on first use: a stored record
        inflates its grey picture only then)."""
        small = None if self.a_keypoints is None else self.a_keypoints.small
        return small if small is None or not self.mirrored else np.ascontiguousarray(small[:, ::-1])

    @cached_property
    def b_small(self) -> np.ndarray | None:
        return None if self.b_keypoints is None else self.b_keypoints.small

    @cached_property
    def grid(self) -> np.ndarray | None:
        """Mean |difference| in grey levels (0-255) of each cell of b's grid, NaN where the aligned
        pictures do not share the cell; None without a transform."""
        if self.transform is None or self.a_small is None or self.b_small is None:
            return None
        return cell_grid(self.a_small, self.b_small, self.transform)

    @property
    def differences(self) -> np.ndarray | None:
        """Mean |difference| of each shared cell; None without a transform."""
        return None if self.grid is None else self.grid[~np.isnan(self.grid)]

    def differing(self, cell_differs: float) -> float:
        """Share of the shared cells whose mean difference exceeds ``cell_differs`` grey levels
        (1.0 when the two share no whole cell: nothing to compare)."""
        if self.differences is None or len(self.differences) == 0:
            return 1.0
        return float((self.differences > cell_differs).mean())


_NO_POINTS = np.zeros((0, 2), np.float32)
_LOG = logging.getLogger(__name__)


def _transform(pa: np.ndarray, da: np.ndarray | None, pb: np.ndarray, db: np.ndarray | None):
    """(inliers, 2 x 3 similarity transform from a's points to b's, a's and b's agreeing points) by
    ratio-tested matches and RANSAC."""
    if da is None or db is None or len(da) < MIN_KEYPOINTS or len(db) < MIN_KEYPOINTS:
        return 0, None, _NO_POINTS, _NO_POINTS
    distances, positions = _nearest_two(da, db)
    good = np.flatnonzero(distances[:, 0] < RATIO * distances[:, 1])  # query order, as the matcher lists them
    if len(good) < 4:
        return 0, None, _NO_POINTS, _NO_POINTS
    src = pa[good]
    dst = pb[positions[good, 0]]
    transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    if mask is None or transform is None:
        return 0, None, _NO_POINTS, _NO_POINTS
    agree = mask.ravel().astype(bool)
    return int(agree.sum()), transform, src[agree], dst[agree]


def cell_differences(a_small: np.ndarray, b_small: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The shared cells' values of ``cell_grid``, row by row."""
    grid = cell_grid(a_small, b_small, transform)
    return grid[~np.isnan(grid)]


def cell_grid(a_small: np.ndarray, b_small: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Mean absolute grey difference of each CELL x CELL cell of ``b_small`` that ``a_small``, moved by
    ``transform`` (a 2 x 3 matrix at SIDE scale), covers (at least 80% of it; NaN elsewhere): the
    larger of the two pictures' differences from each other's fit (``_unexplained``)."""
    moved = transform.astype(np.float64).copy()
    moved[:, 2] *= COMPARE_SIDE / SIDE  # the same transform at the comparison's scale
    h, w = b_small.shape
    a = cv2.warpAffine(a_small.astype(np.float32), moved, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(a_small.shape, np.float32), moved, (w, h), flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0.5  # edges interpolate with the outside
    gh, gw = h // CELL, w // CELL
    if inside.sum() < CELL * CELL:
        return np.full((gh, gw), np.nan, np.float32)
    # A little blur: half a pixel of misalignment on a sharp edge is not a difference.
    a = cv2.GaussianBlur(a, (3, 3), 0.6)
    b = cv2.GaussianBlur(b_small.astype(np.float32), (3, 3), 0.6)
    # Each way round: a flat picture explains anything laid over it by a gain near 0.
    residual = np.maximum(_unexplained(b, a, inside), _unexplained(a, b, inside))
    cells = lambda x: x[: gh * CELL, : gw * CELL].reshape(gh, CELL, gw, CELL).sum(axis=(1, 3))  # noqa: E731
    covered = cells(inside.astype(np.float32))
    whole = covered >= 0.8 * CELL * CELL
    grid = np.full((gh, gw), np.nan, np.float32)
    grid[whole] = cells(residual)[whole] / covered[whole]
    return grid


def _unexplained(target: np.ndarray, source: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """|target - (gain * source + offset)| over ``inside``, with one gain and offset fitted by least
    squares: a brightness or contrast change is not a difference.  Fitted twice, the second time
    without the pixels the first fit explains worst (a sticker, a title), so that what was edited
    does not bend the fit over what was not."""
    fit = inside
    for _ in range(2):
        gain, offset = _line_fit(source[fit], target[fit])
        residual = np.abs(target - (gain * source + offset)) * inside
        fit = inside & (residual <= max(np.percentile(residual[inside], 75), 1.0))
    return residual


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(gain, offset) minimising |y - (gain * x + offset)|^2: the normal equations in closed form,
    summed without BLAS (a least-squares solver, or a BLAS dot product, wakes BLAS threads that cost
    more than these 16k points)."""
    n = len(x)
    if n == 0:
        return 0.0, 0.0
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    sx, sy, sxx, sxy = x64.sum(), y64.sum(), (x64 * x64).sum(), (x64 * y64).sum()
    spread = n * sxx - sx * sx
    if spread <= 1e-9 * max(n * sxx, 1.0):  # a flat source: the mean explains what it can
        return 0.0, float(sy / n)
    gain = (n * sxy - sx * sy) / spread
    return float(gain), float((sy - gain * sx) / n)


def match(a: Keypoints, b: Keypoints) -> Match:
    """How ``a`` and ``b`` agree (``a`` as it is or mirrored, when described mirrored too: the
    orientation with more inliers), and what the aligned comparison needs."""
    inliers, transform, pa, pb = _transform(a.points, a.descriptors, b.points, b.descriptors)
    mirrored = False
    if a.mirrored is not None:
        flipped = _transform(a.mirrored_points, a.mirrored, b.points, b.descriptors)
        if flipped[0] > inliers:
            (inliers, transform, pa, pb), mirrored = flipped, True
    return Match(inliers, transform, mirrored, pa, pb, a_keypoints=a, b_keypoints=b)


# -- over a store ----------------------------------------------------------------------------------
class KeypointCache:
    """Keypoints of stored albums (``coversearch.features.keypoints``): read from the store's
    keypoints records (computed at ingest), else, for an album ingested without them, extracted from
    its file (``decoded`` counts those: `ingest --features keypoints` stores them).

    An album whose record is missing and whose file cannot be found or decoded, or that has too few
    keypoints (a flat cover), cannot be verified: pairs that need it are not confirmed
    (``unreadable`` counts the albums without keypoints).

    At most ``keep`` albums stay decoded (about 30 KB each): ``verdicts`` forgets those the next
    batch of pairs does not need once more are held, so a million albums' verification stays
    within memory.  ``records``, when given, reads records instead of the store (album ids -> bytes).
    """

    KEEP = 20_000

    def __init__(self, store, *, keep: int = KEEP, records=None):
        self.store = store
        self.keep = keep
        self._keypoints: dict[int, Keypoints | None] = {}
        self.unreadable = 0
        self.decoded = 0
        self._read = records
        self._text = text_veto.text_set(store) if store is not None else None  # for the text veto
        if records is None and store is not None:
            held = [fs for fs in store.feature_sets(kind=KeypointFeatures.kind) if fs.name == KeypointFeatures.name]
            if held:
                newest = max(held, key=lambda fs: fs.version)
                self._read = lambda ids: store.load_records(newest, ids)

    def load(self, album_ids, pool=None) -> None:
        """Read (and decode, in ``pool``'s threads when given) the keypoints of those not held yet."""
        wanted = sorted({int(a) for a in album_ids} - set(self._keypoints))
        if not wanted:
            return
        if self._read is not None:
            found = self._read(wanted)
            albums = list(found)
            decode = Keypoints.from_bytes
            records = pool.map(decode, [found[a] for a in albums], chunksize=64) if pool is not None else map(decode, found.values())
            self._keypoints.update(zip(albums, records))
        missing = [a for a in wanted if a not in self._keypoints]
        for album_id, album in (self.store.albums(missing).items() if missing and self.store is not None else ()):
            found = None
            for path in candidate_paths(self.store, album):
                try:
                    found = keypoints(decode_image(read_bytes(path), draft=(SIDE, SIDE)).rgb)
                    break
                except (OSError, ImageError):
                    continue
            self.unreadable += found is None
            self.decoded += found is not None
            self._keypoints[album_id] = found
        for album_id in wanted:
            self._keypoints.setdefault(album_id, None)
        if self._text is not None:
            readable = [a for a in wanted if self._keypoints[a] is not None]
            for album_id, record in text_veto.stored_texts(self.store, self._text, readable).items():
                self._keypoints[album_id].text = record

    def forget_all_but(self, album_ids) -> None:
        """Drop the decoded keypoints of every album but ``album_ids`` when more than ``keep`` are held."""
        if len(self._keypoints) > self.keep:
            needed = {int(a) for a in album_ids}
            self._keypoints = {a: k for a, k in self._keypoints.items() if a in needed}

    def get(self, album_id: int) -> Keypoints | None:
        self.load([album_id])
        return self._keypoints[int(album_id)]


def verdict(query: Keypoints | None, stored: Keypoints | None) -> tuple[int, float, bool]:
    """(inliers, share of differing cells, confirmed) of two covers: confirmed when their keypoints
    agree on one transform and, laid over each other by it, they differ only in a few cells (the
    share is 1.0 when the geometry already fails: the aligned comparison is then not made)."""
    if query is None or stored is None:
        return 0, 1.0, False
    found = match(query, stored)
    if found.inliers < MIN_INLIERS:
        return int(found.inliers), 1.0, False
    differing = found.differing(CELL_DIFFERS)
    return int(found.inliers), float(differing), differing <= MAX_DIFFERING and not text_veto.vetoes(query, stored, found)


def confirmed(query, stored) -> bool:
    """Whether two covers (``features.keypoints.Keypoints``) show one picture (``verdict``)."""
    return verdict(query, stored)[2]


def uninformative(rule: Rule, vectors: np.ndarray) -> np.ndarray:
    """Which ``vectors`` say too little for ``rule`` to judge a pair by its distance: hashes with
    fewer than half their bits set (tied coefficients, see SAME_GREYS).  Other metrics: none."""
    vectors = np.asarray(vectors)
    if rule.metric != "hamming" or len(vectors) == 0:
        return np.zeros(len(vectors), dtype=bool)
    return np.count_nonzero(vectors > 0.5, axis=1) < vectors.shape[1] // 2


def uninformative_ids(store, rule: Rule, album_ids) -> set[int]:
    """Those of the stored ``album_ids`` whose ``rule`` vector is ``uninformative``."""
    if rule.metric != "hamming" or len(album_ids) == 0:
        return set()
    ids, vectors = store.load_embeddings(store.feature_set(rule.feature), sorted({int(a) for a in album_ids}))
    return set(ids[uninformative(rule, vectors)].tolist())


def _grey_grid(k: Keypoints) -> np.ndarray:
    return cv2.resize(k.small.astype(np.float32), (PLAIN_GRID, PLAIN_GRID), interpolation=cv2.INTER_AREA)


def same_pictures(a: Keypoints | None, b: Keypoints | None) -> bool:
    """Whether two pictures too plain to verify by keypoints show the same grey levels in the same places."""
    if a is None or b is None or a.small is None or b.small is None:
        return False
    return float(np.abs(_grey_grid(a) - _grey_grid(b)).mean()) <= SAME_GREYS


def plain_verdict(a: Keypoints | None, b: Keypoints | None) -> tuple[int, float, bool]:
    """``verdict`` for a pair with an ``uninformative`` side: the pictures themselves decide."""
    same = same_pictures(a, b)
    return 0, 0.0 if same else 1.0, same


BATCH = 4096  # pairs whose albums are read and decoded together (at most 2 x BATCH albums held besides ``keep``)


def verdicts(pairs, cache: KeypointCache, plain=None, *, threads: int | None = None) -> list[tuple[int, float, bool]]:
    """``verdict`` of each pair (a, b) of album ids, in order (``plain_verdict`` where ``plain[i]``):
    a BATCH of pairs at a time, each album's keypoints read in one query and decoded once for the
    batch, the pairs shared among ``threads`` threads (default: every core; OpenCV, FAISS and zlib
    release the GIL for their work)."""
    from concurrent.futures import ThreadPoolExecutor

    from coversearch.index.threads import available_cores

    pairs = [(int(a), int(b)) for a, b in pairs]
    plain = [False] * len(pairs) if plain is None else [bool(p) for p in plain]
    threads = max(1, threads or available_cores())
    out: list[tuple[int, float, bool]] = []

    def judge(chunk):
        return [(plain_verdict if flat else verdict)(cache._keypoints[a], cache._keypoints[b]) for (a, b), flat in chunk]

    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    started = time.perf_counter()
    try:
        for start in range(0, len(pairs), BATCH):
            if start and start % (64 * BATCH) == 0:
                _LOG.info("verified %d of %d pairs, %.3f ms a pair", start, len(pairs), (time.perf_counter() - started) * 1000 / start)
            batch = list(zip(pairs[start : start + BATCH], plain[start : start + BATCH]))
            albums = {x for (a, b), _ in batch for x in (a, b)}
            cache.forget_all_but(albums)
            cache.load(albums, pool)
            if pool is None:
                out.extend(judge(batch))
            else:
                step = max(16, len(batch) // (4 * threads))
                for found in pool.map(judge, [batch[i : i + step] for i in range(0, len(batch), step)]):
                    out.extend(found)
    finally:
        if pool is not None:
            pool.shutdown()
    return out


def verify_pairs(rule: Rule, a: np.ndarray, b: np.ndarray, d: np.ndarray, cache: KeypointCache,
                 plain: np.ndarray | None = None) -> np.ndarray:
    """Which pairs (a[i], b[i]) at distances d[i] hold: within ``rule.sure`` as they are, beyond it
    only when keypoint verification confirms them; a pair where ``plain[i]`` (one side's vector is
    ``uninformative``) only when ``same_pictures``, at any distance."""
    keep = np.asarray([rule.accepts(x) for x in d.tolist()], dtype=bool)
    flat = np.zeros(len(d), dtype=bool) if plain is None else np.asarray(plain, dtype=bool)
    todo = np.flatnonzero(~keep | flat)
    if len(todo):
        found = verdicts(zip(a[todo].tolist(), b[todo].tolist()), cache, flat[todo])
        keep[todo] = [held for _, _, held in found]
    return keep
