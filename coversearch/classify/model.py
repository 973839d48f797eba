"""A trained model on disk: the estimator plus where it came from, checked before every use.

A model folder holds ``card.json`` (method, features with their versions and model
fingerprints, the store's embedding fingerprints at training time, the split, classes,
parameters, timings, calibration summary), the estimator's own files and, when calibrated,
``calibration.json`` (the calibrator) with ``calibration-data.npz`` (the validation probabilities it
was fitted on, so another method can be fitted without retraining).  A model refuses to run on a
store whose features differ from the ones it learned from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coversearch.classify.base import GenreClassifier
from coversearch.classify.calibration import Answer, answers, calibrated, calibrator_from_state
from coversearch.errors import CoverSearchError
from coversearch.fsutil import staged_folder
from coversearch.store import FeatureSet, Store

CARD = "card.json"
ESTIMATOR = "estimator"
CALIBRATION = "calibration.json"
CALIBRATION_DATA = "calibration-data.npz"
MODEL_FORMAT = 1


class ModelError(CoverSearchError):
    """Unknown or unreadable model, or a model that does not fit this store."""


@dataclass
class FeatureRef:
    name: str
    version: int
    dim: int
    model_fingerprint: str | None
    store_fingerprint: str

    @classmethod
    def of(cls, store: Store, fs: FeatureSet) -> "FeatureRef":
        return cls(fs.name, fs.version, fs.dim, fs.model_fingerprint, store.embedding_fingerprint(fs))


@dataclass
class ModelCard:
    name: str
    method: str
    recipe: str | None
    features: list[FeatureRef]
    classes: list[str]
    params: dict[str, Any]
    split: str
    store: str
    trained_at: str
    train_seconds: float
    train_rows: int  # rows of the final fit: train, plus validation when refit
    val_rows: int
    refit: bool = False  # fitted on train + validation after validation chose (ClassifierBase.fit_final)
    format: int = MODEL_FORMAT
    notes: dict[str, Any] = field(default_factory=dict)
    # {method, fitted_on, validation albums, validation ECE before/after, min_confidence, ...}; None: raw probabilities.
    calibration: dict[str, Any] | None = None

    @property
    def min_confidence(self) -> float:
        """The default "none of these" threshold (0, never abstain, for an uncalibrated model)."""
        return float((self.calibration or {}).get("min_confidence", 0.0))

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelCard":
        data = dict(data)
        data["features"] = [FeatureRef(**f) for f in data["features"]]
        return cls(**data)


def _estimator_class(method: str):
    from coversearch.classify.registry import method_class

    return method_class(method)


@dataclass
class TrainedModel:
    card: ModelCard
    estimator: GenreClassifier
    calibrator: Any = None  # from classify.calibration; None: the estimator's probabilities as they are
    calibration_data: dict[str, np.ndarray] | None = None  # {"proba": raw, "Y": genre matrix}: what it was fitted on

    def check_store(self, store: Store) -> list[FeatureSet]:
        """The store's feature sets for this model, or a clear refusal if they are not the trained ones."""
        sets = []
        available = {(fs.name, fs.version): fs for fs in store.feature_sets()}
        for ref in self.card.features:
            fs = available.get((ref.name, ref.version))
            if fs is None:
                raise ModelError(f"model {self.card.name!r} was trained on {ref.name} v{ref.version}, which this store does not have")
            if fs.model_fingerprint != ref.model_fingerprint:
                raise ModelError(
                    f"model {self.card.name!r} was trained on {ref.name} from model {ref.model_fingerprint}; "
                    f"this store's {ref.name} comes from {fs.model_fingerprint}"
                )
            if store.embedding_fingerprint(fs) != ref.store_fingerprint:
                raise ModelError(
                    f"model {self.card.name!r} was trained on another store state ({ref.name} embeddings differ: "
                    "covers were added or removed since); retrain it with `coversearch train`"
                )
            sets.append(fs)
        return sets

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: what every command, the page and the API show."""
        return calibrated(self.calibrator, self.estimator.predict_proba(X))

    def answer(self, X: np.ndarray, min_confidence: float | None = None) -> list[Answer]:
        """For each row: the top genre, or "unknown" below ``min_confidence`` (default: the model's), and every genre ranked."""
        threshold = self.card.min_confidence if min_confidence is None else min_confidence
        return answers(self.classes, self.predict_proba(X), threshold)

    def features_matrix(self, vectors: dict[str, np.ndarray]) -> np.ndarray:
        """Per-feature vectors ({name: (n, dim) or (dim,)}) concatenated in the model's order."""
        return np.hstack([np.atleast_2d(vectors[ref.name]) for ref in self.card.features])

    def rank_genres(self, X: np.ndarray) -> list[list[tuple[str, float]]]:
        """For each row, every genre with its probability, most likely first."""
        return [a.ranked for a in self.answer(X)]

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    def save(self, models_dir: Path) -> Path:
        """Write atomically: build in a temporary folder, then swap it in under the model's name."""
        with staged_folder(models_dir, self.card.name) as staging:
            (staging / ESTIMATOR).mkdir()
            self.estimator.save(staging / ESTIMATOR)
            if self.calibrator is not None:
                (staging / CALIBRATION).write_text(json.dumps({"method": self.calibrator.method, **self.calibrator.state()}))
            if self.calibration_data is not None:
                np.savez(staging / CALIBRATION_DATA, **self.calibration_data)
            (staging / CARD).write_text(json.dumps(self.card.to_json(), indent=2, default=str))
        return Path(models_dir) / self.card.name

    @classmethod
    def load(cls, models_dir: Path, name: str) -> "TrainedModel":
        folder = Path(models_dir) / name
        if not (folder / CARD).is_file():
            known = ", ".join(list_model_names(models_dir)) or "none"
            raise ModelError(f"no model named {name!r} in {models_dir} (models: {known}); train one with `coversearch train`")
        try:
            card = ModelCard.from_json(json.loads((folder / CARD).read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"model {name!r} has an unreadable card: {exc}") from None
        if card.format != MODEL_FORMAT:
            raise ModelError(f"model {name!r} has format {card.format}; this version reads format {MODEL_FORMAT}")
        try:
            estimator = _estimator_class(card.method).load(folder / ESTIMATOR)
        except CoverSearchError:
            raise
        except Exception as exc:  # a damaged file from any of the libraries
            raise ModelError(f"model {name!r} could not be loaded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        calibrator = data = None
        if card.calibration is not None:
            try:
                state = json.loads((folder / CALIBRATION).read_text())
                calibrator = calibrator_from_state(state.pop("method"), state)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise ModelError(f"model {name!r} is calibrated but its {CALIBRATION} is unreadable: {exc}") from None
            if (folder / CALIBRATION_DATA).is_file():
                with np.load(folder / CALIBRATION_DATA) as stored:
                    data = {key: stored[key] for key in stored.files}
        return cls(card, estimator, calibrator, data)


def list_model_names(models_dir: Path) -> list[str]:
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / CARD).is_file() and not p.name.startswith("."))


def list_cards(models_dir: Path) -> list[ModelCard]:
    cards = []
    for name in list_model_names(models_dir):
        try:
            cards.append(ModelCard.from_json(json.loads((Path(models_dir) / name / CARD).read_text())))
        except (ValueError, TypeError, KeyError):
            continue
    return cards


def latest_default_model(models_dir: Path) -> str:
    """The most recently trained model of the default recipe."""
    from coversearch.classify.recipes import DEFAULT_RECIPE

    cards = [c for c in list_cards(models_dir) if c.recipe == DEFAULT_RECIPE]
    if not cards:
        raise ModelError(f"no default model in {models_dir}; train it with `coversearch train` (no options)")
    return max(cards, key=lambda c: c.trained_at).name
