"""`coversearch ingest`, `stats` and `db` through the real CLI, in-process."""

from __future__ import annotations

import json

import pytest

from conftest import one_line_error, run_cli
from coversearch.store.migrate import head_revision


def test_ingest_then_stats_json(cli, small_covers):
    result = cli("ingest", small_covers, "--features", "hsv", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["files_seen"] == 20 and summary["embeddings_added"]["hsv"] == summary["albums_added"]
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["albums"] == summary["albums_added"] and stats["files"] == 20
    assert sum(stats["albums_per_genre"].values()) >= stats["albums"]
    assert [(fs["name"], fs["embeddings"]) for fs in stats["feature_sets"]] == [("hsv", stats["albums"])]
    assert stats["errors"] == 0 and stats["schema_revision"] == head_revision()
    human = cli("stats")
    assert human.exit_code == 0 and "albums per genre" in human.stdout and "hsv" in human.stdout


def test_ingest_with_vgg16_through_the_cli(cli, small_covers, vgg16_weights):
    result = cli("ingest", small_covers, "--features", "vgg16", "--limit", "3", "--vgg16-weights", vgg16_weights, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["embeddings_added"] == {"vgg16": 3}
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["feature_sets"][0]["model_fingerprint"].startswith("sha256:a2f51117")


def test_quiet_prints_nothing_and_progress_goes_to_stderr(cli, small_covers):
    quiet = cli("ingest", small_covers, "--features", "hsv", "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    loud = cli("ingest", small_covers, "--features", "hsv")
    assert "ingest summary" in loud.stdout and "img/s" in loud.stderr


@pytest.mark.parametrize(
    "args, needles",
    [
        (["ingest", "{tmp}/nowhere", "--features", "hsv"], ["no such folder"]),
        (["ingest", "{covers}", "--features", "hsv,sift"], ["unknown feature", "sift"]),
        (["ingest", "{covers}", "--features", "vgg16", "--vgg16-weights", "{tmp}/none.h5"], ["weights file not found"]),
        (["ingest", "{covers}", "--manifest", "{tmp}/none.csv"], ["cannot read manifest"]),
        (["stats"], ["no store at"]),
    ],
)
def test_bad_input_is_one_clear_line(cli, small_covers, tmp_path, args, needles):
    argv = [a.format(tmp=tmp_path, covers=small_covers) for a in args]
    one_line_error(cli(*argv), *needles)
    assert not cli.db.exists()  # nothing created by a failed command


def test_vgg16_without_weights_fails_before_touching_the_store(cli, small_covers):
    cli("ingest", small_covers, "--features", "hsv", "--quiet")
    before = json.loads(cli("stats", "--json").stdout)
    result = cli("ingest", small_covers, "--features", "hsv,vgg16", env={"COVERSEARCH_VGG16_WEIGHTS": ""})
    one_line_error(result, "--vgg16-weights", "COVERSEARCH_VGG16_WEIGHTS")
    assert json.loads(cli("stats", "--json").stdout) == before


def test_store_path_that_is_a_folder(cli, small_covers, tmp_path):
    result = run_cli("stats", db=tmp_path)
    one_line_error(result, "is a directory")


def test_db_upgrade_and_revision(cli):
    assert cli("db", "upgrade").exit_code == 0
    rev = json.loads(cli("db", "revision", "--json").stdout)
    assert rev["revision"] == rev["latest"] == head_revision()
