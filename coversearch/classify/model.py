"""A trained model on disk: the estimator plus where it came from, checked before every use.

A model folder holds ``card.json`` (method, features with their versions and model
fingerprints, the store's embedding fingerprints at training time, the split, classes,
parameters, timings, calibration summary), the estimator's own files and, when calibrated,
``calibration.json`` (the calibrator) with ``calibration-data.npz`` (the validation probabilities it
was fitted on, so another method can be fitted without retraining).  A model refuses to run on a
store whose features differ from the ones it learned from.

The card records the size and sha256 of every estimator and calibration file (``files``) and a sha256 of its own
content (``card_sha256``).  Both are checked before XGBoost, Keras, annoy, FAISS or numpy read a
byte, so a damaged or edited model is one clear error, never a crash or a silently wrong answer.
Models saved before checksums were recorded have neither: they still load, as *unverified*
(``TrainedModel.verified`` is False and ``models list`` says so); retraining adds the checksums.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coversearch.checksums import FileRecord, file_record, record_tree, tree_files, verify_records
from coversearch.classify.base import GenreClassifier
from coversearch.classify.calibration import Answer, answers, calibrated, calibrator_from_state
from coversearch.classify.data import query_matrix
from coversearch.classify.registry import method_class
from coversearch.errors import CoverSearchError
from coversearch.fsutil import check_folder_name, staged_folder
from coversearch.store import FeatureSet, Store
from coversearch.store.rows import RECORD_KIND

CARD = "card.json"
ESTIMATOR = "estimator"
CALIBRATION = "calibration.json"
CALIBRATION_DATA = "calibration-data.npz"
MODEL_FORMAT = 1
CARD_CHECKSUM = "card_sha256"


class ModelError(CoverSearchError):
    """Unknown or unreadable model, or a model that does not fit this store."""


def model_feature_sets(store: Store) -> list[FeatureSet]:
    """The sets a model can read: every vector set and the text sets (not keypoint records)."""
    return [fs for fs in store.feature_sets(kind=None) if fs.kind != RECORD_KIND]


@dataclass
class FeatureRef:
    name: str
    version: int
    dim: int
    model_fingerprint: str | None
    store_fingerprint: str
    kind: str = "vector"  # or "text": the words read on the cover, as hashed n-gram counts (classify/data.py)

    @classmethod
    def of(cls, store: Store, fs: FeatureSet) -> "FeatureRef":
        return cls(fs.name, fs.version, fs.dim, fs.model_fingerprint, store.embedding_fingerprint(fs), fs.kind)


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
    # estimator file (relative to the model folder) -> {"bytes", "sha256"}; None: saved before checksums
    files: dict[str, dict[str, Any]] | None = None
    # {method, fitted_on, validation albums, validation ECE before/after, min_confidence, ...}; None: raw probabilities.
    calibration: dict[str, Any] | None = None
    # [{"stage", "seconds"}] of `train` in order (split, load features, each fit, calibration, evaluation); None: older card.
    stages: list[dict[str, Any]] | None = None

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
        data.pop(CARD_CHECKSUM, None)
        data["features"] = [FeatureRef(**f) for f in data["features"]]
        return cls(**data)


def card_checksum(data: dict[str, Any]) -> str:
    """sha256 of a card's content (its own checksum field left out), independent of key order."""
    content = {k: v for k, v in data.items() if k != CARD_CHECKSUM}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def write_card(folder: Path, card: ModelCard) -> None:
    data = card.to_json()
    data[CARD_CHECKSUM] = card_checksum(json.loads(json.dumps(data, default=str)))
    (Path(folder) / CARD).write_text(json.dumps(data, indent=2, default=str))


