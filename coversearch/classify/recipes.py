"""Named recipes: the study's three, reproduced faithfully, and our default.

A recipe is data (method, features, parameters); ``coversearch train --recipe NAME`` trains one,
and ``coversearch train`` with no options trains ``DEFAULT_RECIPE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from coversearch.errors import CoverSearchError
from coversearch.features.text import TEXT_VECTOR_DIM
from coversearch.features.vgg16 import LAYER_STATS_CHANNELS, LAYER_STATS_DIM


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    features: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Fit the shipped model on train + validation (``fit_final``), after validation has chosen
    # epochs or boosting rounds on train alone.  The study's recipes keep their train-only fit.
    refit: bool = False


# The study's dense head: 256 ReLU, dropout 0.5, RMSprop 1e-4, on raw (unstandardised) inputs.
STUDY_HEAD = {"hidden": 256, "dropout": 0.5, "learning_rate": 1e-4, "standardize": False}

STUDY_RECIPES = (
    # The study's nearest_neighbours.py: an Annoy forest of 20 trees, queried with Annoy's own
    # search_k (-1: n_trees * k candidates), 10 neighbours.
    Recipe("study-knn-hsv", "knn", ("hsv",), {"k": 10, "index_kind": "annoy", "metric": "euclidean",
                                              "index_params": {"n_trees": 20}, "query_params": {"search_k": -1}},
           "HSV histogram, majority vote of the 10 nearest covers found by Annoy (study: ~13% of 10 genres)"),
    Recipe("study-xgboost-hsv", "xgboost", ("hsv",), {},
           "XGBoost with its default parameters on the HSV histogram (study: ~17% of 10 genres)"),
    # The study's cnn.py: VGG16 block5_pool at 150 px, flattened; 256 ReLU, dropout 0.5, softmax,
    # RMSprop 1e-4, 20 epochs of batch 64 (we keep the best of them on validation, as for every
    # dense head).
    Recipe("study-dense-vgg16", "dense", ("vgg16-study",),
           {**STUDY_HEAD, "epochs": 20, "batch_size": 64},
           "VGG16 conv-base features as the study took them (150 px, flattened block5_pool), dense head 256 ReLU"
           " + dropout, RMSprop 1e-4 (study: ~33% of 10 genres)"),
)

# The study's dense head on our own VGG16 feature (224 px, ImageNet preprocessing, block5_pool
# averaged over positions): a stronger variant of the study's recipe, not the study's recipe.
STUDY_HEAD_ON_VGG16 = Recipe(
    "dense-vgg16", "dense", ("vgg16",), STUDY_HEAD,
    "the study's dense head on our vgg16 feature (224 px, ImageNet preprocessing, average-pooled)",
)

DEFAULT_RECIPE = "default"

# XGBoost as tuned on held-out folds: more, shallower, slower-learning trees, each seeing a
# random 30% of the columns (XGBoost's defaults overfit 2,560 correlated activations).  64 histogram
# bins per column instead of 256 build each tree 1.7x faster at the same accuracy.
TUNED_XGBOOST = {"n_estimators": 400, "max_depth": 4, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.3,
                 "max_bin": 64}

# Column ranges inside the vgg16-layers vector: [means of block3, 4, 5 | stds of block3, 4, 5].
LAYERS_ALL = [0, LAYER_STATS_DIM]
LAYERS_BLOCK4_5_MEANS = [LAYER_STATS_CHANNELS[0], sum(LAYER_STATS_CHANNELS)]

# The first default (issue 4, first session): a soft vote over the study's vgg16 feature + hsv.
FIRST_DEFAULT = Recipe(
    "ensemble-vgg16-hsv",
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

# The default's members that read the pixels: a soft vote over VGG16 block 3-5 channel statistics
# (one forward pass, like vgg16).  Chosen by 5-fold cross-validation on the train+validation albums
# only, then refitted on all of them (refit=True).  See docs/design.md, "How the default genre model
# was chosen", and benchmarks/select_classifier.py.
PIXEL_MEMBERS = [
    {"method": "dense", "params": {"hidden": 512, "dropout": 0.6, "power": 0.5}, "columns": LAYERS_ALL},
    {"method": "xgboost", "params": {**TUNED_XGBOOST, "seed": 0}, "columns": LAYERS_ALL},
    {"method": "xgboost", "params": {**TUNED_XGBOOST, "seed": 1}, "columns": LAYERS_BLOCK4_5_MEANS},
]

# The member that reads the words printed on the cover (the `text` feature, after vgg16-layers in
# the model's columns): TF-IDF of character 2-4-grams and a logistic regression.  A cover with no
# legible text gets a uniform vote from it, which leaves the other members' ranking as it was.
# It lifted the default from 41.2% to 46.3% on covers5's group-aware split for 6% more training
# CPU (benchmarks/bench_text_genre.py; docs/genres.md, "The words on the cover").
TEXT_COLUMNS = [LAYER_STATS_DIM, LAYER_STATS_DIM + TEXT_VECTOR_DIM]
TEXT_MEMBER = {"method": "text-linear", "params": {}, "columns": TEXT_COLUMNS}

DEFAULT = Recipe(
    DEFAULT_RECIPE,
    "ensemble",
    ("vgg16-layers", "text"),
    {"members": [*PIXEL_MEMBERS, TEXT_MEMBER]},
    "soft vote: dense head (sqrt inputs) + tuned XGBoost on VGG16 block 3-5 mean/std, + tuned XGBoost on block 4-5 means,"
    " + TF-IDF of the printed text's character 2-4-grams with a logistic regression; refitted on train + validation",
    refit=True,
)

# The default without its text member: what `coversearch train` trains on a store without the text
# feature (``for_store``), and the comparison in bench_text_genre.py.
DEFAULT_NO_TEXT = Recipe(
    "default-no-text",
    "ensemble",
    ("vgg16-layers",),
    {"members": PIXEL_MEMBERS},
    "the default's pixel members alone: dense head (sqrt inputs) + two tuned XGBoost on VGG16 block 3-5 statistics;"
    " refitted on train + validation",
    refit=True,
)

NO_TEXT_NOTE = ("the store has no text feature: the default was trained without its text member "
                "(`coversearch ingest ROOT --features text` reads the covers' words; then train again)")


def for_store(recipe: Recipe, has_text: bool) -> tuple[Recipe, str | None]:
    """The default as ``coversearch train`` trains it on a store with or without the text feature
    (its own name kept), and a note when the text member was left out.  Any other recipe, or a
    default whose members were changed by hand, is returned as it is."""
    if has_text or recipe.name != DEFAULT_RECIPE or recipe.features != DEFAULT.features \
            or recipe.params.get("members") != DEFAULT.params["members"]:
        return recipe, None
    return replace(recipe, features=DEFAULT_NO_TEXT.features, params={**recipe.params, **DEFAULT_NO_TEXT.params}), NO_TEXT_NOTE


RECIPES: dict[str, Recipe] = {r.name: r for r in (*STUDY_RECIPES, STUDY_HEAD_ON_VGG16, FIRST_DEFAULT, DEFAULT,
                                                  DEFAULT_NO_TEXT)}


def register(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise CoverSearchError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}") from None
