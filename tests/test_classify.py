"""Genre classifiers: the split's invariants, each method's save/load, refusals and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter

import numpy as np
import pytest

from conftest import Cli, copy_covers, one_line_error, run_cli
from coversearch.classify.data import load_labelled
from coversearch.classify.model import ModelError, TrainedModel
from coversearch.classify.recipes import Recipe
from coversearch.classify.split import assign_sides, load_split, make_split
from coversearch.classify.dense import DenseGenre
from coversearch.classify.knn import KNNVote
from coversearch.classify.train import resolve_recipe, train_model
from coversearch.classify.xgboost_clf import XGBoostGenre
from coversearch.errors import CoverSearchError
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_folder
from coversearch.store import Store


# -- the split -----------------------------------------------------------------------------------
def synthetic_albums(n_per_genre=200, multi=60):
    genres = ["Country", "Electronic", "HipHop", "Pop", "Rock"]
    albums = [(i, hashlib.sha256(f"a{i}".encode()).hexdigest(), (genres[i % 5],)) for i in range(5 * n_per_genre)]
    start = len(albums)
    albums += [(start + j, hashlib.sha256(f"m{j}".encode()).hexdigest(), ("Electronic", "Pop")) for j in range(multi)]
    return albums


def test_split_is_stratified_by_genre_set():
    albums = synthetic_albums()
    sides = assign_sides(albums, seed=1, fractions=(0.7, 0.1, 0.2))
    for stratum in {a[2] for a in albums}:
        members = [a[0] for a in albums if a[2] == stratum]
        counts = Counter(sides[m] for m in members)
        n = len(members)
        assert counts["train"] == round(0.7 * n) and counts["test"] == n - round(0.8 * n), (stratum, counts)


def test_split_is_reproducible_from_its_seed_whatever_the_order():
    albums = synthetic_albums()
    a = assign_sides(albums, seed=7)
    b = assign_sides(list(reversed(albums)), seed=7)
    c = assign_sides(albums, seed=8)
    assert a == b
    assert a != c and Counter(a.values()) == Counter(c.values())


def test_split_rejects_bad_fractions():
    with pytest.raises(CoverSearchError, match="fractions"):
        assign_sides(synthetic_albums(10, 0), seed=1, fractions=(0.5, 0.1, 0.1))


@pytest.fixture(scope="module")
def hsv_store(tmp_path_factory, covers5_dir, cross_genre_duplicates):
    """A real store: 24 covers per genre plus cross-genre duplicate files, hsv only, with its split."""
    root = copy_covers(covers5_dir, tmp_path_factory.mktemp("covers") / "covers", per_genre=24, offset=100)
    for electronic, pop in cross_genre_duplicates:
        shutil.copy(electronic, root / "Electronic" / electronic.name)
        shutil.copy(pop, root / "Pop" / pop.name)
    path = tmp_path_factory.mktemp("store") / "store.duckdb"
    with Store.open(path) as store:
        ingest(store, read_folder(root), [get_extractor("hsv")])
        make_split(store)
    return path, root


def test_every_copy_of_the_same_bytes_is_on_one_side(hsv_store):
    path, root = hsv_store
    with Store.open(path, read_only=True) as store:
        split = load_split(store)
        files = store.known_files()
    side_of_bytes: dict[str, set[str]] = {}
    for file_path, album_id in files.items():
        digest = hashlib.sha256(open(file_path, "rb").read()).hexdigest()
        side_of_bytes.setdefault(digest, set()).add(split.sides[album_id])
    assert all(len(sides) == 1 for sides in side_of_bytes.values())
    assert sum(1 for p in files if "Electronic" in p or "Pop" in p) > len({a for p, a in files.items() if "Electronic" in p or "Pop" in p})
    assert split.counts()["train"] > split.counts()["test"] > split.counts()["val"] > 0


def test_an_existing_split_is_not_silently_redone(hsv_store):
    path, _ = hsv_store
    with Store.open(path) as store:
        with pytest.raises(CoverSearchError, match="already exists"):
            make_split(store)


# -- methods: fit, save, load ----------------------------------------------------------------------
METHOD_CASES = [
    Recipe("t-knn-annoy", "knn", ("hsv",), {"k": 5, "index_kind": "annoy"}),
    Recipe("t-knn-exact", "knn", ("hsv",), {"k": 5, "index_kind": "exact"}),
    Recipe("t-knn-hnsw", "knn", ("hsv",), {"k": 5, "index_kind": "faiss-hnsw"}),
    Recipe("t-knn-annoy-study", "knn", ("hsv",), {"k": 10, "index_kind": "annoy", "index_params": {"n_trees": 20},
                                                  "query_params": {"search_k": -1}}),
    Recipe("t-xgboost", "xgboost", ("hsv",), {"n_estimators": 20}),
    Recipe("t-dense", "dense", ("hsv",), {"epochs": 30, "patience": 5}),
    Recipe("t-dense-sqrt", "dense", ("hsv",), {"epochs": 30, "patience": 5, "power": 0.5}),
    Recipe("t-ensemble", "ensemble", ("hsv",), {"members": [
        {"method": "dense", "params": {"epochs": 20}, "columns": [0, 512]},
        {"method": "xgboost", "params": {"n_estimators": 10}, "columns": [0, 512]},
        {"method": "knn", "params": {"k": 5, "index_kind": "exact"}, "columns": [256, 512]},
    ]}),
    Recipe("t-ensemble-refit", "ensemble", ("hsv",), {"members": [
        {"method": "dense", "params": {"epochs": 40, "patience": 3}, "columns": [0, 512]},
        {"method": "xgboost", "params": {"n_estimators": 60, "early_stopping_rounds": 3}, "columns": [0, 512]},
    ]}, refit=True),
]


@pytest.mark.parametrize("recipe", METHOD_CASES, ids=lambda r: r.name)
def test_each_method_saves_and_loads_to_the_same_predictions(hsv_store, tmp_path, recipe):
    path, _ = hsv_store
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, recipe, name=recipe.name)
        split = load_split(store)
        test = load_labelled(store, [store.feature_set("hsv")], split.album_ids("test"))
        before = model.predict_proba(test.X)
        loaded = TrainedModel.load(tmp_path, recipe.name)
        after = loaded.predict_proba(test.X)
        loaded.check_store(store)
    assert before.shape == (len(test.X), 5)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert list(loaded.estimator.classes_) == ["Country", "Electronic", "HipHop", "Pop", "Rock"]
    if recipe.params.get("query_params"):  # index parameters reach the index and survive the reload
        assert loaded.estimator.index_.build_params["n_trees"] == 20 and loaded.estimator.index_.query_params == {"search_k": -1}
    evaluation = json.loads((tmp_path / recipe.name / "evaluation.json").read_text())
    assert 0.0 <= evaluation["accuracy"] <= 1.0 and evaluation["albums"] == len(test.X)
    assert (tmp_path / recipe.name / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- refitting on train + validation (fit_final) ----------------------------------------------------
@pytest.fixture(scope="module")
def hsv_sides(hsv_store):
    path, _ = hsv_store
    with Store.open(path, read_only=True) as store:
        split, fs = load_split(store), [store.feature_set("hsv")]
        return [load_labelled(store, fs, split.album_ids(side)).expanded() for side in ("train", "val")]


def test_refit_xgboost_keeps_the_rounds_validation_chose_and_fits_on_both_sides(hsv_sides):
    (X, y), (X_val, y_val) = hsv_sides
    params = {"n_estimators": 300, "learning_rate": 0.3, "early_stopping_rounds": 5}
    probe = XGBoostGenre(**params).fit(X, y, X_val, y_val)
    chosen = probe.booster_.best_iteration + 1
    assert chosen < 300  # validation did stop it
    final = XGBoostGenre(**params).fit_final(X, y, X_val, y_val)
    assert final.get_params()["n_estimators"] == chosen and final.early_stopping_rounds is None
    assert final.booster_.num_boosted_rounds() == chosen
    by_hand = XGBoostGenre(**{**params, "n_estimators": chosen, "early_stopping_rounds": None})
    by_hand.fit(np.vstack([X, X_val]), np.concatenate([y, y_val]))
    np.testing.assert_allclose(final.predict_proba(X_val), by_hand.predict_proba(X_val), atol=1e-6)


def test_refit_dense_runs_the_chosen_epochs_on_both_sides(hsv_sides):
    (X, y), (X_val, y_val) = hsv_sides
    probe = DenseGenre(epochs=200, patience=3).fit(X, y, X_val, y_val)
    assert probe.epochs_run_ < 200 and probe.best_epoch_ == probe.epochs_run_ - probe.patience  # restored weights
    final = DenseGenre(epochs=200, patience=3).fit_final(X, y, X_val, y_val)
    assert 1 <= final.epochs < 200 and final.epochs_run_ == final.epochs  # no early stopping in the final fit
    np.testing.assert_allclose(final.scaler_.mean_, np.vstack([X, X_val]).mean(axis=0), atol=1e-5)


def test_refit_of_a_method_without_validation_is_one_fit_on_both_sides(hsv_sides):
    (X, y), (X_val, y_val) = hsv_sides
    knn = KNNVote(k=3, index_kind="exact").fit_final(X, y, X_val, y_val)
    assert len(knn.index_) == len(X) + len(X_val)
    plain = XGBoostGenre(n_estimators=10)
    assert not plain.uses_validation
    plain.fit_final(X, y, X_val, y_val)
    assert plain.n_estimators == 10 and plain.booster_.num_boosted_rounds() == 10


def test_a_refit_model_records_it_and_its_members_choices(hsv_store, tmp_path):
    path, _ = hsv_store
    recipe = METHOD_CASES[-1]
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, recipe, name="r", evaluate=False)
        split = load_split(store)
        rows = [len(load_labelled(store, [store.feature_set("hsv")], split.album_ids(s)).expanded()[1]) for s in ("train", "val")]
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert card["refit"] is True and card["train_rows"] == sum(rows) and card["val_rows"] == rows[1]
    dense, xgb = card["params"]["members"]
    assert dense["params"]["epochs"] == model.estimator.estimators_[0].epochs_run_ <= 40
    assert xgb["params"]["early_stopping_rounds"] is None
    assert xgb["params"]["n_estimators"] == model.estimator.estimators_[1].booster_.num_boosted_rounds() <= 60


def test_the_default_recipe_refits_unless_told_not_to():
    assert resolve_recipe(None, None, None, None).refit is True
    assert resolve_recipe(None, None, None, None, refit=False).refit is False
    assert resolve_recipe("study-dense-vgg16", None, None, None).refit is False  # the study's recipe, faithfully
    custom = resolve_recipe(None, "xgboost", ["hsv"], {"n_estimators": 5}, refit=True)
    assert (custom.name, custom.refit, custom.params) == ("custom", True, {"n_estimators": 5})


def test_knn_votes_follow_the_neighbours(hsv_store, tmp_path):
    """On training covers themselves, 1-NN through an exact index must return their own genre."""
    path, _ = hsv_store
    with Store.open(path, read_only=True) as store:
        model = train_model(store, tmp_path, Recipe("nn1", "knn", ("hsv",), {"k": 1, "index_kind": "exact"}), evaluate=False)
        train = load_labelled(store, [store.feature_set("hsv")], load_split(store).album_ids("train"))
    predicted = model.estimator.predict(train.X)
    assert all(p in gs for p, gs in zip(predicted, train.genres))


def test_a_model_answers_on_a_store_that_changed_but_refuses_to_be_evaluated_there(hsv_store, tmp_path, covers5_dir):
    path, _ = hsv_store
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    with Store.open(copy) as store:
        model = train_model(store, tmp_path / "models", Recipe("x", "xgboost", ("hsv",), {"n_estimators": 5}), evaluate=False)
        extra = copy_covers(covers5_dir, tmp_path / "extra", per_genre=1, genres=("Rock",), offset=700)
        assert model.store_changed(store) is None
        ingest(store, read_folder(extra), [get_extractor("hsv")])
        assert [fs.name for fs in model.check_store(store)] == ["hsv"]  # the vectors it reads are the same
        assert "evaluation is out of date" in model.store_changed(store)
        with pytest.raises(ModelError, match="another store state"):
            model.check_store(store, same_state=True)


def test_training_needs_two_genres_and_a_non_empty_split(tmp_path, covers5_dir):
    one_genre = copy_covers(covers5_dir, tmp_path / "one", per_genre=6, genres=("Rock",))
    with Store.open(tmp_path / "one.duckdb") as store:
        ingest(store, read_folder(one_genre), [get_extractor("hsv")])
        with pytest.raises(CoverSearchError, match="at least 2 genres"):
            train_model(store, tmp_path / "m", Recipe("r", "xgboost", ("hsv",)))
        make_split(store, "all-test", fractions=(0.0, 0.0, 1.0))
        with pytest.raises(CoverSearchError, match="train split is empty"):
            train_model(store, tmp_path / "m", Recipe("r", "xgboost", ("hsv",)), split_name="all-test")


# -- the CLI -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_once(hsv_store, tmp_path_factory):
    """The hsv store with model "xgb" trained by the CLI, once per module (tests get copies)."""
    path, root = hsv_store
    base = tmp_path_factory.mktemp("trained")
    cli = Cli(base / "store.duckdb", base / "indexes", base / "models")
    shutil.copy(path, cli.db)
    result = cli("train", "--method", "xgboost", "--feature", "hsv", "--name", "xgb", "-p", "n_estimators=10", "--json")
    assert result.exit_code == 0, result.stderr
    return cli, root, json.loads(result.stdout)


@pytest.fixture
def trained_cli(cli, trained_once):
    """A copy of the trained store and model folder, this test's own to change."""
    once, root, trained = trained_once
    shutil.copy(once.db, cli.db)
    shutil.copytree(once.model_dir, cli.model_dir)
    return cli, root, trained


