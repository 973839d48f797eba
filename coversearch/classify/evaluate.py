"""Test-split evaluation: accuracy, per-genre recall, confusion matrix (and its heat map).

An album filed under several genres counts as right when the predicted genre is any of them.
Its confusion-matrix row is the genre it was predicted as when that is one of its genres, else
its first genre alphabetically; per-genre recall counts an album under every genre it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from coversearch.plots import pyplot, save_figure


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


def plot_confusion(result: dict, title: str, path: Path) -> Path:
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
    return save_figure(fig, path)
