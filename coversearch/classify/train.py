"""Train, evaluate and apply genre models: the library functions behind `train`, `evaluate`, `classify`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from coversearch.classify.base import ProgressFn
from coversearch.classify.data import feature_sets_for, load_labelled, require_rows
from coversearch.classify.evaluate import evaluate_predictions, plot_confusion
from coversearch.classify.model import FeatureRef, ModelCard, ModelError, TrainedModel
from coversearch.classify.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from coversearch.classify.registry import make_estimator
from coversearch.classify.split import DEFAULT_SPLIT, get_or_make_split, load_split
from coversearch.errors import CoverSearchError, ImageError
from coversearch.features.embedder import Embedder
from coversearch.features.images import decode_image, read_bytes
from coversearch.features.registry import FEATURE_NAMES, get_extractor
from coversearch.fsutil import check_folder_name
from coversearch.store import Store

EVALUATION = "evaluation.json"
CONFUSION_PNG = "confusion.png"


def resolve_recipe(recipe: str | None, method: str | None, features: Sequence[str] | None, params: dict | None,
                   refit: bool | None = None) -> Recipe:
    """--recipe, or --method/--feature, or nothing at all (the default recipe); ``refit`` None keeps the recipe's."""
    if recipe is not None:
        if method is not None or features:
            raise CoverSearchError("give either --recipe or --method/--feature, not both")
        chosen = get_recipe(recipe)
    elif method is None and not features:
        chosen = get_recipe(DEFAULT_RECIPE)
    else:
        default = get_recipe(DEFAULT_RECIPE)
        chosen = Recipe(name="custom", method=method or default.method, features=tuple(features or default.features))
    return replace(chosen, params={**chosen.params, **(params or {})}, refit=chosen.refit if refit is None else refit)


def check_training(recipe: Recipe, name: str | None = None) -> str:
    """The model's name, once the method, its parameters and the name itself are known to be valid:
    what the user typed is checked before any store or data is touched."""
    make_estimator(recipe.method, recipe.params)
    default = recipe.name if recipe.name != "custom" else f"{recipe.method}-{'+'.join(recipe.features)}"
    return check_folder_name(name or default, "model")


def train_model(
    store: Store,
    models_dir: Path,
    recipe: Recipe,
    *,
    name: str | None = None,
    split_name: str = DEFAULT_SPLIT,
    progress: ProgressFn | None = None,
    evaluate: bool = True,
) -> TrainedModel:
    name = check_training(recipe, name)
    feature_sets = feature_sets_for(store, list(recipe.features))
    split = get_or_make_split(store, split_name)
    train = load_labelled(store, feature_sets, split.album_ids("train"))
    val = load_labelled(store, feature_sets, split.album_ids("val"))
    require_rows(train, "train")
    X, y = train.expanded()
    genres = sorted(set(y.tolist()))
    if len(genres) < 2:
        raise CoverSearchError(f"training needs at least 2 genres in the train split; found {len(genres)} ({', '.join(genres)})")
    X_val, y_val = val.expanded() if len(val.album_ids) else (None, None)
    if y_val is not None:  # genres unseen in training cannot be scored by early stopping
        known = np.isin(y_val, genres)
        X_val, y_val = X_val[known], y_val[known]

    estimator = make_estimator(recipe.method, recipe.params)
    started = time.perf_counter()
    if recipe.refit:
        estimator.fit_final(X, y, X_val, y_val, progress=progress)
    else:
        estimator.fit(X, y, X_val, y_val, progress=progress)
    seconds = time.perf_counter() - started

    card = ModelCard(
        name=name,
        method=recipe.method,
        recipe=recipe.name,
        features=[FeatureRef.of(store, fs) for fs in feature_sets],
        classes=[str(c) for c in estimator.classes_],
        params=estimator.get_params(),
        split=split.name,
        store=str(store.path),
        trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        train_seconds=round(seconds, 2),
        train_rows=int(len(X)) + (int(len(X_val)) if recipe.refit and X_val is not None else 0),
        val_rows=int(len(X_val)) if X_val is not None else 0,
        refit=recipe.refit,
    )
    model = TrainedModel(card, estimator)
    folder = model.save(models_dir)
    if evaluate:
        evaluate_model(store, model, folder)
    return model


