"""VGG16 ImageNet conv-base features: one network per input recipe, many heads over its outputs.

A ``VGG16Backbone`` is one Keras model for one input recipe (size, resize filter, pixel
preprocessing) whose outputs cover every head that reads it: the block 3, 4 and 5 pools and the
block5 average.  ``vgg16`` and ``vgg16-layers`` are heads over the 224 px backbone, so an image is
resized once and passed through the network once for both; ``vgg16-study`` (the study's 150 px,
[0, 1] input) has a backbone of its own.  Backbones are shared per process (``shared_backbone``):
every extractor built with the same weights and recipe, anywhere in the process, runs the same
network, and the weights file is hashed once.

Keras and TensorFlow are imported only when a network is first needed, so commands that use only
the histogram feature start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from coversearch.checksums import file_sha256
from coversearch.config import VGG16_WEIGHTS_ENV, vgg16_weights_from_env
from coversearch.errors import FeatureError

INPUT_SIZE = 224
BATCH_SIZE = 32
IMAGENET = "imagenet"  # Keras' own download of the ImageNet weights
BLOCK5_AVG = "block5_avg"  # the backbone's name for GlobalAveragePooling2D over block5_pool


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
    return chosen.resolve()


@dataclass(frozen=True)
class InputRecipe:
    """How a cover becomes the network's input; backbones with equal recipes are one network."""

    size: int
    resize: str  # "bilinear" or "nearest"
    preprocess: str  # "imagenet" (keras' vgg16.preprocess_input) or "rescale" (pixels / 255)
    outputs: tuple[str, ...]  # the layers the network returns

    def params(self) -> dict[str, Any]:
        """The input part of a feature set's recorded parameters (the names stored stores hold)."""
        preprocess = {"imagenet": "keras.applications.vgg16.preprocess_input", "rescale": "rescale 1/255"}
        return {"input_size": self.size, "resize": self.resize, "preprocess": preprocess[self.preprocess]}


IMAGENET_224 = InputRecipe(224, "bilinear", "imagenet", ("block3_pool", "block4_pool", "block5_pool", BLOCK5_AVG))
# The study's own VGG16 input (its cnn.py, after Chollet's "feature extraction" recipe): 150 px
# images loaded by Keras' ImageDataGenerator (nearest-neighbour resize, pixels rescaled to [0, 1]
# with no ImageNet mean subtraction).  Kept only to reproduce the study's dense recipe faithfully.
STUDY_150 = InputRecipe(150, "nearest", "rescale", ("block5_pool",))

_RESAMPLE = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


class VGG16Backbone:
    """One VGG16 conv base for one input recipe: resize once, run once, return every output.

    ``forward`` returns ``{layer name: array with a leading batch axis}``; heads turn those into
    vectors.  ``images_forwarded`` counts images through the network (tests and benchmarks read
    it).  Forward passes are serialised: TensorFlow already spreads one batch over every core.
    """

    def __init__(self, weights: str | Path, recipe: InputRecipe):
        self.weights = weights
        self.recipe = recipe
        self.images_forwarded = 0
        self._model = None
        self._fingerprint: str | None = None
        self._lock = threading.Lock()

    def model_fingerprint(self) -> str:
        with self._lock:
            if self._fingerprint is None:
                if self.weights == IMAGENET:
                    self._fingerprint = "keras:vgg16:imagenet:notop"
                else:
                    self._fingerprint = "sha256:" + file_sha256(Path(self.weights))
            return self._fingerprint

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Per-image CPU work (thread-safe): the resized pixels as float32."""
        size = self.recipe.size
        resized = Image.fromarray(rgb).resize((size, size), _RESAMPLE[self.recipe.resize])
        return np.asarray(resized, dtype=np.float32)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        if self.recipe.preprocess == "rescale":
            return batch / np.float32(255.0)
        from keras.applications.vgg16 import preprocess_input

        return preprocess_input(batch)

    def forward(self, prepared: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Every output for a batch of prepared images, in batches of ``BATCH_SIZE``."""
        names = self.recipe.outputs
        if not len(prepared):
            return {name: np.zeros((0,), dtype=np.float32) for name in names}
        model = self.model()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        with self._lock:
            for start in range(0, len(prepared), BATCH_SIZE):
                batch = self.preprocess(np.stack(prepared[start : start + BATCH_SIZE]))
                outputs = model.predict_on_batch(batch)
                if len(names) == 1:
                    outputs = [outputs]
                for name, out in zip(names, outputs):
                    parts[name].append(np.asarray(out, dtype=np.float32))
                self.images_forwarded += len(batch)
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    @property
    def built(self) -> bool:
        return self._model is not None

    def model(self):
        """The Keras model, built on first use (a missing or broken weights file fails here)."""
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    def _build(self):
        keras = import_keras()
        size = self.recipe.size
        try:
            # Keras prints "Downloading data from ..." itself; the outcome is reported by us.
            with contextlib.redirect_stdout(io.StringIO()):
                base = keras.applications.VGG16(include_top=False, weights=str(self.weights), input_shape=(size, size, 3))
        except Exception as exc:  # Keras raises bare Exception for a failed download
            if self.weights == IMAGENET:
                raise FeatureError(
                    "cannot download the VGG16 ImageNet weights "
                    f"({type(exc).__name__}); pass --vgg16-weights PATH or set {VGG16_WEIGHTS_ENV}"
                ) from None
            raise FeatureError(f"cannot load VGG16 weights from {self.weights}: {exc}") from None
        outputs = []
        for name in self.recipe.outputs:
            if name == BLOCK5_AVG:
                # The layer Keras' own VGG16(pooling="avg") appends: the same op, the same numbers.
                outputs.append(keras.layers.GlobalAveragePooling2D(name=BLOCK5_AVG)(base.get_layer("block5_pool").output))
            else:
                outputs.append(base.get_layer(name).output)
        return keras.Model(base.input, outputs if len(outputs) > 1 else outputs[0], name=f"vgg16_{size}")


