"""A feature, an index kind and a classifier added the way a newcomer adds one: a module
(tests/plugins/) and one registry line each, then run end to end through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, link_covers
from coversearch.classify import registry as classifiers
from coversearch.features import registry as features
from coversearch.features.registry import default_metric
from coversearch.index import registry as index_kinds

PLUGINS = (
    (features, "mean-colour", "tests.plugins.mean_colour:MeanColour"),
    (index_kinds, "numpy-brute", "tests.plugins.brute_index:NumpyBruteIndex"),
    (classifiers, "centroid", "tests.plugins.centroid:NearestCentroid"),
)


@pytest.fixture
def extras():
    registries = {features: features.FEATURES, index_kinds: index_kinds.INDEX_KINDS, classifiers: classifiers.CLASSIFIERS}
    for module, name, target in PLUGINS:
        module.register(name, target)  # the one line
    yield
    for module, name, _ in PLUGINS:
        registries[module].unregister(name)


def ok(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_feature_an_index_kind_and_a_classifier_each_one_module_and_one_line(extras, cli, covers5_dir, tmp_path):
    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=12)
    # The feature: ingested like any other, compared under the metric its class declares.
    ingested = ok(cli("ingest", root, "--features", "mean-colour", "--json", "--quiet"))
    assert ingested["albums_added"] > 50  # 60 files; a few covers are the same bytes under two genres
    sets = {fs["name"]: fs for fs in ok(cli("stats", "--json"))["feature_sets"]}
    assert sets["mean-colour"]["dim"] == 6
    assert default_metric("mean-colour") == "euclidean"

    # The index kind: built, listed, searched; its answers are exact search's.
    built = ok(cli("index", "build", "--feature", "mean-colour", "--kind", "numpy-brute", "--json"))
    assert (built["kind"], built["metric"], built["query_params"]) == ("numpy-brute", "euclidean", {"chunk": 1024})
    ok(cli("index", "build", "--feature", "mean-colour", "--kind", "exact", "--json"))
    listed = {row["name"]: row for row in ok(cli("index", "list", "--json"))["indexes"]}
    assert listed["mean-colour-numpy-brute"]["stale"] is False
    image = sorted((root / "Rock").iterdir())[3]
    mine = ok(cli("similar", image, "--feature", "mean-colour", "--index", "mean-colour-numpy-brute", "-k", 5, "--json"))
    exact = ok(cli("similar", image, "--feature", "mean-colour", "--index", "mean-colour-exact", "-k", 5, "--json"))
    assert mine["kind"] == "numpy-brute" and mine["results"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    assert [h["album_id"] for h in mine["results"]] == [h["album_id"] for h in exact["results"]]
    assert [h["distance"] for h in mine["results"]] == pytest.approx([h["distance"] for h in exact["results"]], abs=1e-5)

    # The classifier: its parameters come from its __init__, trained, saved, loaded and applied.
    trained = ok(cli("train", "--method", "centroid", "--feature", "mean-colour", "--name", "cent", "-p", "temperature=0.05",
                     "--json", "--quiet"))
    assert trained["card"]["method"] == "centroid" and trained["card"]["params"] == {"temperature": 0.05}
    result = ok(cli("classify", image, "--model", "cent", "--json"))["results"][0]
    assert result["error"] is None and sum(g["probability"] for g in result["genres"]) == pytest.approx(1.0, abs=1e-3)
    evaluation = ok(cli("evaluate", "--model", "cent", "--json"))
    assert 0.0 <= evaluation["accuracy"] <= 1.0

    # And the three together: knn votes through the new index kind on the new feature.
    knn = ok(cli("train", "--method", "knn", "--feature", "mean-colour", "--name", "knn-brute", "-p", "index_kind=numpy-brute",
                 "-p", "k=3", "--json", "--quiet"))
    assert knn["card"]["params"]["index_kind"] == "numpy-brute"
    assert ok(cli("classify", image, "--model", "knn-brute", "--json"))["results"][0]["error"] is None


def test_unknown_names_are_refused_with_the_registered_choices(extras):
    with pytest.raises(features.FeatureError, match="mean-colour"):
        features.get_extractor("sift")
    with pytest.raises(index_kinds.UnknownKindError, match="numpy-brute"):
        index_kinds.index_class("lsh")
    with pytest.raises(classifiers.CoverSearchError, match="centroid"):
        classifiers.method_class("svm")


def test_a_feature_with_no_extractor_and_no_recorded_metric_has_no_silent_default():
    with pytest.raises(features.FeatureError, match="unknown feature 'clip'"):
        default_metric("clip")


def test_the_cli_loads_no_index_or_model_library_until_a_command_needs_one():
    code = ("import sys; import coversearch.cli.main; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'faiss', 'annoy', 'tensorflow', 'keras', 'xgboost', 'cv2', 'ray'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
