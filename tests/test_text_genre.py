"""The words printed on a cover as a genre signal: the `text-linear` member (TF-IDF of character
n-grams + a logistic regression) trained on real OCR text of real covers5 covers, alone and in an
ensemble; covers with no legible text; stores without text.  The covers come from
tests/data/text_ground_truth.tsv (words typed by looking at each cover)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error, run_cli
from test_text import ground_truth, link

from coversearch.classify.data import load_labelled, stored_matrix
from coversearch.classify.model import TrainedModel
from coversearch.classify.recipes import Recipe, for_store
from coversearch.classify.split import load_split, make_split
from coversearch.classify.train import resolve_recipe, train_model
from coversearch.store import Store
from coversearch.store.rows import TEXT_KIND

PER_GENRE = 5  # covers with printed words per genre, plus every ground-truth cover with none


def chosen_rows() -> list[dict[str, str]]:
    rows = ground_truth()
    worded = [r for r in rows if len(r["words"].replace(" ", "")) >= 6]
    picked = []
    for genre in sorted({r["path"].split("/")[0] for r in rows}):
        picked += [r for r in worded if r["path"].startswith(genre + "/")][:PER_GENRE]
    return picked + [r for r in rows if not r["words"]][:6]


@pytest.fixture(scope="module")
def genre_text_store(tmp_path_factory, covers5_dir):
    """A real store of 31 real covers (25 with printed words, 6 with none a person can read), hsv + text,
    split 60/20/20; and the albums on which the OCR read nothing."""
    base = tmp_path_factory.mktemp("text-genre")
    rows = chosen_rows()
    root = link(covers5_dir, rows, base / "covers")
    db = base / "store.duckdb"
    result = run_cli("ingest", root, "--features", "hsv,text", "--quiet", db=db)
    assert result.exit_code == 0, result.output
    with Store.open(db) as store:
        make_split(store, fractions=(0.6, 0.2, 0.2))
        ids, counts = text_rows_of(store, None)
    blank = ids[~counts.any(axis=1)].tolist()
    assert 1 <= len(blank) <= 6  # fine print may be read on a cover with no title
    return db, root, blank


def text_rows_of(store: Store, album_ids) -> tuple[np.ndarray, np.ndarray]:
    return stored_matrix(store, store.feature_set("text"), album_ids)


def test_the_text_member_learns_from_printed_words_and_says_nothing_without_them(genre_text_store, tmp_path):
    db, root, blank = genre_text_store
    result = run_cli("train", "--method", "text-linear", "--feature", "text", "--name", "words", "--json", "--quiet",
                     db=db, model_dir=tmp_path)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["card"]["features"][0]["kind"] == "text" and out["evaluation"]["albums"] > 0
    model = TrainedModel.load(tmp_path, "words")
    with Store.open(db, read_only=True) as store:
        sets = model.check_store(store, same_state=True)
        everything = load_labelled(store, sets, np.array(sorted(store.known_files().values())))
        train = load_labelled(store, sets, load_split(store, "default").album_ids("train"))
    raw = model.estimator.predict_proba(everything.X)
    no_text = np.isin(everything.album_ids, blank)
    # The blank covers' OCR rows are empty: the member gives every genre the same probability ...
    assert no_text.sum() == len(blank)
    assert not everything.X[no_text].any()
    assert np.allclose(raw[no_text], 1 / 5)
    # ... and covers with words get an opinion, learnt from them: it names the genre of most training covers.
    assert np.mean(raw[~no_text].max(axis=1) > 0.3) >= 0.8
    predicted = np.array(model.classes)[model.estimator.predict_proba(train.X).argmax(axis=1)]
    worded = train.X.any(axis=1)
    right = [p in gs for p, gs, w in zip(predicted, train.genres, worded) if w]
    assert np.mean(right) >= 0.8, right
    # classify reads the words of a new image file itself (OCR at query time) and answers as from the store.
    cover = next(root.rglob("*.jpg"))
    cli = run_cli("classify", cover, "--model", "words", "--json", "--top", "5", db=db, model_dir=tmp_path)
    assert cli.exit_code == 0, cli.output
    with Store.open(db, read_only=True) as store:
        album = next(a for p, a in store.known_files().items() if Path(p).name == cover.name)
        _, counts = text_rows_of(store, [album])
    assert counts.any()
    stored = dict(model.rank_genres(counts)[0])
    answered = {g["genre"]: g["probability"] for g in json.loads(cli.stdout)["results"][0]["genres"]}
    assert answered.keys() == stored.keys()
    assert all(abs(answered[g] - stored[g]) < 2e-4 for g in stored), (answered, stored)


def test_in_an_ensemble_a_cover_without_text_is_ranked_by_the_other_members(genre_text_store, tmp_path):
    db, _, blank = genre_text_store
    hsv_dim = 512
    recipe = Recipe("hsv-text", "ensemble", ("hsv", "text"), {"members": [
        {"method": "knn", "params": {"k": 3, "index_kind": "exact", "metric": "euclidean"}, "columns": [0, hsv_dim]},
        {"method": "text-linear", "params": {"C": 2.0}, "columns": [hsv_dim, hsv_dim + 4096]},
    ]}, refit=True)
    with Store.open(db) as store:
        model = train_model(store, tmp_path, recipe, name="hsv-text")
        everything = load_labelled(store, model.check_store(store), np.array(blank))
    assert model.card.refit and model.card.calibration is not None
    loaded = TrainedModel.load(tmp_path, "hsv-text")
    knn, words = loaded.estimator.estimators_
    both = loaded.estimator.predict_proba(everything.X)
    alone = knn.predict_proba(everything.X[:, :hsv_dim])
    assert np.allclose(words.predict_proba(everything.X[:, hsv_dim:]), 1 / 5)
    assert (both.argmax(axis=1) == alone.argmax(axis=1)).all()
    assert np.allclose(both, (alone + 1 / 5) / 2)
    assert np.allclose(loaded.predict_proba(everything.X), model.predict_proba(everything.X))


def test_a_store_without_text_trains_the_default_and_refuses_the_text_member_clearly(tmp_path, covers5_dir):
    from conftest import link_covers

    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=3)
    db = tmp_path / "hsv.duckdb"
    assert run_cli("ingest", root, "--features", "hsv", "--quiet", db=db).exit_code == 0
    one_line_error(run_cli("train", "--method", "text-linear", "--feature", "text", db=db, model_dir=tmp_path / "models"),
                   "no text", "--features text")
    one_line_error(run_cli("train", "--method", "xgboost", "--feature", "hsv,text", db=db, model_dir=tmp_path / "models"),
                   "no text", "--features text")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    # The default, asked for by name or by no options, leaves its text member out there and says so
    # (tests/test_classify.py trains it end to end on a store without text).
    for chosen in (resolve_recipe(None, None, None, None), resolve_recipe("default", None, None, None)):
        assert chosen.features == ("vgg16-layers", "text")
        with Store.open(db, read_only=True) as store:
            has_text = bool(store.feature_sets(kind=TEXT_KIND))
        fitted, note = for_store(chosen, has_text)
        assert (fitted.name, fitted.features, fitted.refit) == ("default", ("vgg16-layers",), True)
        assert [m["method"] for m in fitted.params["members"]] == ["dense", "xgboost", "xgboost"]
        assert "--features text" in note
    assert for_store(resolve_recipe(None, None, None, None), True)[0].features == ("vgg16-layers", "text")


@pytest.mark.parametrize("param, needle", [("C=0", "C=0"), ("min_df=0", "min_df"), ("max_iter=x", "max_iter")])
def test_bad_text_member_parameters_are_refused_before_training(tmp_path, param, needle):
    one_line_error(run_cli("train", "--method", "text-linear", "--feature", "text", "-p", param,
                           db=tmp_path / "none.duckdb", model_dir=tmp_path / "m"), needle)


def test_with_legible_text_on_one_genre_only_the_member_has_no_opinion_instead_of_failing(genre_text_store):
    from coversearch.classify.text_linear import TextLinearGenre

    db, _, _ = genre_text_store
    with Store.open(db, read_only=True) as store:
        data = load_labelled(store, [store.feature_set("text")], np.array(sorted(store.known_files().values())))
    X, y = data.expanded()
    X = np.where((y == "Rock")[:, None], X, 0)  # only the Rock covers' words were read
    member = TextLinearGenre().fit(X, y)
    assert list(member.classes_) == ["Country", "Electronic", "HipHop", "Pop", "Rock"]
    assert np.allclose(member.predict_proba(data.X), 1 / 5)
