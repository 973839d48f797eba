"""VGG16 ImageNet conv-base features: the block5 average and block statistics at 224 px, and the
study's own 150 px input to its dense head.

Keras and TensorFlow are imported only when a model is first needed, so commands that use only
the histogram feature start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from coversearch.config import VGG16_WEIGHTS_ENV, vgg16_weights_from_env
from coversearch.errors import FeatureError

INPUT_SIZE = 224
BATCH_SIZE = 32
IMAGENET = "imagenet"  # Keras' own download of the ImageNet weights


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_keras():
    """Import Keras (TensorFlow backend) without TensorFlow's C++ start-up lines on stderr.

    Those lines ignore TF_CPP_MIN_LOG_LEVEL, so fd 2 is pointed at /dev/null during the import
    alone; a failed import still raises as usual.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
            import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras


def resolve_weights(weights: str | os.PathLike | None) -> str | Path:
    """An explicit path wins, then $COVERSEARCH_VGG16_WEIGHTS, then Keras' ImageNet download."""
    chosen = Path(weights) if weights else vgg16_weights_from_env()
    if chosen is None:
        return IMAGENET
    if not chosen.is_file():
        raise FeatureError(f"VGG16 weights file not found: {chosen}")
    return chosen


class VGG16Network:
    """What every VGG16 feature shares: the weights, their fingerprint, the input (224 px unless a
    subclass says otherwise), batching.

    A subclass says which network it runs (``_build``, usually on ``_conv_base``) and how its
    outputs become one vector each (``_vectors``); the network is built lazily, once per extractor.
    """

    name: str
    version: int
    dim: int
    input_size: int = INPUT_SIZE
    resample = Image.BILINEAR

    def __init__(self, weights: str | os.PathLike | None = None):
        self._weights = resolve_weights(weights)
        self._model = None
        self._lock = threading.Lock()
        self._fingerprint: str | None = None

    def params(self) -> dict[str, Any]:
        return {"input_size": INPUT_SIZE, "resize": "bilinear", "preprocess": "keras.applications.vgg16.preprocess_input"}

    def model_fingerprint(self) -> str:
        if self._fingerprint is None:
            if self._weights == IMAGENET:
                self._fingerprint = "keras:vgg16:imagenet:notop"
            else:
                self._fingerprint = "sha256:" + _file_sha256(Path(self._weights))
        return self._fingerprint

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        resized = Image.fromarray(rgb).resize((self.input_size, self.input_size), self.resample)
        return np.asarray(resized, dtype=np.float32)

    def _preprocess(self, batch: np.ndarray) -> np.ndarray:
        from keras.applications.vgg16 import preprocess_input

        return preprocess_input(batch)

    def extract(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model()
        out = []
        for start in range(0, len(prepared), BATCH_SIZE):
            batch = self._preprocess(np.stack(prepared[start : start + BATCH_SIZE]))
            out.append(self._vectors(model.predict_on_batch(batch)))
        return np.concatenate(out)

    def model(self):
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    def _build(self):
        raise NotImplementedError

    def _vectors(self, outputs) -> np.ndarray:
        raise NotImplementedError

    def _conv_base(self, **kwargs):
        keras = import_keras()

        weights = str(self._weights)
        try:
            # Keras prints "Downloading data from ..." itself; the outcome is reported by us.
            with contextlib.redirect_stdout(io.StringIO()):
                return keras.applications.VGG16(
                    include_top=False, weights=weights, input_shape=(self.input_size, self.input_size, 3), **kwargs
                )
        except Exception as exc:  # Keras raises bare Exception for a failed download
            if self._weights == IMAGENET:
                raise FeatureError(
                    "cannot download the VGG16 ImageNet weights "
                    f"({type(exc).__name__}); pass --vgg16-weights PATH or set {VGG16_WEIGHTS_ENV}"
                ) from None
            raise FeatureError(f"cannot load VGG16 weights from {weights}: {exc}") from None


class VGG16Features(VGG16Network):
    """The last pooling layer averaged over positions (512 floats): the search feature.

    The study flattened that layer instead, at 150 px (``vgg16-study`` below).  Averaged at 224 px
    with ImageNet preprocessing, it is 16 times shorter and classifies about as well (the study's
    head: 38.5% against 39.1% on test, benchmarks/README.md).
    """

    name = "vgg16"
    version = 1
    dim = 512

    def params(self) -> dict[str, Any]:
        return {**super().params(), "layer": "block5_pool", "pooling": "avg"}

    def _build(self):
        return self._conv_base(pooling="avg")

    def _vectors(self, outputs) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32)


# Mid-level blocks describe texture, line and colour style rather than objects, which is much of
# what a cover's genre shows; README.md ("Beating the study") and benchmarks/README.md compare them.
LAYER_STATS_LAYERS = ("block3_pool", "block4_pool", "block5_pool")
LAYER_STATS_CHANNELS = (256, 512, 512)  # of those layers
LAYER_STATS_DIM = 2 * sum(LAYER_STATS_CHANNELS)


class VGG16LayerStats(VGG16Network):
    """Per-channel mean and standard deviation of three VGG16 blocks (2,560 floats).

    One forward pass, the same cost as ``vgg16``: [mean(block3), mean(block4), mean(block5),
    std(block3), std(block4), std(block5)] over spatial positions.
    """

    name = "vgg16-layers"
    version = 1
    dim = LAYER_STATS_DIM

    def params(self) -> dict[str, Any]:
        return {**super().params(), "layers": list(LAYER_STATS_LAYERS), "statistics": ["mean", "std"]}

    def _build(self):
        keras = import_keras()
        conv_base = self._conv_base()
        return keras.Model(conv_base.input, [conv_base.get_layer(name).output for name in LAYER_STATS_LAYERS])

    def _vectors(self, outputs) -> np.ndarray:
        maps = [np.asarray(m, dtype=np.float32) for m in outputs]
        return np.hstack([m.mean(axis=(1, 2)) for m in maps] + [m.std(axis=(1, 2)) for m in maps])


# The study's own VGG16 input (its cnn.py, after Chollet's "feature extraction" recipe): 150 px
# images loaded by Keras' ImageDataGenerator (nearest-neighbour resize, pixels rescaled to [0, 1]
# with no ImageNet mean subtraction), and the block5_pool map flattened.  Kept only to reproduce
# the study's dense recipe faithfully; our own features use 224 px and ImageNet preprocessing.
STUDY_INPUT_SIZE = 150
STUDY_MAP = (4, 4, 512)  # block5_pool at 150 px


class VGG16StudyFeatures(VGG16Network):
    """The study's dense-head input: block5_pool at 150 px, flattened (8,192 floats)."""

    name = "vgg16-study"
    version = 1
    dim = STUDY_MAP[0] * STUDY_MAP[1] * STUDY_MAP[2]
    input_size = STUDY_INPUT_SIZE
    resample = Image.NEAREST  # keras.utils.load_img's default interpolation

    def params(self) -> dict[str, Any]:
        return {"input_size": STUDY_INPUT_SIZE, "resize": "nearest", "preprocess": "rescale 1/255",
                "layer": "block5_pool", "pooling": "flatten"}

    def _preprocess(self, batch: np.ndarray) -> np.ndarray:
        return batch / np.float32(255.0)

    def _build(self):
        return self._conv_base()

    def _vectors(self, outputs) -> np.ndarray:
        maps = np.asarray(outputs, dtype=np.float32)
        return maps.reshape(len(maps), -1)
