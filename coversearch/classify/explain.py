"""Why this genre: occlusion sensitivity of a trained model's top genre over a cover.

Grey out one patch of the cover at a time (its mean colour), send every masked copy through the
whole pipeline the model was trained on (decode -> each feature -> the model, calibration
included), and record how much the top genre's probability drops.  Patches overlap (a quarter of
each side, moved by an eighth: 7 x 7 positions); a pixel's heat is the mean drop of the patches
covering it.  All masked copies go through the feature extractors as one batch (one forward pass
of the shared VGG16 backbone per batch), so any model works, the default ensemble with its XGBoost
members included.

What it shows is the pipeline's sensitivity: which regions, once hidden, move the model's score
for that genre.  It does not show what makes a cover belong to a genre, and a region can matter
through the colour histogram (hiding it changes the colours) as much as through the CNN.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from coversearch.classify.data import stored_matrix
from coversearch.classify.model import ModelError, TrainedModel
from coversearch.features.embedder import Embedder
from coversearch.features.registry import FEATURE_NAMES, get_extractor

# Masked copies are made at this size at most (longer side): the 224-px CNN input and an 8x8x8
# histogram lose nothing to it, and 50 copies of a 3000-px cover would cost 1.3 GB.
WORK_SIDE = 448
PATCH_FRACTION = 0.25
STRIDE_FRACTION = 0.125
BATCH = 64


@dataclass
class Explanation:
    genre: str  # the top genre (before any "unknown" threshold)
    probability: float  # its calibrated probability on the whole cover
    heat: np.ndarray  # (height, width) float32 at the cover's size: mean probability drop when hidden
    patches: int  # masked copies scored
    peak: tuple[int, int]  # (row, column) of the hottest patch's centre, in the cover's pixels

    def png(self, rgb: np.ndarray) -> bytes:
        return overlay_png(rgb, self.heat)


def model_embedder(model: TrainedModel, vgg16_weights=None) -> Embedder:
    """An embedder for the model's features, refusing extractors other than the ones it was trained on."""
    extractors = []
    for ref in model.card.features:
        if ref.name not in FEATURE_NAMES:
            raise ModelError(f"model {model.card.name!r} reads {ref.name!r}, a feature set imported from outside coversearch: "
                             "a cover cannot be re-embedded for it, so it cannot be explained")
        extractor = get_extractor(ref.name, vgg16_weights=vgg16_weights)
        if extractor.version != ref.version or extractor.model_fingerprint() != ref.model_fingerprint:
            raise ModelError(f"model {model.card.name!r} needs {ref.name} v{ref.version} from {ref.model_fingerprint}; "
                             f"the extractor here is v{extractor.version} from {extractor.model_fingerprint()}")
        extractors.append(extractor)
    return Embedder(extractors)


def _positions(side: int, patch_fraction: float, stride_fraction: float) -> tuple[int, list[int]]:
    patch = max(1, round(side * patch_fraction))
    stride = max(1, round(side * stride_fraction))
    starts = list(range(0, max(1, side - patch) + 1, stride))
    if starts[-1] + patch < side:
        starts.append(side - patch)
    return patch, starts


def occlusion(
    model: TrainedModel,
    embedder: Embedder,
    rgb: np.ndarray,
    genre: str | None = None,
    *,
    patch_fraction: float = PATCH_FRACTION,
    stride_fraction: float = STRIDE_FRACTION,
) -> Explanation:
    """The occlusion heat map of ``genre`` (default: the model's top genre for the cover); patches
    are ``patch_fraction`` of each side, ``stride_fraction`` apart."""
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    work = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else np.ascontiguousarray(rgb)
    wh, ww = work.shape[:2]
    fill = work.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    ph, rows = _positions(wh, patch_fraction, stride_fraction)
    pw, cols = _positions(ww, patch_fraction, stride_fraction)
    boxes = [(r, c) for r in rows for c in cols]

    def score(images: Sequence[np.ndarray]) -> np.ndarray:
        return model.predict_proba(model.features_matrix(embedder.embed(list(images))))

    base = score([work])[0]
    classes = model.classes
    if genre is None:
        top = int(np.argmax(base))
    elif genre in classes:
        top = classes.index(genre)
    else:
        raise ModelError(f"model {model.card.name!r} has no genre {genre!r} (genres: {', '.join(classes)})")
    drops = np.empty(len(boxes), dtype=np.float64)
    for start in range(0, len(boxes), BATCH):
        masked = []
        for r, c in boxes[start : start + BATCH]:
            copy = work.copy()
            copy[r : r + ph, c : c + pw] = fill
            masked.append(copy)
        drops[start : start + len(masked)] = base[top] - score(masked)[:, top]
    total = np.zeros((wh, ww), dtype=np.float64)
    count = np.zeros((wh, ww), dtype=np.float64)
    for (r, c), drop in zip(boxes, drops):
        total[r : r + ph, c : c + pw] += drop
        count[r : r + ph, c : c + pw] += 1
    heat_work = (total / np.maximum(count, 1)).astype(np.float32)
    heat = cv2.resize(heat_work, (width, height), interpolation=cv2.INTER_LINEAR) if scale < 1 else heat_work
    r, c = boxes[int(np.argmax(drops))]
    peak = (int((r + ph / 2) / scale), int((c + pw / 2) / scale))
    return Explanation(classes[top], float(base[top]), heat, len(boxes), peak)


def overlay_png(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> bytes:
    """The cover with the heat map over it, as PNG bytes of the cover's size.

    Only drops count (a patch whose hiding raises the genre's score is not "why"); the hottest
    pixel is full colour, a zero drop leaves the cover as it is."""
    from matplotlib import colormaps
    from PIL import Image

    positive = np.clip(heat, 0, None)
    peak = float(positive.max())
    norm = positive / peak if peak > 0 else positive
    colours = (colormaps["inferno"](norm)[..., :3] * 255).astype(np.float32)
    weight = (alpha * np.sqrt(norm))[..., None]
    mixed = rgb.astype(np.float32) * (1 - weight) + colours * weight
    out = io.BytesIO()
    Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8)).save(out, format="PNG", optimize=False)
    return out.getvalue()


def most_confident_test_albums(store, model: TrainedModel) -> dict[str, tuple[int, float]]:
    """For each genre: the test-split album the model gives that genre with the highest calibrated
    probability, among those it ranks that genre first, from the stored vectors (genre -> (album id, p))."""
    from coversearch.classify.split import load_split

    feature_sets = model.check_store(store)
    split = load_split(store, model.card.split)
    if split is None:
        raise ModelError(f"the store has no split {model.card.split!r}, which model {model.card.name!r} was trained on")
    ids = np.asarray(sorted(split.album_ids("test")), dtype=np.int64)
    blocks = []
    for fs in feature_sets:
        held, rows = stored_matrix(store, fs, ids)
        ids = ids[np.isin(ids, held)]
        blocks.append((held, rows))
    if len(ids) == 0:
        return {}
    proba = model.predict_proba(np.hstack([rows[np.searchsorted(held, ids)] for held, rows in blocks]))
    top = proba.argmax(axis=1)
    out: dict[str, tuple[int, float]] = {}
    for g, genre in enumerate(model.classes):
        rows = np.flatnonzero(top == g)
        if len(rows):
            best = rows[np.argmax(proba[rows, g])]
            out[genre] = (int(ids[best]), float(proba[best, g]))
    return out
