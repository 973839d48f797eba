"""`train` in named, timed stages: what the card records, what the bars and `--verbose` show, and
that a refit pays for its train-only fit once (it both chooses the rounds and calibrates)."""

from __future__ import annotations

import json

import numpy as np

from coversearch.classify.data import load_labelled
from coversearch.classify.model import TrainedModel
from coversearch.classify.recipes import Recipe
from coversearch.classify.split import load_split
from coversearch.classify.train import train_model
from coversearch.classify.xgboost_clf import XGBoostGenre
from coversearch.stages import StageClock
from coversearch.store import Store
from test_classify import hsv_store, trained_cli, trained_once  # noqa: F401  (shared fixtures)

XGB_STOPPING = {"n_estimators": 200, "learning_rate": 0.3, "early_stopping_rounds": 5}
REFIT_ENSEMBLE = Recipe("staged", "ensemble", ("hsv",), {"members": [
    {"method": "xgboost", "params": XGB_STOPPING, "columns": [0, 512]},
    {"method": "knn", "params": {"k": 5, "index_kind": "exact"}, "columns": [0, 256]},
]}, refit=True)


class Recorder:
    """A stage display that remembers what it was told."""

    def __init__(self):
        self.events: list[tuple] = []

    def start(self, name, unit):
        self.events.append(("start", name, unit))
        return lambda done, total: self.events.append(("advance", name, done, total))

    def finish(self, name, seconds):
        self.events.append(("finish", name, seconds))


def test_the_card_records_every_stage_and_a_refit_fits_each_member_on_train_once(hsv_store, tmp_path):  # noqa: F811
    path, _ = hsv_store
    display = Recorder()
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, REFIT_ENSEMBLE, name="staged", display=display)
        split, fs = load_split(store), [store.feature_set("hsv")]
        (X, y), (X_val, y_val) = (load_labelled(store, fs, split.album_ids(s)).expanded() for s in ("train", "val"))
        val = load_labelled(store, fs, split.album_ids("val"))
    names = [s["stage"] for s in model.card.stages]
    assert names == ["split", "load features",
                     "member 1 xgboost: fit on train", "member 1 xgboost: refit on train+val",
                     "member 2 knn: fit on train", "member 2 knn: refit on train+val",
                     "calibration", "evaluation"]
    assert all(s["seconds"] >= 0 for s in model.card.stages)
    fit_stages = [s["seconds"] for s in model.card.stages if s["stage"].startswith("member")]
    fits = sum(fit_stages)
    # Each figure is rounded to 0.01 s: the rounded fits may add up to a little more than their total.
    assert fits - 0.01 * len(fit_stages) <= model.card.train_seconds < fits + 0.5
    # The display saw each stage start and end in the same order, the rounds counted as they ran.
    assert [e[1] for e in display.events if e[0] == "finish"] == [*names, "save"]
    rounds = [e for e in display.events if e[0] == "advance" and e[1] == "member 1 xgboost: fit on train"]
    assert rounds[0][2:] == (1, 200) and rounds[-1][2] < 200  # early stopping ended it
    # The one train-only fit chose the rounds of the refit and predicted validation for calibration.
    xgb = XGBoostGenre(**XGB_STOPPING).fit(X[:, :512], y, X_val[:, :512], y_val)
    chosen = xgb.booster_.best_iteration + 1
    assert model.card.params["members"][0]["params"]["n_estimators"] == chosen
    assert model.estimator.estimators_[0].booster_.num_boosted_rounds() == chosen
    np.testing.assert_allclose(model.calibration_data["proba"][:, :],
                               (xgb.predict_proba(val.X[:, :512]) + knn_train_only(X, y, val.X)) / 2, atol=1e-6)
    # The card on disk (checksummed) carries the stages, and the evaluation made while training was written.
    loaded = TrainedModel.load(tmp_path, "staged")
    assert loaded.card.stages == model.card.stages
    assert json.loads((tmp_path / "staged" / "evaluation.json").read_text())["accuracy"] == model.evaluation["accuracy"]


