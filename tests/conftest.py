"""Shared fixtures: the real covers and VGG16 weights from ../shared, small real stores, the CLI."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COVERSEARCH_SHARED") or REPO.parent / "shared")
GENRES = ("Country", "Electronic", "HipHop", "Pop", "Rock")


# What makes a test slow: these fixtures (VGG16, a trained web store) or a whole module of such tests.
SLOW_FIXTURES = {"vgg16_weights", "vgg16_extractor", "web_store", "trained_cli", "hsv_sides"}
SLOW_MODULES = {"test_ray_ingest", "test_kill_resume", "test_live", "test_sharded", "test_bench_search", "test_calibration",
                "test_backbone", "test_wheel", "test_hardening_ray", "test_map_layout"}  # the last two: Ray, t-SNE layouts
# Single tests over ~5 s that use none of the fixtures above (from `pytest --durations`).
SLOW_TESTS = {"test_each_method_saves_and_loads_to_the_same_predictions", "test_refit_dense_runs_the_chosen_epochs_on_both_sides",
              "test_a_refit_model_records_it_and_its_members_choices", "test_adding_a_feature_later_computes_only_what_is_missing",
              "test_every_transformation_of_a_stored_cover_is_found_at_the_default_thresholds",
              "test_each_original_and_its_copies_form_one_group_and_nothing_else_joins",
              "test_readers_are_told_an_ingest_holds_the_store",
              "test_pipes_devices_and_huge_files_become_error_rows_and_the_run_completes",
              "test_a_feature_an_index_kind_and_a_classifier_each_one_module_and_one_line",
              # the first TensorFlow or XGBoost load in a process, the real links file, an imported feature end to end
              "test_vgg16_without_weights_fails_before_touching_the_store", "test_vgg16_without_weights_names_both_options",
              "test_a_damaged_xgboost_model_is_refused_before_xgboost_reads_it", "test_dry_run_on_real_links_file_without_network",
              "test_similar_index_and_classifiers_use_an_imported_feature"}


def pytest_collection_modifyitems(config, items):
    """``browser`` for tests that use the browser fixture, ``slow`` for the heavy ones (see SLOW_*)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "browser" in names:
            item.add_marker(pytest.mark.browser)
        if names & SLOW_FIXTURES or item.module.__name__ in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def _require(path: Path) -> Path:
    if not path.exists():
        # Fail, never skip: the suite is meaningless without the real data beside the repo.
        pytest.fail(f"missing {path}: tests need ../shared beside the repository (or COVERSEARCH_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def covers5_dir(shared_dir) -> Path:
    return _require(shared_dir / "data" / "covers5")


@pytest.fixture(scope="session")
def vgg16_weights(shared_dir) -> Path:
    return _require(shared_dir / "models" / "vgg16_imagenet_notop.weights.h5")


@pytest.fixture(scope="session")
def cross_genre_duplicates(covers5_dir) -> list[tuple[Path, Path]]:
    """Three (Electronic path, Pop path) pairs of covers5 files holding the same bytes."""
    import hashlib

    def digests(genre: str) -> dict[str, Path]:
        return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in sorted((covers5_dir / genre).iterdir())}

    electronic, pop = digests("Electronic"), digests("Pop")
    pairs = [(electronic[d], pop[d]) for d in sorted(set(electronic) & set(pop))][:3]
    assert len(pairs) == 3, "covers5 should hold Electronic/Pop duplicates (see shared/data/README.md)"
    return pairs


def copy_covers(covers5_dir: Path, dest: Path, per_genre: int, genres=GENRES, offset: int = 0) -> Path:
    """Copy the first `per_genre` covers (after `offset`) of each genre into dest/<genre>/."""
    for genre in genres:
        (dest / genre).mkdir(parents=True, exist_ok=True)
        for path in sorted((covers5_dir / genre).iterdir())[offset : offset + per_genre]:
            shutil.copy2(path, dest / genre / path.name)
    return dest


def link_covers(covers5_dir: Path, dest: Path, per_genre: int, offset: int = 0) -> Path:
    """Like copy_covers, with symlinks to the real files (cheaper than copying)."""
    for genre in GENRES:
        (dest / genre).mkdir(parents=True, exist_ok=True)
        for path in sorted((covers5_dir / genre).iterdir())[offset : offset + per_genre]:
            (dest / genre / path.name).symlink_to(path)
    return dest


@pytest.fixture
def small_covers(covers5_dir, tmp_path) -> Path:
    """A real ROOT/<genre>/<image> folder: 4 covers from each of the 5 genres."""
    return copy_covers(covers5_dir, tmp_path / "covers", per_genre=4)


@pytest.fixture(scope="session")
def vgg16_extractor(vgg16_weights):
    """One loaded VGG16 for the whole session (building it costs seconds)."""
    from coversearch.features.registry import get_extractor

    extractor = get_extractor("vgg16", vgg16_weights=vgg16_weights)
    extractor.model()
    return extractor


