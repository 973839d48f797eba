"""Train genre models: the library function behind `coversearch train` (evaluate.py scores them, apply.py classifies new images)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from coversearch.classify.calibration import (
    DEFAULT_MAX_ABSTAIN, calibrated, calibration_measures, check_calibration_method, choose_min_confidence, fit_calibrator,
    genre_matrix,
)
from coversearch.classify.data import LabelledAlbums, feature_sets_for, load_labelled, require_rows
from coversearch.classify.evaluate import evaluate_model, write_evaluation
from coversearch.classify.model import FeatureRef, ModelCard, TrainedModel
from coversearch.classify.recipes import DEFAULT, DEFAULT_NO_TEXT, DEFAULT_RECIPE, Recipe, for_store, get_recipe
from coversearch.classify.registry import make_estimator
from coversearch.classify.split import DEFAULT_SPLIT, get_or_make_split
from coversearch.errors import CoverSearchError
from coversearch.fsutil import check_folder_name
from coversearch.stages import StageClock, StageDisplay
from coversearch.store import Store
from coversearch.store.rows import TEXT_KIND

DEFAULT_CALIBRATION = "temperature"


def resolve_recipe(recipe: str | None, method: str | None, features: Sequence[str] | None, params: dict | None,
                   refit: bool | None = None) -> Recipe:
    """--recipe, or --method/--feature, or nothing at all (the default recipe); ``refit`` None keeps the recipe's."""
    if recipe is not None:
        if method is not None or features:
            raise CoverSearchError("give either --recipe or --method/--feature, not both")
        chosen = get_recipe(recipe)
    elif method is None and not features:
        chosen = get_recipe(DEFAULT_RECIPE)
    else:  # a method alone reads the default's pixel features
        chosen = Recipe(name="custom", method=method or DEFAULT.method, features=tuple(features or DEFAULT_NO_TEXT.features))
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
    display: StageDisplay | None = None,
    evaluate: bool = True,
    calibration: str = DEFAULT_CALIBRATION,
    max_abstain: float = DEFAULT_MAX_ABSTAIN,
) -> TrainedModel:
    """Fit ``recipe`` on the train split (validation for early stopping), calibrate it on validation,
    evaluate it on test and save it.

    Calibration needs validation probabilities from a model that did not learn from validation.
    A refit model has (it is fitted on train + validation), so its train-only fit, the one whose
    early stopping chooses the epochs or rounds of the refit, also predicts validation; those
    probabilities fit the calibrator and choose the default threshold, and the refit model ships
    with them.

    Each step is a named, timed stage (``display`` draws them); the card records the times
    (``ModelCard.stages``) and the test evaluation, when made, is in ``model.evaluation``.
    """
    name = check_training(recipe, name)
    check_calibration_method(calibration)
    recipe, text_note = for_store(recipe, bool(store.feature_sets(kind=TEXT_KIND)))
    stages = StageClock(display)
    feature_sets = feature_sets_for(store, list(recipe.features))
    with stages("split"):
        split = get_or_make_split(store, split_name)
    with stages("load features"):
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
    calibrate = calibration != "none" and X_val is not None and len(X_val) > 0
    started = time.perf_counter()
    val_raw = estimator.fit_in_stages(X, y, X_val, y_val, refit=recipe.refit, held_out=val.X if calibrate else None,
                                      stages=stages)
    seconds = time.perf_counter() - started  # fit stages may overlap (see ClassifierBase.fit_in_stages)

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
    if text_note:
        card.notes["text"] = text_note
    model = TrainedModel(card, estimator)
    if calibrate:
        with stages("calibration"):
            _calibrate(model, calibration, val_raw, val, max_abstain)
    elif calibration != "none":
        card.notes["calibration"] = "not calibrated: the validation split is empty"
    if evaluate:
        with stages("evaluation"):
            model.evaluation = evaluate_model(store, model, split=split).result
    card.stages = stages.table()  # every stage but the save itself, which writes the card
    with stages("save"):
        folder = model.save(models_dir)
        if model.evaluation is not None:
            write_evaluation(model.evaluation, folder)
    return model


def _calibrate(model: TrainedModel, method: str, val_raw: np.ndarray, val: LabelledAlbums, max_abstain: float) -> None:
    """Fit ``method`` on the validation probabilities ``val_raw`` (from a fit that never saw validation)."""
    Y = genre_matrix(model.classes, val.genres)
    try:
        calibrator = fit_calibrator(method, val_raw, Y)
    except CoverSearchError as exc:  # too few validation albums: ship raw probabilities and say so
        model.card.notes["calibration"] = f"not calibrated: {exc}"
        return
    after = calibrated(calibrator, val_raw)
    model.calibrator = calibrator
    model.calibration_data = {"proba": np.asarray(val_raw, dtype=np.float64), "Y": Y}
    model.card.calibration = {
        "method": method,
        **({"temperature": round(calibrator.temperature, 6)} if method == "temperature" else {}),
        "fitted_on": "validation split, predicted by the fit on train alone" if model.card.refit
        else "validation split, which the model did not train on (early stopping may have read it)",
        "validation_albums": int(Y.any(axis=1).sum()),
        "validation_before": calibration_measures(calibrated(None, val_raw), Y),
        "validation_after": calibration_measures(after, Y),
        "max_abstain": max_abstain,
        "min_confidence": round(choose_min_confidence(after, max_abstain), 6),
    }
