"""Calibrated probabilities and "none of these": the measures, the calibrators, how train fits
them (on a fit that never saw validation), and `classify --min-confidence` through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coversearch.classify.calibration import (
    TemperatureScaling, brier_score, calibrated, choose_min_confidence, expected_calibration_error, fit_calibrator,
    genre_matrix, parse_min_confidence, reliability_bins, risk_coverage,
)
from coversearch.classify.data import load_labelled
from coversearch.classify.model import TrainedModel
from coversearch.classify.recipes import Recipe
from coversearch.classify.split import load_split
from coversearch.classify.train import train_model
from coversearch.classify.xgboost_clf import XGBoostGenre
from coversearch.errors import CoverSearchError
from coversearch.store import Store
from test_classify import hsv_store, one_line_error, trained_cli, trained_once  # noqa: F401  (shared fixtures)

GENRES = ["Country", "Electronic", "HipHop", "Pop", "Rock"]


# -- the measures, on numbers worked by hand ---------------------------------------------------------
def test_ece_and_brier_by_hand():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    Y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=bool)
    # Bins: 0.9 (two albums, one right), 0.6 (right), 0.7 (right): |0.5 - 0.9| * 2/4 + |1 - 0.6| / 4 + |1 - 0.7| / 4
    assert expected_calibration_error(proba, Y) == pytest.approx(0.2 + 0.1 + 0.075)
    assert [b["albums"] for b in reliability_bins(proba, Y) if b["albums"]] == [1, 1, 2]
    # Brier: (0.01 + 0.01), (0.81 + 0.81), (0.16 + 0.16), (0.09 + 0.09), averaged
    assert brier_score(proba, Y) == pytest.approx((0.02 + 1.62 + 0.32 + 0.18) / 4)
    # An album of both genres is right either way: its target is the genre ranked higher.
    both = np.array([[True, True]])
    assert brier_score(np.array([[0.3, 0.7]]), both) == pytest.approx(0.09 + 0.09)
    assert genre_matrix(GENRES, [("Pop",), ("Electronic", "Pop"), ("Jazz",)]).sum(axis=1).tolist() == [1, 2, 0]


def test_temperature_scaling_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.2, size=(4000, 5))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in truth])
    Y = np.eye(5, dtype=bool)[labels]
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)  # over-confident by a factor 3
    scaler = TemperatureScaling().fit(sharp, Y)
    assert scaler.temperature == pytest.approx(3.0, rel=0.08)
    fixed = scaler.transform(sharp)
    assert expected_calibration_error(fixed, Y) < 0.03 < expected_calibration_error(sharp, Y)
    assert (np.argmax(fixed, axis=1) == np.argmax(sharp, axis=1)).all()  # the ranking is untouched
    isotonic = fit_calibrator("isotonic", sharp, Y)
    assert expected_calibration_error(isotonic.transform(sharp), Y) < expected_calibration_error(sharp, Y) / 3


def test_calibrated_probabilities_are_never_exactly_certain():
    certain = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    out = calibrated(None, certain)
    assert (out > 0).all() and (out < 1).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_the_default_threshold_abstains_on_at_most_the_share_asked():
    proba = np.column_stack([np.linspace(0.2, 0.9, 100), 1 - np.linspace(0.2, 0.9, 100)])
    threshold = choose_min_confidence(proba, 0.08)
    abstained = (proba.max(axis=1) < threshold).mean()
    assert abstained <= 0.08 and (proba.max(axis=1) < np.nextafter(threshold, 1)).mean() > abstained - 0.02
    Y = np.ones_like(proba, dtype=bool)
    rows = risk_coverage(proba, Y, [0.0, 1.0])
    assert (rows[0]["abstained_share"], rows[1]["abstained_share"], rows[1]["answered_accuracy"]) == (0.0, 1.0, None)


@pytest.mark.parametrize("value", ["abc", "-0.1", "1.5", "nan", "inf", "1e400", True, "", " "])
def test_a_bad_threshold_is_one_clear_error(value):
    with pytest.raises(CoverSearchError, match=r"^--min-confidence must be a number from 0 to 1"):
        parse_min_confidence(value)


def test_good_thresholds_parse():
    assert [parse_min_confidence(v) for v in ("0", "1", "0.35", " 0.5 ", 0.5, None)] == [0.0, 1.0, 0.35, 0.5, 0.5, None]
    # A web form's empty field means the model's default; on the command line it is refused (above).
    assert [parse_min_confidence(v, "min_confidence", empty_is_default=True) for v in ("", " ", None, "0.2")] == [None, None, None, 0.2]


# -- train: calibration fitted on validation, from a fit that never learnt from it --------------------
def validation_of(store):
    split = load_split(store)
    return load_labelled(store, [store.feature_set("hsv")], split.album_ids("val"))


def test_calibration_lowers_the_validation_ece_of_an_overconfident_model(hsv_store, tmp_path):  # noqa: F811
    path, _ = hsv_store
    # The vote of one nearest neighbour: certain (probability 1) every time, and mostly wrong.
    recipe = Recipe("overconfident", "knn", ("hsv",), {"k": 1, "index_kind": "exact"})
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, recipe, name="overconfident", evaluate=False)
        val = validation_of(store)
    Y = genre_matrix(model.classes, val.genres)
    raw = model.estimator.predict_proba(val.X)
    assert raw.max(axis=1).min() == 1.0 and np.mean(Y[np.arange(len(Y)), raw.argmax(axis=1)]) < 0.6  # over-confident indeed
    shipped = model.predict_proba(val.X)
    assert expected_calibration_error(shipped, Y) < expected_calibration_error(raw, Y) - 0.3
    card = model.card.calibration
    assert card["method"] == "temperature" and card["temperature"] > 2
    assert card["validation_after"]["ece"] < card["validation_before"]["ece"]
    assert card["validation_after"]["log_loss"] < card["validation_before"]["log_loss"]
    # Stored with the model: the reload gives the same calibrated probabilities and default threshold.
    loaded = TrainedModel.load(tmp_path, "overconfident")
    np.testing.assert_allclose(loaded.predict_proba(val.X), shipped, atol=1e-9)
    assert loaded.card.min_confidence == card["min_confidence"] > 0
    assert json.loads((tmp_path / "overconfident" / "calibration.json").read_text())["temperature"] == pytest.approx(card["temperature"], rel=1e-5)
    # Isotonic, fitted on the same stored validation probabilities, lowers it too.
    isotonic = fit_calibrator("isotonic", loaded.calibration_data["proba"], loaded.calibration_data["Y"])
    assert expected_calibration_error(isotonic.transform(raw), Y) < expected_calibration_error(raw, Y) - 0.3


def test_a_refit_model_is_calibrated_on_the_train_only_fits_validation_probabilities(hsv_store, tmp_path):  # noqa: F811
    path, _ = hsv_store
    params = {"n_estimators": 80, "learning_rate": 0.3, "early_stopping_rounds": 5}
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, Recipe("r", "xgboost", ("hsv",), params, refit=True), name="r", evaluate=False)
        split, fs = load_split(store), [store.feature_set("hsv")]
        (X, y), (X_val, y_val) = (load_labelled(store, fs, split.album_ids(s)).expanded() for s in ("train", "val"))
        val = validation_of(store)
    train_only = XGBoostGenre(**params).fit(X, y, X_val, y_val).predict_proba(val.X)
    np.testing.assert_allclose(model.calibration_data["proba"], train_only, atol=1e-6)
    # The shipped model learnt from validation: its own validation probabilities are not what calibrated it.
    assert np.abs(model.estimator.predict_proba(val.X) - train_only).max() > 0.01
    assert "train alone" in model.card.calibration["fitted_on"] and model.card.refit


def test_train_without_calibration_ships_raw_probabilities(trained_cli):  # noqa: F811
    cli, _, _ = trained_cli
    result = cli("train", "--method", "xgboost", "--feature", "hsv", "--name", "raw", "-p", "n_estimators=5",
                 "--calibration", "none", "--json")
    out = json.loads(result.stdout)
    assert out["card"]["calibration"] is None and out["evaluation"]["min_confidence"] == 0.0
    assert out["evaluation"]["calibration"]["before"] == out["evaluation"]["calibration"]["after"]
    assert not (cli.model_dir / "raw" / "calibration.json").exists()
    one_line_error(cli("train", "--method", "xgboost", "--feature", "hsv", "--calibration", "platt"),
                   "unknown calibration 'platt'", "temperature, isotonic, none")


# -- the CLI: evaluate and classify --min-confidence ---------------------------------------------------
def test_evaluate_reports_calibration_risk_coverage_and_a_reliability_diagram(trained_cli):  # noqa: F811
    cli, _, trained = trained_cli
    out = json.loads(cli("evaluate", "--model", "xgb", "--json").stdout)
    for stage in ("before", "after"):
        assert 0 <= out["calibration"][stage]["ece"] <= 1 and 0 <= out["calibration"][stage]["brier"] <= 2
    assert out["calibration"]["method"] == "temperature" and out["accuracy"] == trained["evaluation"]["accuracy"]
    assert sum(b["albums"] for b in out["reliability"]["after"]) == out["albums"]
    rows = {r["min_confidence"]: r for r in out["risk_coverage"]}
    assert rows[0.0]["abstained_share"] == 0.0 and rows[0.0]["answered_accuracy"] == pytest.approx(out["accuracy"])
    assert out["min_confidence"] in rows and rows[out["min_confidence"]]["abstained_share"] == out["abstained_share"]
    shares = [r["abstained_share"] for r in out["risk_coverage"]]
    assert shares == sorted(shares)
    with open(out["reliability_png"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    text = cli("evaluate", "--model", "xgb").stdout
    assert "test ECE" in text and "(default)" in text and "reliability diagram:" in text


def test_min_confidence_one_abstains_on_everything_and_zero_on_nothing(trained_cli, tmp_path, covers5_dir):  # noqa: F811
    from conftest import copy_covers

    cli, _, _ = trained_cli
    folder = copy_covers(covers5_dir, tmp_path / "new", per_genre=2, offset=900)

    def classify(*extra):
        result = cli("classify", folder, "--model", "xgb", "--json", "--top", "5", *extra)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    everything, nothing, default = classify("--min-confidence", "1.0"), classify("--min-confidence", "0"), classify()
    assert everything["min_confidence"] == 1.0 and nothing["min_confidence"] == 0.0
    assert [r["answer"] for r in everything["results"]] == ["unknown"] * 10
    assert [r["answer"] for r in nothing["results"]] == [r["genres"][0]["genre"] for r in nothing["results"]]
    # "unknown" keeps the ranked genres, the same as when the model answers.
    assert [r["genres"] for r in everything["results"]] == [r["genres"] for r in nothing["results"]]
    assert all(r["confidence"] == r["genres"][0]["probability"] for r in everything["results"])
    # The model's own threshold, chosen on validation, is the default.
    card = json.loads((cli.model_dir / "xgb" / "card.json").read_text())
    assert default["min_confidence"] == card["calibration"]["min_confidence"] and default["calibration"] == "temperature"
    assert [r["answer"] for r in default["results"]] == [
        r["genres"][0]["genre"] if r["confidence"] >= default["min_confidence"] else "unknown" for r in default["results"]]
    assert "unknown" in cli("classify", folder, "--model", "xgb", "--min-confidence", "1").stdout


def test_classify_refuses_a_bad_min_confidence_in_one_line(trained_cli, covers5_dir):  # noqa: F811
    cli, _, _ = trained_cli
    image = sorted((covers5_dir / "Pop").iterdir())[951]
    for value in ("abc", "1.5", "-0.2", "nan", ""):
        one_line_error(cli("classify", image, "--model", "xgb", "--min-confidence", value),
                       f"--min-confidence must be a number from 0 to 1 (a probability), not '{value}'")