# -- the browser and the small web store: one of each per session, for every module that uses them --
# (defined here, not imported from test_web: a fixture imported into a module is a separate fixture
# there, built again for that module)
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WEB_PER_GENRE = 8


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A real headless Chromium (Debian's chromium + chromium-driver), driven by Selenium."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        # Fail, never skip: the page and the report are only tested in a real browser.
        pytest.fail(f"missing {', '.join(missing)}: install them with `apt-get install -y chromium chromium-driver`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serving(db: Path, models: Path, index_dir: Path | None = None, vgg16_weights: Path | None = None, *,
            threads: int = 4, engine_options: dict | None = None, **server_options):
    """The real app on waitress (what `coversearch serve` runs), on 127.0.0.1; yields (url, engine)."""
    from coversearch.web import create_app
    from coversearch.web.server import WebServer

    app = create_app(db, models, index_dir, vgg16_weights, **(engine_options or {}))
    srv = WebServer(app, "127.0.0.1", 0, threads=threads, **server_options)
    srv.start()
    try:
        yield f"http://127.0.0.1:{srv.port}", app.extensions["coversearch"]
    finally:
        srv.stop()
        app.extensions["coversearch"].close()


@pytest.fixture(scope="session")
def web_store(tmp_path_factory, covers5_dir, vgg16_extractor, vgg16_weights):
    """A small real store (8 covers per genre, hsv, vgg16, vgg16-layers) and a folder of three quick calibrated models."""
    from coversearch.classify.recipes import Recipe
    from coversearch.classify.split import make_split
    from coversearch.classify.train import train_model
    from coversearch.features.registry import get_extractor
    from coversearch.ingest.pipeline import ingest
    from coversearch.ingest.readers import read_source
    from coversearch.store import Store

    root = link_covers(covers5_dir, tmp_path_factory.mktemp("web-covers"), per_genre=WEB_PER_GENRE, offset=300)
    base = tmp_path_factory.mktemp("web-store")
    db, models = base / "store.duckdb", base / "models"
    with Store.open(db) as store:
        ingest(store, read_source(root), [get_extractor("hsv"), vgg16_extractor, get_extractor("vgg16-layers", vgg16_weights=vgg16_weights)])
        make_split(store, fractions=(0.6, 0.2, 0.2))  # one validation album per genre: the models are calibrated on them
        train_model(store, models, Recipe("xgb-hsv", "xgboost", ("hsv",), {"n_estimators": 5}), name="xgb-hsv")
        train_model(store, models, Recipe("knn-vgg16", "knn", ("vgg16",), {"k": 3, "index_kind": "exact", "metric": "cosine"}),
                    name="knn-vgg16")
        # A feature the page never searches, only classifies with (as the default model does).
        train_model(store, models, Recipe("xgb-layers", "xgboost", ("vgg16-layers",), {"n_estimators": 5}), name="xgb-layers")
    return db, models, root


def run_cli(*args, env: dict | None = None, db: Path | None = None, index_dir: Path | None = None,
            model_dir: Path | None = None):
    """The real CLI, in-process; ``db``, ``index_dir`` and ``model_dir`` become the global options.
    Exceptions other than user errors propagate: they are bugs."""
    from coversearch.cli.main import app

    argv = []
    for flag, value in (("--db", db), ("--index-dir", index_dir), ("--model-dir", model_dir)):
        if value is not None:
            argv += [flag, str(value)]
    return CliRunner().invoke(app, [*argv, *map(str, args)], env=env, catch_exceptions=False)


def one_line_error(result, *needles: str) -> str:
    """The command failed with exactly one ``error: ...`` line on stderr (no traceback) holding every needle."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


class Cli:
    """Runs the real CLI in-process against one store and index folder."""

    def __init__(self, db: Path, index_dir: Path, model_dir: Path):
        self.db = db
        self.index_dir = index_dir
        self.model_dir = model_dir

    def __call__(self, *args: str, env: dict | None = None):
        return run_cli(*args, env=env, db=self.db, index_dir=self.index_dir, model_dir=self.model_dir)


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models")


def hsv_map(covers5_dir: Path, tmp_path: Path, per_genre: int, *map_args: str):
    """``per_genre`` real covers per genre ingested with hsv; (cli, run): ``run(*args)`` makes the map
    of hsv (``map_args`` and ``args``) into tmp_path/map.html and returns its ``--json`` summary."""
    import json

    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=per_genre)
    cli = Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models")
    assert cli("ingest", root, "--features", "hsv", "--quiet").exit_code == 0

    def run(*args) -> dict:
        result = cli("map", "--feature", "hsv", "--out", tmp_path / "map.html", "--json", *map_args, *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return cli, run
