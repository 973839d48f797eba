"""The words printed on a cover: the ``text`` feature set.

Per cover, the lines an OCR engine reads (text, confidence, box) and two searchable forms of all
of them: ``plain`` (case-folded, accents stripped, punctuation dropped, one space between words)
and ``compact`` (``plain`` without spaces, because OCR often loses the spaces between stylised
words: "GORILLAZ DEMONDAYS").  Search (``coversearch/query/text.py``) and the metadata check read
these forms from the store; nothing re-reads the pixels after ingest.

The engine is RapidOCR (PP-OCRv6 small detection and recognition, ONNX models shipped inside the
``rapidocr`` wheel, run by onnxruntime; no download at run time).  ``rapidocr`` depends on
``opencv-python-headless``, like this project; the older ``rapidocr-onnxruntime`` package pulls
``opencv-python``, which would overwrite the same ``cv2`` module.  Install: ``pip install
'coversearch[text]'``.

Unlike the vector features, the output is a record, not a vector: the extractor says so with
``kind = "text"`` and the store keeps it in a table of its own (``text_<id>``).  The OCR runs in
``prepare`` (per image, in the ingest's decode threads or Ray's read tasks, one single-threaded
engine per thread), so it overlaps with the VGG16 forward pass of the batch before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import unicodedata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coversearch.errors import FeatureError

TEXT_HINT = "the text feature needs RapidOCR: pip install 'coversearch[text]' (rapidocr and onnxruntime)"

# Measured on the 100-cover ground truth (benchmarks/bench_text.py): the detector sees the cover with
# its shorter side scaled to this many pixels.  RapidOCR's default (736) upscales a 300 px cover
# about 6x in area, for little more recall.
DET_SIDE = 480
MIN_SCORE = 0.5  # lines the recogniser is less sure of are dropped (RapidOCR's own default)
USE_ANGLE_CLASSIFIER = False  # covers are rarely upside down; the classifier costs time and reads nothing more


def normalise(text: str) -> str:
    """Searchable form: accents stripped, case-folded, apostrophes and full stops dropped (N.W.A -> nwa,
    DON'T -> dont), other punctuation a space, one space between words."""
    decomposed = unicodedata.normalize("NFKD", text)
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch.isalnum():
            out.append(ch.casefold())
        elif ch in "'’`.":
            continue
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def compact(text: str) -> str:
    """``normalise`` without spaces."""
    return normalise(text).replace(" ", "")


def stretch_distances(pattern: str, codes: np.ndarray) -> np.ndarray:
    """Sellers' algorithm: at each position j of ``codes`` (code points), the smallest edit distance
    between ``pattern`` and a stretch of ``codes`` ending there (j = 0: before the first), the
    stretch free to start anywhere.  One numpy pass per character of ``pattern``."""
    n = len(codes)
    offsets = np.arange(n + 1, dtype=np.int32)
    row = np.zeros(n + 1, dtype=np.int32)
    for i, ch in enumerate(pattern, start=1):
        candidate = np.empty(n + 1, dtype=np.int32)
        candidate[0] = i
        np.minimum(row[:-1] + (codes != ord(ch)), row[1:] + 1, out=candidate[1:])
        # insertions along the codes: D[j] = min_k (candidate[k] + j - k), a running minimum
        row = np.minimum.accumulate(candidate - offsets) + offsets
    return row


def record_forms(record: dict[str, Any]) -> tuple[str, str]:
    """(plain, compact) of a cover's recognised lines, in reading order."""
    plain = " ".join(p for p in (normalise(line["text"]) for line in record["lines"]) if p)
    return plain, plain.replace(" ", "")


# Text as numbers for the genre models (classify/text_linear.py): counts of the character 2-4-grams
# of each word of ``plain`` (padded with a space at each end, so word starts and ends are grams of
# their own), hashed into this many columns.  Stateless, so a query cover's text maps to the same
# columns as the stored covers'; OCR slips change a few grams of a word, not the whole word.
TEXT_VECTOR_DIM = 4096
TEXT_NGRAMS = (2, 4)


def text_ngram_counts(plains: Sequence[str]) -> np.ndarray:
    """(n, TEXT_VECTOR_DIM) float32 hashed character n-gram counts of ``plain`` texts (all zero: no text)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    hasher = HashingVectorizer(analyzer="char_wb", ngram_range=TEXT_NGRAMS, n_features=TEXT_VECTOR_DIM,
                               alternate_sign=False, norm=None, lowercase=False, dtype=np.float32)
    return hasher.transform(list(plains)).toarray()


def record_plain(record: str) -> str:
    """The ``plain`` form of a record as ``CoverText.extract`` returns it (JSON text)."""
    return json.loads(record)["plain"]


class _Engine(threading.local):
    """One RapidOCR per thread: its objects keep per-call state, and one thread each keeps
    onnxruntime single-threaded (the ingest decides how many threads run)."""

    ocr = None


def _rapidocr_module():
    try:
        import rapidocr
    except ImportError:
        raise FeatureError(TEXT_HINT) from None
    return rapidocr


class CoverText:
    name = "text"
    version = 1
    kind = "text"  # a record per cover in the store's text_<id> table, not a vector
    dim = 0
    metric = "text"  # compared by the text search, never by an index

    def __init__(self) -> None:
        self._engine = _Engine()
        self._fingerprint: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "engine": "rapidocr onnxruntime",
            "models": "PP-OCRv6 det small, PP-OCRv6 rec small (multilingual)",
            "det_side": DET_SIDE,
            "det_limit": "shorter side scaled to det_side",
            "angle_classifier": USE_ANGLE_CLASSIFIER,
            "min_score": MIN_SCORE,
            "normalise": "NFKD, combining marks dropped, casefold, ' . dropped, other punctuation a space",
        }

    def _model_files(self) -> list[Path]:
        folder = Path(_rapidocr_module().__file__).parent / "models"
        files = sorted(folder.glob("PP-OCRv6_*_small.onnx"))
        if len(files) != 2:
            raise FeatureError(f"the rapidocr package lacks its PP-OCRv6 small models in {folder}: reinstall it")
        return files

    def model_fingerprint(self) -> str | None:
        """The sha256 of the detection and recognition models (a new rapidocr with other weights is another model)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for path in self._model_files():
                digest.update(path.name.encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            self._fingerprint = "ppocrv6-small-" + digest.hexdigest()[:16]
        return self._fingerprint

    def load(self) -> None:
        """Build this thread's engine now: a missing package fails before any work."""
        self._ocr()

    def _ocr(self):
        if self._engine.ocr is None:
            rapidocr = _rapidocr_module()
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
            self._engine.ocr = rapidocr.RapidOCR(params={
                "Global.log_level": "error",
                "Global.use_cls": USE_ANGLE_CLASSIFIER,
                "Global.text_score": MIN_SCORE,
                "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "Det.limit_type": "min",
                "Det.limit_side_len": DET_SIDE,
            })
        return self._engine.ocr

    def read(self, rgb: np.ndarray) -> dict[str, Any]:
        """The record of one H x W x 3 uint8 RGB image: {"lines": [{"text", "score", "box"}], "width", "height"}."""
        h, w = rgb.shape[:2]
        result = self._ocr()(np.ascontiguousarray(rgb[:, :, ::-1]))  # RapidOCR reads BGR, as OpenCV does
        lines = []
        if result.txts:
            for text, score, box in zip(result.txts, result.scores, result.boxes):
                text = " ".join(str(text).split())
                if text and float(score) >= MIN_SCORE:
                    lines.append({"text": text, "score": round(float(score), 3),
                                  "box": [[int(round(x)), int(round(y))] for x, y in np.asarray(box).tolist()]})
        return {"lines": lines, "width": int(w), "height": int(h)}

    def prepare(self, rgb: np.ndarray) -> str:
        record = self.read(rgb)
        record["plain"], record["compact"] = record_forms(record)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    def extract(self, prepared: Sequence[str]) -> list[str]:
        """The records as JSON text, one per image (what the store writes)."""
        return list(prepared)
