"""Why this genre: occlusion heat maps through the whole pipeline (real VGG16, a real ensemble
with XGBoost members), written by `classify --explain` at the cover's size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coversearch.classify.explain import model_embedder, occlusion
from coversearch.classify.model import TrainedModel
from coversearch.classify.recipes import Recipe
from coversearch.classify.train import train_model
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.store import Store
from conftest import Cli
from test_web import a_cover

# The default recipe's shape, small: a soft vote with two XGBoost members and a kNN member over
# VGG16 layer statistics and the colour histogram.
ENSEMBLE = Recipe("ens", "ensemble", ("vgg16-layers", "hsv"), {"members": [
    {"method": "xgboost", "params": {"n_estimators": 8}, "columns": [0, 2560]},
    {"method": "xgboost", "params": {"n_estimators": 8}, "columns": [2560, 3072]},
    {"method": "knn", "params": {"k": 3, "index_kind": "exact", "metric": "cosine"}, "columns": [0, 2560]},
]})


@pytest.fixture(scope="module")
def ensemble(web_store, tmp_path_factory):
    db, _, _ = web_store
    models = tmp_path_factory.mktemp("explain-models")
    with Store.open(db, read_only=True) as store:
        train_model(store, models, ENSEMBLE, name="ens", evaluate=False)
    return db, models


def test_explain_writes_a_heat_map_of_the_covers_size(ensemble, covers5_dir, vgg16_weights, tmp_path):
    db, models = ensemble
    cli = Cli(db, tmp_path / "indexes", models)
    cover = a_cover(covers5_dir, "Rock", 1)
    out = tmp_path / "why.png"
    result = cli("classify", cover, "--model", "ens", "--explain", out, "--vgg16-weights", vgg16_weights)
    assert result.exit_code == 0, result.output
    assert "explanation of " in result.stderr and "49 masked copies" in result.stderr
    with Image.open(out) as png, Image.open(cover) as original:
        assert png.format == "PNG" and png.size == original.size


def test_the_strongest_region_differs_between_two_very_different_covers(ensemble, covers5_dir, vgg16_weights):
    _, models = ensemble
    model = TrainedModel.load(models, "ens")
    embedder = model_embedder(model, vgg16_weights)
    peaks = []
    for genre, i in (("Electronic", 0), ("Country", 5)):
        rgb = decode_image(read_bytes(a_cover(covers5_dir, genre, i))).rgb
        # A coarse 3 x 3 grid of half-side patches keeps the test fast (the CLI uses 7 x 7).
        found = occlusion(model, embedder, rgb, patch_fraction=0.5, stride_fraction=0.25)
        assert found.heat.shape == rgb.shape[:2] and found.patches == 9
        assert found.heat.max() > 0  # some region matters
        peaks.append(np.unravel_index(np.argmax(found.heat), found.heat.shape))
    (r0, c0), (r1, c1) = peaks
    assert abs(r0 - r1) + abs(c0 - c1) > 0.1 * 600, peaks  # covers5 covers are 600 px or so: another region


@pytest.mark.parametrize(
    "args,message",
    [
        (["--explain", "{tmp}/nowhere/why.png"], "folder {tmp}/nowhere does not exist"),
        (["--explain", "{tmp}"], "is a folder"),
    ],
)
def test_explain_bad_input(ensemble, covers5_dir, tmp_path, args, message):
    db, models = ensemble
    cli = Cli(db, tmp_path / "indexes", models)
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli("classify", a_cover(covers5_dir), "--model", "ens", *args)
    assert result.exit_code != 0 and message.format(tmp=tmp_path) in result.stderr.strip().splitlines()[-1]


def test_explain_refuses_several_images(ensemble, covers5_dir, tmp_path):
    db, models = ensemble
    cli = Cli(db, tmp_path / "indexes", models)
    result = cli("classify", a_cover(covers5_dir), a_cover(covers5_dir, "Pop"), "--model", "ens", "--explain", tmp_path / "w.png")
    assert result.exit_code != 0 and "error: --explain explains one image; 2 were given" in result.stderr


def test_report_explains_the_most_confident_test_cover_of_each_genre_and_maps_the_catalogue(web_store, browser, tmp_path):  # noqa: F811
    from typer.testing import CliRunner
    from selenium.webdriver.common.by import By

    from coversearch.classify.explain import most_confident_test_albums
    from coversearch.cli.main import app
    from test_web import images_loaded

    db, models, _ = web_store
    out = tmp_path / "report.html"
    argv = ["--db", str(db), "--model-dir", str(models), "report", "--out", str(out), "--explain", "--model", "xgb-hsv", "--map", "vgg16",
            "--bench-dir", str(tmp_path / "none")]
    result = CliRunner().invoke(app, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Store.open(db, read_only=True) as store:
        picks = most_confident_test_albums(store, TrainedModel.load(models, "xgb-hsv"))
    assert picks  # the split's test side holds covers of every genre
    browser.get(out.as_uri())
    figures = browser.find_elements(By.CSS_SELECTOR, "#explanations figure.explain")
    got = {f.get_attribute("data-genre"): int(f.get_attribute("data-album-id")) for f in figures}
    assert got == {g: a for g, (a, _) in picks.items()}
    count, broken = images_loaded(browser, "#explanations img")
    assert count == len(picks) and broken == []
    # The map section (asked for with --map): one picture of every album, laid out now.
    assert images_loaded(browser, "#map img") == [1, []]
    assert "t-SNE of its vgg16 v1 vectors" in browser.find_element(By.ID, "map").text