@dataclass
class Evaluation:
    result: dict
    folder: Path | None

    @property
    def confusion_png(self) -> Path | None:
        return self.folder / CONFUSION_PNG if self.folder else None


def evaluate_model(store: Store, model: TrainedModel, folder: Path | None = None) -> Evaluation:
    """Score ``model`` on the test split it never saw; write evaluation.json and confusion.png into ``folder``."""
    feature_sets = model.check_store(store)
    split = load_split(store, model.card.split)
    if split is None:
        raise ModelError(f"the store has no split {model.card.split!r}, which model {model.card.name!r} was trained on")
    test = load_labelled(store, feature_sets, split.album_ids("test"))
    require_rows(test, "test")
    started = time.perf_counter()
    proba = model.predict_proba(test.X)
    predict_seconds = time.perf_counter() - started
    result = evaluate_predictions(model.classes, proba, test.genres)
    result.update(
        model=model.card.name,
        method=model.card.method,
        recipe=model.card.recipe,
        features=model.card.feature_names,
        split=split.name,
        train_seconds=model.card.train_seconds,
        refit=model.card.refit,
        predict_ms_per_image=round(1000 * predict_seconds / len(test.album_ids), 4),
    )
    if folder is not None:
        (folder / EVALUATION).write_text(json.dumps(result, indent=2))
        plot_confusion(result, f"{model.card.name} ({model.card.method} on {'+'.join(model.card.feature_names)})", folder / CONFUSION_PNG)
    return Evaluation(result, folder)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def expand_image_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded to their image files (recursively, sorted, hidden skipped)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(
                p for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            out.append(path)
    if not out:
        raise CoverSearchError("no images to classify")
    return out


@dataclass
class Classification:
    path: Path
    genres: list[tuple[str, float]] | None  # ranked, with probabilities
    error: str | None = None


def classify_images(
    store: Store,
    model: TrainedModel,
    paths: Sequence[Path],
    *,
    vgg16_weights=None,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> list[Classification]:
    """Classify image files with one loaded model; undecodable files get an error, not a crash."""
    model.check_store(store)
    extractors = []
    for ref in model.card.features:
        if ref.name not in FEATURE_NAMES:
            raise ModelError(
                f"model {model.card.name!r} reads {ref.name!r}, a feature set imported from outside coversearch: "
                "new image files cannot be embedded for it (`coversearch evaluate` works on the stored vectors)"
            )
        extractor = get_extractor(ref.name, vgg16_weights=vgg16_weights)
        if extractor.version != ref.version or extractor.model_fingerprint() != ref.model_fingerprint:
            raise ModelError(
                f"model {model.card.name!r} needs {ref.name} v{ref.version} from {ref.model_fingerprint}; "
                f"the extractor here is v{extractor.version} from {extractor.model_fingerprint()}"
            )
        extractors.append(extractor)
    embedder = Embedder(extractors)  # features that share a backbone cost one forward pass
    results: list[Classification] = []
    for start in range(0, len(paths), batch_size):
        batch = list(paths[start : start + batch_size])
        images, good = [], []
        for path in batch:
            try:
                images.append(decode_image(read_bytes(path)).rgb)
                good.append(path)
            except ImageError as exc:
                results.append(Classification(path, None, f"{exc.reason}: {exc.detail}"))
        if images:
            vectors = embedder.embed(images)
            for path, ranked in zip(good, model.rank_genres(model.features_matrix(vectors))):
                results.append(Classification(path, ranked))
        if on_batch:
            on_batch(len(batch))
    order = {p: i for i, p in enumerate(paths)}
    return sorted(results, key=lambda r: order[r.path])