def knn_train_only(X, y, rows):
    from coversearch.classify.knn import KNNVote

    return KNNVote(k=5, index_kind="exact").fit(X[:, :256], y).predict_proba(rows[:, :256])


def test_a_refit_without_calibration_or_early_stopping_is_one_fit(hsv_store, tmp_path):  # noqa: F811
    path, _ = hsv_store
    recipe = Recipe("once", "xgboost", ("hsv",), {"n_estimators": 5}, refit=True)
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, recipe, name="once", calibration="none", evaluate=False)
    assert [s["stage"] for s in model.card.stages] == ["split", "load features", "xgboost: refit on train+val"]
    assert model.card.calibration is None and model.evaluation is None


def test_a_refit_whose_fits_are_independent_runs_them_side_by_side_to_the_same_models(hsv_store, tmp_path):  # noqa: F811
    """XGBoost without early stopping: validation chooses nothing, so the train-only fit (for calibration)
    and the refit run at once in two threads; each equals the same fit made alone."""
    path, _ = hsv_store
    params = {"n_estimators": 30, "max_bin": 64}
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, Recipe("side", "xgboost", ("hsv",), params, refit=True), name="side", evaluate=False)
        split, fs = load_split(store), [store.feature_set("hsv")]
        (X, y), (X_val, y_val) = (load_labelled(store, fs, split.album_ids(s)).expanded() for s in ("train", "val"))
        val = load_labelled(store, fs, split.album_ids("val"))
    assert sorted(s["stage"] for s in model.card.stages[2:4]) == ["xgboost: fit on train", "xgboost: refit on train+val"]
    alone = XGBoostGenre(**params).fit(X, y)
    np.testing.assert_allclose(model.calibration_data["proba"], alone.predict_proba(val.X), atol=1e-6)
    both = XGBoostGenre(**params).fit(np.vstack([X, X_val]), np.concatenate([y, y_val]))
    np.testing.assert_allclose(model.estimator.predict_proba(val.X), both.predict_proba(val.X), atol=1e-6)
    assert model.card.train_rows == len(X) + len(X_val) and model.card.params["n_estimators"] == 30


def test_a_stage_is_timed_even_when_it_fails():
    clock = StageClock()
    try:
        with clock("doomed"):
            raise ValueError("boom")
    except ValueError:
        pass
    with clock("fine"):
        pass
    assert [name for name, _ in clock.times] == ["doomed", "fine"] and clock.seconds() >= 0
    assert clock.table()[0]["stage"] == "doomed"


def test_train_verbose_prints_the_stage_table_and_each_stage_has_its_bar(trained_cli):  # noqa: F811
    cli, _, _ = trained_cli
    result = cli("train", "--method", "xgboost", "--feature", "hsv", "--name", "staged", "-p", "n_estimators=7",
                 "-p", "early_stopping_rounds=50", "--verbose")
    assert result.exit_code == 0, result.stderr
    assert "wall time, by stage" in result.stdout
    for stage in ("split", "load features", "xgboost: fit", "calibration", "evaluation", "save"):
        assert stage in result.stdout and stage in result.stderr
    # The rows add up to the wall time, which the summary names beside the fitting's share of it.
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.stdout.splitlines() if line.count("│") == 4]
    seconds = {row[0]: float(row[1]) for row in cells if row[1] and row[1] != "seconds"}
    wall = seconds.pop("wall time")
    assert abs(sum(seconds.values()) - wall) <= 0.05 * len(seconds), (seconds, wall)
    assert f"in {wall:.1f} s wall time, " in result.stdout and " s of it fitting; " in result.stdout
    assert "7/7 round" in result.stderr  # the fit's own bar counts boosting rounds
    quiet = cli("train", "--method", "xgboost", "--feature", "hsv", "--name", "staged2", "-p", "n_estimators=3", "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
