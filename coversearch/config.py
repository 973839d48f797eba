"""Where things live by default, and the environment variables that move them."""

from __future__ import annotations

import os
from pathlib import Path

DB_ENV = "COVERSEARCH_DB"
INDEX_DIR_ENV = "COVERSEARCH_INDEX_DIR"
MODEL_DIR_ENV = "COVERSEARCH_MODEL_DIR"
VGG16_WEIGHTS_ENV = "COVERSEARCH_VGG16_WEIGHTS"
LOCK_TIMEOUT_ENV = "COVERSEARCH_LOCK_TIMEOUT"

DEFAULT_DB = "coversearch.duckdb"
DEFAULT_INDEX_DIR = "indexes"
DEFAULT_MODEL_DIR = "models"


def default_db_path() -> Path:
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def default_index_dir() -> Path:
    return Path(os.environ.get(INDEX_DIR_ENV) or DEFAULT_INDEX_DIR)


def default_model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def vgg16_weights_from_env() -> Path | None:
    value = os.environ.get(VGG16_WEIGHTS_ENV)
    return Path(value) if value else None