_BACKBONES: dict[tuple[str, InputRecipe], VGG16Backbone] = {}
_BACKBONES_LOCK = threading.Lock()


def shared_backbone(weights: str | os.PathLike | None, recipe: InputRecipe) -> VGG16Backbone:
    """This process's backbone for these weights and input recipe (made on first request)."""
    resolved = resolve_weights(weights)
    key = (str(resolved), recipe)
    with _BACKBONES_LOCK:
        if key not in _BACKBONES:
            _BACKBONES[key] = VGG16Backbone(resolved, recipe)
        return _BACKBONES[key]


def loaded_backbones() -> list[VGG16Backbone]:
    """The backbones this process has made so far (their networks may not be built yet)."""
    with _BACKBONES_LOCK:
        return list(_BACKBONES.values())


class VGG16Head:
    """A feature computed from a backbone's outputs; the ``FeatureExtractor`` protocol on top.

    A head says which backbone recipe it reads and how outputs become one vector per image
    (``vectors``).  ``prepare`` and ``extract`` work alone; ``Embedder`` (features/embedder.py)
    groups heads by backbone so that several features cost one resize and one forward pass.
    """

    name: str
    version: int
    dim: int
    metric = "cosine"  # CNN activations compare by direction (the study's choice)
    takes_vgg16_weights = True  # get_extractor passes --vgg16-weights to __init__
    recipe: InputRecipe = IMAGENET_224

    def __init__(self, weights: str | os.PathLike | None = None):
        self.backbone = shared_backbone(weights, self.recipe)

    def head_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def vectors(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {**self.recipe.params(), **self.head_params()}

    def model_fingerprint(self) -> str:
        return self.backbone.model_fingerprint()

    def model(self):
        return self.backbone.model()

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return self.backbone.prepare(rgb)

    def extract(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        if not len(prepared):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.vectors(self.backbone.forward(prepared))


class VGG16Features(VGG16Head):
    """The last pooling layer averaged over positions (512 floats): the search feature.

    The study flattened that layer instead, at 150 px (``vgg16-study`` below).  Averaged at 224 px
    with ImageNet preprocessing, it is 16 times shorter and classifies about as well (the study's
    head: 38.5% against 39.1% on test, benchmarks/README.md).
    """

    name = "vgg16"
    version = 1
    dim = 512
    # Near-duplicates (coversearch/dedupe/rules.py): within 0.075 (1 - cos) as they are, up to 0.3
    # with matching keypoints.
    duplicate_threshold = 0.075
    duplicate_verify_up_to = 0.3

    def head_params(self) -> dict[str, Any]:
        return {"layer": "block5_pool", "pooling": "avg"}

    def vectors(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        return outputs[BLOCK5_AVG]


# Mid-level blocks describe texture, line and colour style rather than objects, which is much of
# what a cover's genre shows; README.md ("Beating the study") and benchmarks/README.md compare them.
LAYER_STATS_LAYERS = ("block3_pool", "block4_pool", "block5_pool")
LAYER_STATS_CHANNELS = (256, 512, 512)  # of those layers
LAYER_STATS_DIM = 2 * sum(LAYER_STATS_CHANNELS)


class VGG16LayerStats(VGG16Head):
    """Per-channel mean and standard deviation of three VGG16 blocks (2,560 floats).

    [mean(block3), mean(block4), mean(block5), std(block3), std(block4), std(block5)] over spatial
    positions, from the same forward pass as ``vgg16``.
    """

    name = "vgg16-layers"
    version = 1
    dim = LAYER_STATS_DIM

    def head_params(self) -> dict[str, Any]:
        return {"layers": list(LAYER_STATS_LAYERS), "statistics": ["mean", "std"]}

    def vectors(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        maps = [outputs[name] for name in LAYER_STATS_LAYERS]
        return np.hstack([m.mean(axis=(1, 2)) for m in maps] + [m.std(axis=(1, 2)) for m in maps])


STUDY_MAP = (4, 4, 512)  # block5_pool at 150 px


class VGG16StudyFeatures(VGG16Head):
    """The study's dense-head input: block5_pool at 150 px, flattened (8,192 floats)."""

    name = "vgg16-study"
    version = 1
    dim = STUDY_MAP[0] * STUDY_MAP[1] * STUDY_MAP[2]
    recipe = STUDY_150

    def head_params(self) -> dict[str, Any]:
        return {"layer": "block5_pool", "pooling": "flatten"}

    def vectors(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        maps = outputs["block5_pool"]
        return maps.reshape(len(maps), -1)
