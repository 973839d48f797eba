"""Test-split evaluation: accuracy, per-genre recall, confusion matrix (and its heat map), reliability diagram;
``evaluate_model`` is the library function behind `coversearch evaluate`.

An album filed under several genres counts as right when the predicted genre is any of them.
Its confusion-matrix row is the genre it was predicted as when that is one of its genres, else
its first genre alphabetically; per-genre recall counts an album under every genre it has.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from coversearch.classify.calibration import (
    RISK_COVERAGE_THRESHOLDS, calibrated, calibration_measures, genre_matrix, reliability_bins, risk_coverage,
)
from coversearch.classify.data import load_labelled, require_rows
from coversearch.classify.model import ModelError, TrainedModel
from coversearch.classify.split import Split, load_split
from coversearch.fsutil import write_atomic
from coversearch.plots import pyplot, save_figure
from coversearch.store import Store

EVALUATION = "evaluation.json"
CONFUSION_PNG = "confusion.png"
RELIABILITY_PNG = "reliability.png"


def evaluate_predictions(classes: Sequence[str], proba: np.ndarray, genres: Sequence[tuple[str, ...]]) -> dict:
    classes = list(classes)
    predicted = [classes[i] for i in np.argmax(proba, axis=1)]
    correct = [p in gs for p, gs in zip(predicted, genres)]
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    for p, gs in zip(predicted, genres):
        true = p if p in gs else sorted(gs)[0]
        if true in index:
            confusion[index[true], index[p]] += 1
    recall = {}
    for genre in classes:
        having = [ok for ok, gs in zip(correct, genres) if genre in gs]
        recall[genre] = float(np.mean(having)) if having else None
    return {
        "albums": len(genres),
        "accuracy": float(np.mean(correct)) if correct else 0.0,
        "per_genre_recall": recall,
        "classes": classes,
        "confusion": confusion.tolist(),
    }


def plot_confusion(result: dict, title: str, path: Path, option: str | None = None) -> Path:
    """The confusion heat map as a PNG at ``path`` (``option``: the user named it, e.g. ``--png``)."""
    plt = pyplot()

    matrix = np.array(result["confusion"])
    classes = result["classes"]
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5), dpi=110)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted genre")
    ax.set_ylabel("true genre")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(f"{title}\naccuracy {result['accuracy']:.1%} on {result['albums']} test albums", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    return save_figure(fig, path, option)


def plot_reliability(result: dict, title: str, path: Path) -> Path:
    """Reliability diagrams before and after calibration: accuracy against confidence per bin."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), dpi=110, sharey=True)
    for ax, stage in zip(axes, ("before", "after")):
        bins = result["reliability"][stage]
        measures = result["calibration"][stage]
        width = bins[0]["high"] - bins[0]["low"]
        filled = [b for b in bins if b["albums"]]
        ax.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
               color="#4a7ab5", edgecolor="white", label="accuracy in the bin")
        ax.bar([b["low"] for b in filled], [b["confidence"] - b["accuracy"] for b in filled], bottom=[b["accuracy"] for b in filled],
               width=width, align="edge", color="#d9534f", alpha=0.35, edgecolor="#d9534f", label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], color="#555", linestyle="--", linewidth=1)
        for b in filled:
            ax.text(b["low"] + width / 2, 0.01, str(b["albums"]), ha="center", va="bottom", fontsize=6, color="white", rotation=90)
        name = "raw probabilities" if stage == "before" else f"calibrated ({result['calibration']['method']})"
        ax.set_title(f"{name}\nECE {measures['ece']:.3f}, Brier {measures['brier']:.3f}", fontsize=9)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("confidence of the top genre")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle(f"{title}: reliability on {result['albums']} test albums (bars: 15 bins, album counts at the foot)", fontsize=9)
    return save_figure(fig, path)


@dataclass
class Evaluation:
    result: dict
    folder: Path | None

    @property
    def confusion_png(self) -> Path | None:
        return self.folder / CONFUSION_PNG if self.folder else None

    @property
    def reliability_png(self) -> Path | None:
        return self.folder / RELIABILITY_PNG if self.folder else None


def evaluate_model(store: Store, model: TrainedModel, folder: Path | None = None, split: Split | None = None) -> Evaluation:
    """Score ``model`` on the test split it never saw (``split``: the model's, already loaded); write
    evaluation.json and the plots into ``folder``."""
    feature_sets = model.check_store(store, same_state=True)  # the test split it was trained beside
    split = split if split is not None and split.name == model.card.split else load_split(store, model.card.split)
    if split is None:
        raise ModelError(f"the store has no split {model.card.split!r}, which model {model.card.name!r} was trained on")
    test = load_labelled(store, feature_sets, split.album_ids("test"))
    require_rows(test, "test")
    started = time.perf_counter()
    raw = model.estimator.predict_proba(test.X)
    predict_seconds = time.perf_counter() - started
    proba = calibrated(model.calibrator, raw)  # = model.predict_proba(test.X), without predicting twice
    result = evaluate_predictions(model.classes, proba, test.genres)
    Y = genre_matrix(model.classes, test.genres)
    threshold = model.card.min_confidence
    at_threshold = risk_coverage(proba, Y, [threshold])[0]
    result.update(
        calibration={"method": (model.card.calibration or {}).get("method", "none"),
                     "before": calibration_measures(calibrated(None, raw), Y), "after": calibration_measures(proba, Y)},
        reliability={"before": reliability_bins(calibrated(None, raw), Y), "after": reliability_bins(proba, Y)},
        min_confidence=threshold,
        abstained_share=at_threshold["abstained_share"],
        answered_accuracy=at_threshold["answered_accuracy"],
        risk_coverage=risk_coverage(proba, Y, [*RISK_COVERAGE_THRESHOLDS, threshold]),
    )
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
        write_evaluation(result, folder)
    return Evaluation(result, folder)


def write_evaluation(result: dict, folder: Path) -> None:
    """evaluation.json, the confusion heat map and the reliability diagram of one evaluation, into a model's folder."""
    write_atomic(folder / EVALUATION, json.dumps(result, indent=2))
    plot_confusion(result, f"{result['model']} ({result['method']} on {'+'.join(result['features'])})", folder / CONFUSION_PNG)
    plot_reliability(result, result["model"], folder / RELIABILITY_PNG)