def _read_card(folder: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads((folder / CARD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{label} has an unreadable card: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{label} has an unreadable card: not a JSON object")
    return data


def verify_model_files(folder: Path, data: dict[str, Any], label: str) -> bool:
    """Check a card's own checksum and every estimator file against it, before anything loads them.

    True when verified; False for a model saved before checksums were recorded (neither field).
    """
    has_files, has_sum = data.get("files") is not None, CARD_CHECKSUM in data
    if not has_files and not has_sum:
        return False
    fix = "retrain it with `coversearch train`"
    if not has_files or not has_sum or data[CARD_CHECKSUM] != card_checksum(data):
        raise ModelError(f"{label}: {CARD} was edited or damaged (its checksum does not match its content); {fix}")
    try:
        records = {name: FileRecord.from_json(rec) for name, rec in data["files"].items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ModelError(f"{label}: {CARD} has a malformed file list; {fix}") from None
    present = [f"{ESTIMATOR}/{name}" for name in tree_files(folder / ESTIMATOR)] if (folder / ESTIMATOR).is_dir() else []
    verify_records(folder, records, label, ModelError, required=present, fix=fix)
    return True


@dataclass
class TrainedModel:
    card: ModelCard
    estimator: GenreClassifier
    verified: bool = True  # False: saved before checksums were recorded, its files could not be checked
    calibrator: Any = None  # from classify.calibration; None: the estimator's probabilities as they are
    calibration_data: dict[str, np.ndarray] | None = None  # {"proba": raw, "Y": genre matrix}: what it was fitted on
    evaluation: dict[str, Any] | None = None  # the test evaluation made when it was trained (not saved with the card)

    def check_store(self, store: Store, *, same_state: bool = False) -> list[FeatureSet]:
        """The store's feature sets for this model, or a clear refusal if they are not the trained ones.

        Albums added or removed since training leave the model usable (the vectors of an album do
        not change; it simply never saw the new ones): only its evaluation is out of date
        (``store_changed``).  ``same_state`` refuses that too, for work that needs the training
        state itself (scoring the held-out split)."""
        sets = []
        available = {(fs.name, fs.version): fs for fs in model_feature_sets(store)}
        for ref in self.card.features:
            fs = available.get((ref.name, ref.version))
            if fs is None:
                raise ModelError(f"model {self.card.name!r} was trained on {ref.name} v{ref.version}, which this store does not have")
            if fs.model_fingerprint != ref.model_fingerprint:
                raise ModelError(
                    f"model {self.card.name!r} was trained on {ref.name} from model {ref.model_fingerprint}; "
                    f"this store's {ref.name} comes from {fs.model_fingerprint}"
                )
            if same_state and store.embedding_fingerprint(fs) != ref.store_fingerprint:
                raise ModelError(
                    f"model {self.card.name!r} was trained on another store state ({ref.name} embeddings differ: "
                    "covers were added or removed since); retrain it with `coversearch train`"
                )
            sets.append(fs)
        return sets

    def store_changed(self, store: Store) -> str | None:
        """Why this usable model's evaluation no longer describes ``store`` (covers added or removed
        since training), or None when the store is as it was trained on."""
        for ref in self.card.features:
            fs = next((f for f in model_feature_sets(store) if (f.name, f.version) == (ref.name, ref.version)), None)
            if fs is not None and store.embedding_fingerprint(fs) != ref.store_fingerprint:
                return (f"covers were added or removed since model {self.card.name!r} was trained: it answers for them, "
                        "but its evaluation is out of date (retrain it with `coversearch train` to refresh it)")
        return None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: what every command, the page and the API show."""
        return calibrated(self.calibrator, self.estimator.predict_proba(X))

    def answer(self, X: np.ndarray, min_confidence: float | None = None) -> list[Answer]:
        """For each row: the top genre, or "unknown" below ``min_confidence`` (default: the model's), and every genre ranked."""
        threshold = self.card.min_confidence if min_confidence is None else min_confidence
        return answers(self.classes, self.predict_proba(X), threshold)

    def features_matrix(self, vectors: dict[str, Any]) -> np.ndarray:
        """Per-feature extractor outputs ({name: (n, dim) or (dim,) vectors, or a text set's records})
        concatenated in the model's order."""
        return np.hstack([query_matrix(ref, vectors[ref.name]) for ref in self.card.features])

    def rank_genres(self, X: np.ndarray) -> list[list[tuple[str, float]]]:
        """For each row, every genre with its probability, most likely first."""
        return [a.ranked for a in self.answer(X)]

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    def save(self, models_dir: Path) -> Path:
        """Write atomically: build in a temporary folder, then swap it in under the model's name."""
        check_folder_name(self.card.name, "model")
        with staged_folder(models_dir, self.card.name) as staging:
            (staging / ESTIMATOR).mkdir()
            self.estimator.save(staging / ESTIMATOR)
            if self.calibrator is not None:
                (staging / CALIBRATION).write_text(json.dumps({"method": self.calibrator.method, **self.calibrator.state()}))
            if self.calibration_data is not None:
                np.savez(staging / CALIBRATION_DATA, **self.calibration_data)
            records = {f"{ESTIMATOR}/{name}": rec for name, rec in record_tree(staging / ESTIMATOR).items()}
            for extra in (CALIBRATION, CALIBRATION_DATA):
                if (staging / extra).is_file():
                    records[extra] = file_record(staging / extra)
            self.card.files = {name: rec.to_json() for name, rec in records.items()}
            write_card(staging, self.card)
        self.verified = True
        return Path(models_dir) / self.card.name

    @classmethod
    def load(cls, models_dir: Path, name: str) -> "TrainedModel":
        """The model in folder ``name``: its card and files checked first, then the estimator loaded."""
        check_folder_name(name, "model")
        folder = Path(models_dir) / name
        if not (folder / CARD).is_file():
            known = ", ".join(list_model_names(models_dir)) or "none"
            raise ModelError(f"no model named {name!r} in {models_dir} (models: {known}); train one with `coversearch train`")
        label = f"model {name!r}"
        data = _read_card(folder, label)
        verified = verify_model_files(folder, data, label)
        try:
            card = ModelCard.from_json(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ModelError(f"{label} has an unreadable card: {exc}") from None
        if card.format != MODEL_FORMAT:
            raise ModelError(f"{label} has format {card.format}; this version reads format {MODEL_FORMAT}")
        try:
            estimator = method_class(card.method).load(folder / ESTIMATOR)
        except CoverSearchError:
            raise
        except Exception as exc:  # a damaged file from any of the libraries
            raise ModelError(f"{label} could not be loaded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if [str(c) for c in getattr(estimator, "classes_", [])] != list(card.classes):
            raise ModelError(f"{label}: the genres in {CARD} ({', '.join(card.classes)}) are not the estimator's; retrain it")
        card.name = name  # the folder names the model (a copied folder is a model of its own)
        calibrator = data = None
        if card.calibration is not None:
            try:
                state = json.loads((folder / CALIBRATION).read_text())
                calibrator = calibrator_from_state(state.pop("method"), state)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise ModelError(f"{label} is calibrated but its {CALIBRATION} is unreadable: {exc}") from None
            if (folder / CALIBRATION_DATA).is_file():
                with np.load(folder / CALIBRATION_DATA) as stored:
                    data = {key: stored[key] for key in stored.files}
        return cls(card, estimator, verified=verified, calibrator=calibrator, calibration_data=data)


def list_model_names(models_dir: Path) -> list[str]:
    """Model folder names (hidden staging folders left out)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / CARD).is_file() and not p.name.startswith("."))


@dataclass
class ModelEntry:
    """One model folder as ``models list`` shows it: the folder's name is the model's name."""

    folder: str
    card: ModelCard | None
    files: str  # "verified", "unverified" (saved before checksums) or the problem found


def list_models(models_dir: Path, *, verify: bool = False) -> list[ModelEntry]:
    """Every model folder with its card; with ``verify``, each one's files checked (no estimator loaded)."""
    entries = []
    for name in list_model_names(models_dir):
        folder = Path(models_dir) / name
        try:
            data = _read_card(folder, f"model {name!r}")
            status = "not checked"
            if verify:
                status = "verified" if verify_model_files(folder, data, f"model {name!r}") else "unverified"
            entries.append(ModelEntry(name, ModelCard.from_json(data), status))
        except ModelError as exc:
            entries.append(ModelEntry(name, None, str(exc)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            entries.append(ModelEntry(name, None, f"model {name!r} has an unreadable card: {exc}"))
    return entries


def list_cards(models_dir: Path) -> list[ModelCard]:
    """The readable cards, each named after its folder (a copied folder is its own model)."""
    cards = []
    for entry in list_models(models_dir):
        if entry.card is not None:
            entry.card.name = entry.folder
            cards.append(entry.card)
    return cards


def latest_default_model(models_dir: Path) -> str:
    """The folder name of the most recently trained model of the default recipe."""
    from coversearch.classify.recipes import DEFAULT_RECIPE

    cards = [c for c in list_cards(models_dir) if c.recipe == DEFAULT_RECIPE]
    if not cards:
        raise ModelError(f"no default model in {models_dir}; train it with `coversearch train` (no options)")
    return max(cards, key=lambda c: c.trained_at).name