def test_train_evaluate_classify_through_the_cli(trained_cli, tmp_path, covers5_dir):
    cli, root, trained = trained_cli
    assert trained["card"]["method"] == "xgboost" and trained["card"]["features"][0]["name"] == "hsv"
    evaluation = json.loads(cli("evaluate", "--model", "xgb", "--json", "--png", tmp_path / "cm.png").stdout)
    assert evaluation["accuracy"] == trained["evaluation"]["accuracy"]
    assert len(evaluation["confusion"]) == 5 and sum(map(sum, evaluation["confusion"])) == evaluation["albums"]
    assert (tmp_path / "cm.png").stat().st_size > 1000
    # One or more images and folders, one model load, genres ranked with probabilities.
    folder = copy_covers(covers5_dir, tmp_path / "new", per_genre=1, offset=900)
    result = cli("classify", folder, sorted((covers5_dir / "Rock").iterdir())[901], "--model", "xgb", "--json", "--top", "3")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["results"]
    assert len(out) == 6
    for item in out:
        probs = [g["probability"] for g in item["genres"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and item["error"] is None
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["xgb"]


def test_classify_reports_undecodable_images_and_exits_non_zero(trained_cli, tmp_path, covers5_dir):
    cli, _, _ = trained_cli
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>not an image</html>")
    good = sorted((covers5_dir / "Pop").iterdir())[950]
    result = cli("classify", good, bad, "--model", "xgb", "--json")
    assert result.exit_code == 1
    results = {r["path"]: r for r in json.loads(result.stdout)["results"]}
    assert results[str(good)]["error"] is None and results[str(bad)]["error"].startswith("not-an-image")
    assert "could not be classified" in result.stderr


@pytest.mark.parametrize(
    "args, needles",
    [
        (["classify", "{img}", "--model", "nope"], ["no model named 'nope'"]),
        (["evaluate", "--model", "nope"], ["no model named 'nope'"]),
        (["train", "--method", "svm", "--feature", "hsv"], ["unknown method 'svm'"]),
        (["train", "--recipe", "magic"], ["unknown recipe 'magic'"]),
        (["train", "--method", "knn", "--feature", "hsv", "-p", "index_kind=duckdb"], ["duckdb"]),
        (["train", "--method", "xgboost", "--feature", "hsv", "-p", "depth=3"], ["bad parameter"]),
        (["train", "--method", "xgboost", "--feature", "vgg16"], ["no 'vgg16' embeddings"]),
        (["classify", "{tmp}/missing.jpg", "--model", "xgb"], ["could not be classified"]),
    ],
)
def test_bad_input_is_one_clear_line(trained_cli, tmp_path, covers5_dir, args, needles):
    cli, _, _ = trained_cli
    img = sorted((covers5_dir / "Pop").iterdir())[951]
    one_line_error(cli(*[a.format(img=img, tmp=tmp_path) for a in args]), *needles)


def test_a_model_trained_on_another_store_is_refused(trained_cli, tmp_path, covers5_dir):
    cli, _, _ = trained_cli
    other = copy_covers(covers5_dir, tmp_path / "other", per_genre=3, offset=500)
    other_db = tmp_path / "other.duckdb"
    run_cli("ingest", other, "--features", "hsv", "--quiet", db=other_db)
    result = run_cli("evaluate", "--model", "xgb", db=other_db, model_dir=cli.model_dir)
    one_line_error(result, "another store state")


def test_default_recipe_is_trained_with_no_options_and_used_by_classify_and_evaluate(
    cli, tmp_path, covers5_dir, vgg16_weights
):
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=8, offset=40)
    env = {"COVERSEARCH_VGG16_WEIGHTS": str(vgg16_weights)}
    assert cli("ingest", root, "--quiet", env=env).exit_code == 0  # hsv, vgg16, vgg16-layers: the default features
    trained = cli("train", "--json", "--quiet", env=env)
    assert trained.exit_code == 0, trained.stderr
    card = json.loads(trained.stdout)["card"]
    assert (card["recipe"], card["method"], [f["name"] for f in card["features"]]) == ("default", "ensemble", ["vgg16-layers"])
    assert card["refit"] is True and card["train_rows"] > card["val_rows"] > 0
    evaluation = json.loads(cli("evaluate", "--json", env=env).stdout)
    assert evaluation["model"] == "default" and evaluation["recipe"] == "default"
    # Trained later, the train-only fit becomes the latest default model that evaluate picks.
    not_refit = cli("train", "--no-refit", "--name", "default-train-only", "--json", "--quiet", env=env)
    assert json.loads(not_refit.stdout)["card"]["refit"] is False
    evaluation = json.loads(cli("evaluate", "--json", env=env).stdout)
    assert (evaluation["model"], evaluation["refit"]) == ("default-train-only", False)
    image = sorted((covers5_dir / "HipHop").iterdir())[990]
    result = cli("classify", image, "--json", env=env)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == "default-train-only"
    genres = out["results"][0]["genres"]
    assert sorted(g["genre"] for g in genres) == ["Country", "Electronic", "HipHop", "Pop", "Rock"]
    assert abs(sum(g["probability"] for g in genres) - 1) < 1e-3
    # A query model other than the one the store was built with is refused.
    other = tmp_path / "other.weights.h5"
    shutil.copyfile(vgg16_weights, other)
    with open(other, "ab") as fh:
        fh.write(b"\0")
    one_line_error(cli("classify", image, "--vgg16-weights", other), "needs vgg16-layers v1 from sha256:a2f51117")


def test_the_study_dense_recipe_trains_on_the_studys_own_vgg16_input(cli, tmp_path, covers5_dir, vgg16_weights):
    """study-dense-vgg16 reads vgg16-study (150 px, flattened block5_pool), which ingest adds on request."""
    root = copy_covers(covers5_dir, tmp_path / "covers", per_genre=6, offset=60)
    env = {"COVERSEARCH_VGG16_WEIGHTS": str(vgg16_weights)}
    assert cli("ingest", root, "--features", "hsv", "--quiet", env=env).exit_code == 0
    one_line_error(cli("train", "--recipe", "study-dense-vgg16", env=env),
                   "no 'vgg16-study' embeddings", "coversearch ingest --features vgg16-study")
    assert cli("ingest", root, "--features", "vgg16-study", "--quiet", env=env).exit_code == 0
    trained = cli("train", "--recipe", "study-dense-vgg16", "--json", "--quiet", env=env)
    assert trained.exit_code == 0, trained.stderr
    card = json.loads(trained.stdout)["card"]
    assert [(f["name"], f["dim"]) for f in card["features"]] == [("vgg16-study", 8192)]
    assert card["params"]["epochs"] == 20 and card["params"]["batch_size"] == 64 and card["refit"] is False
    # Classifying a new cover computes the same 150 px input from the image.
    result = cli("classify", sorted((covers5_dir / "Rock").iterdir())[970], "--model", "study-dense-vgg16", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    assert abs(sum(g["probability"] for g in json.loads(result.stdout)["results"][0]["genres"]) - 1) < 1e-3


def test_classify_and_evaluate_with_no_default_model_say_what_to_do(cli, hsv_store):
    shutil.copy(hsv_store[0], cli.db)
    one_line_error(cli("evaluate"), "no default model", "coversearch train")
