"""Named recipes: the study's three, reproduced faithfully, and our default.

A recipe is data (method, features, parameters); ``coversearch train --recipe NAME`` trains one,
and ``coversearch train`` with no options trains ``DEFAULT_RECIPE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coversearch.errors import CoverSearchError


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    features: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


STUDY_RECIPES = (
    Recipe("study-knn-hsv", "knn", ("hsv",), {"k": 10, "index_kind": "annoy", "metric": "euclidean"},
           "HSV histogram, majority vote of the 10 nearest covers found by Annoy (study: ~13% of 10 genres)"),
    Recipe("study-xgboost-hsv", "xgboost", ("hsv",), {},
           "XGBoost with its default parameters on the HSV histogram (study: ~17% of 10 genres)"),
    Recipe("study-dense-vgg16", "dense", ("vgg16",),
           {"hidden": 256, "dropout": 0.5, "learning_rate": 1e-4, "standardize": False},
           "VGG16 conv-base features, dense head 256 ReLU + dropout, RMSprop 1e-4 (study: ~33% of 10 genres)"),
)

DEFAULT_RECIPE = "default"

# Our default: soft vote of three different learners over vgg16 (+ hsv for the trees).  Chosen on
# the validation split among the candidates in benchmarks/README.md; see "Beating the study".
DEFAULT = Recipe(
    DEFAULT_RECIPE,
    "ensemble",
    ("vgg16", "hsv"),
    {
        "members": [
            {"method": "dense", "params": {}, "columns": [0, 512]},
            {"method": "xgboost", "params": {}, "columns": [0, 1024]},
            {"method": "knn", "params": {"k": 10, "index_kind": "exact", "metric": "cosine"}, "columns": [0, 512]},
        ]
    },
    "soft vote: dense head on vgg16 + XGBoost on vgg16+hsv + 10-NN (cosine) on vgg16",
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (*STUDY_RECIPES, DEFAULT)}


def register(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise CoverSearchError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}") from None
