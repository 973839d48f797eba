"""Classifier methods by name: one line each, the module imported when the method is first used."""

from __future__ import annotations

from coversearch.errors import CoverSearchError
from coversearch.registry import Registry

CLASSIFIERS = Registry("method", {
    "knn": "coversearch.classify.knn:KNNVote",
    "xgboost": "coversearch.classify.xgboost_clf:XGBoostGenre",
    "dense": "coversearch.classify.dense:DenseGenre",
    "ensemble": "coversearch.classify.ensemble:EnsembleGenre",
    "text-linear": "coversearch.classify.text_linear:TextLinearGenre",
})
METHODS = CLASSIFIERS  # the registered names, live


def register(method: str, target: str) -> None:
    """Add a classifier method: ``target`` is "package.module:Class" (see coversearch/registry.py)."""
    CLASSIFIERS.register(method, target)


def method_class(method: str):
    return CLASSIFIERS.load(method)


def make_estimator(method: str, params: dict):
    cls = method_class(method)
    try:
        return cls(**params)
    except TypeError as exc:
        raise CoverSearchError(f"bad parameter for {method}: {exc}") from None
