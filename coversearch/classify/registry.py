"""Classifier methods by name."""

from __future__ import annotations

from coversearch.errors import CoverSearchError

METHODS = ("knn", "xgboost", "dense", "ensemble")


def method_class(method: str):
    if method == "knn":
        from coversearch.classify.knn import KNNVote

        return KNNVote
    if method == "xgboost":
        from coversearch.classify.xgboost_clf import XGBoostGenre

        return XGBoostGenre
    if method == "dense":
        from coversearch.classify.dense import DenseGenre

        return DenseGenre
    if method == "ensemble":
        from coversearch.classify.ensemble import EnsembleGenre

        return EnsembleGenre
    raise CoverSearchError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def make_estimator(method: str, params: dict):
    cls = method_class(method)
    try:
        return cls(**params)
    except TypeError as exc:
        raise CoverSearchError(f"bad parameter for {method}: {exc}") from None
