"""`coversearch remove` and `coversearch label` on a real (hsv) store, through the CLI, with their
effects on indexes (stale, then refreshed in place or rebuilt), models (refused after a removal,
still usable after a relabel) and the stored split (sides removed, kept, or placed by the rule)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from coversearch.classify.recipes import Recipe
from coversearch.classify.split import load_split, make_split, side_by_rule
from coversearch.classify.train import train_model
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store
from conftest import Cli, link_covers, one_line_error


@pytest.fixture(scope="module")
def curated_base(tmp_path_factory, covers5_dir, cross_genre_duplicates):
    """An hsv store of 6 covers per genre plus three Electronic+Pop albums, a split, two indexes, a model."""
    base = tmp_path_factory.mktemp("curate")
    root = link_covers(covers5_dir, base / "covers", per_genre=6, offset=600)
    for electronic, pop in cross_genre_duplicates:
        (root / "Electronic" / electronic.name).symlink_to(electronic)
        (root / "Pop" / pop.name).symlink_to(pop)
    db, models = base / "store.duckdb", base / "models"
    with Store.open(db) as store:
        ingest(store, read_source(root), [get_extractor("hsv")])
        make_split(store)
        train_model(store, models, Recipe("xgb-hsv", "xgboost", ("hsv",), {"n_estimators": 3}), name="xgb-hsv")
    cli = Cli(db, base / "indexes", models)
    for kind in ("exact", "faiss-hnsw"):
        assert cli("index", "build", "--feature", "hsv", "--kind", kind, "--name", f"hsv-{kind}").exit_code == 0
    return base, root


@pytest.fixture
def curated(curated_base, tmp_path):
    """A private copy of the store, indexes and model."""
    base, root = curated_base
    for name in ("store.duckdb", "indexes", "models"):
        (shutil.copytree if (base / name).is_dir() else shutil.copy)(base / name, tmp_path / name)
    return Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models"), root


def ok_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def table_counts(db, album_id: int) -> dict[str, int]:
    with Store.open(db, read_only=True) as store:
        one = lambda sql: store.con.execute(sql, [album_id]).fetchone()[0]  # noqa: E731
        return {
            "albums": one("SELECT count(*) FROM albums WHERE id = ?"),
            "files": one("SELECT count(*) FROM album_files WHERE album_id = ?"),
            "genres": one("SELECT count(*) FROM album_genres WHERE album_id = ?"),
            "vectors": one(f"SELECT count(*) FROM {store.feature_set('hsv').table} WHERE album_id = ?"),
            "sides": one("SELECT count(*) FROM split_assignments WHERE album_id = ?"),
        }


def test_remove_takes_an_album_whole_and_indexes_catch_up(curated):
    cli, _ = curated
    before = ok_json(cli("stats", "--json"))
    target = 7
    plan = ok_json(cli("remove", "--album", target, "--dry-run", "--json"))
    assert plan["album_ids"] == [target] and plan["applied"] is False and plan["dry_run"] is True
    assert plan["files"] == 1 and plan["genre_links"] == 1 and plan["embeddings"] == {"hsv v1": 1} and plan["split_assignments"] == 1
    assert ok_json(cli("stats", "--json")) == before  # a dry run changes nothing

    done = ok_json(cli("remove", "--album", target, "--json"))
    assert done["applied"] is True
    assert table_counts(cli.db, target) == {"albums": 0, "files": 0, "genres": 0, "vectors": 0, "sides": 0}
    assert ok_json(cli("stats", "--json"))["albums"] == before["albums"] - 1

    # Indexes: stale and refused, then refreshed: exact drops the vector in place, HNSW is rebuilt.
    listed = {row["name"]: row for row in ok_json(cli("index", "list", "--json"))["indexes"]}
    assert all(row["stale"] and "1 removed" in row["stale_reason"] for row in listed.values())
    one_line_error(cli("similar", "--album", 8, "-f", "hsv", "--index", "hsv-exact"), "is stale", "--refresh")
    refreshed = {row["name"]: row for row in ok_json(cli("index", "refresh", "--json"))["indexes"]}
    assert refreshed["hsv-exact"]["refreshed_by"] == "remove" and refreshed["hsv-faiss-hnsw"]["refreshed_by"] == "rebuild"
    assert {row["vectors"] for row in refreshed.values()} == {before["albums"] - 1}
    for index in ("hsv-exact", "hsv-faiss-hnsw"):
        found = ok_json(cli("similar", "--album", 8, "-f", "hsv", "--index", index, "-k", before["albums"] - 1, "--json"))
        assert target not in [hit["album_id"] for hit in found["results"]]

    # The model was trained on the store before the removal: refused, with the way out.
    one_line_error(cli("evaluate", "--model", "xgb-hsv"), "covers were added or removed", "coversearch train")


def test_remove_by_path_and_by_genre(curated, cross_genre_duplicates):
    cli, root = curated
    electronic, pop = cross_genre_duplicates[0]
    # A file path (as ingest recorded it) takes its album, with the other genre's copy of the bytes.
    plan = ok_json(cli("remove", "--path", root / "Pop" / pop.name, "--json"))
    assert len(plan["album_ids"]) == 1 and plan["files"] == 2 and plan["genre_links"] == 2
    # A folder takes every album stored under it.
    rock = ok_json(cli("remove", "--path", root / "Rock", "--yes", "--json"))
    assert len(rock["album_ids"]) == 6
    # A genre takes the albums filed under it alone; the two Electronic+Pop albums left only lose Pop.
    pop_plan = ok_json(cli("remove", "--genre", "Pop", "--yes", "--json"))
    assert len(pop_plan["album_ids"]) == 6 and len(pop_plan["unlinked"]) == 2
    stats = ok_json(cli("stats", "--json"))
    assert "Pop" not in stats["albums_per_genre"] and "Rock" not in stats["albums_per_genre"]
    assert stats["albums_per_genre"]["Electronic"] == 6 + 2 and stats["albums_with_several_genres"] == 0
    for album_id in pop_plan["unlinked"]:
        assert table_counts(cli.db, album_id)["vectors"] == 1


def test_remove_refuses_bad_selectors_and_changes_nothing(curated, tmp_path):
    cli, _ = curated
    before = ok_json(cli("stats", "--json"))
    one_line_error(cli("remove", "--album", 1, "--album", 999999), "no album with id 999999")
    one_line_error(cli("remove", "--path", tmp_path / "nothing-here.jpg"), "no stored file at")
    one_line_error(cli("remove", "--genre", "Jazz"), "no album of genre 'Jazz'", "Country")
    one_line_error(cli("remove", "--album", 1, "--genre", "Rock"), "one of --album ID, --path PATH or --genre GENRE")
    one_line_error(cli("remove"), "one of --album")
    assert ok_json(cli("stats", "--json")) == before


def test_label_changes_genres_only(curated, tmp_path):
    cli, _ = curated
    with Store.open(cli.db, read_only=True) as store:
        rock = sorted(a for a, g in store.genres_by_album().items() if g == ["Rock"])
        sides_before = load_split(store).sides
    album = rock[0]
    assert ok_json(cli("label", "--album", album, "--add", "Jazz", "--json"))["added"] == [{"album_id": album, "genre": "Jazz"}]
    # The genre filter reads the new label at once; the index is still current (vectors unchanged).
    found = ok_json(cli("similar", "--album", album, "-f", "hsv", "--genre", "Jazz", "--index", "hsv-exact", "-k", 1, "--json"))
    assert [hit["album_id"] for hit in found["results"]] == [album] and found["results"][0]["genres"] == ["Jazz", "Rock"]
    assert not any(row["stale"] for row in ok_json(cli("index", "list", "--json"))["indexes"])
    ok_json(cli("label", "--album", album, "--remove", "Rock", "--json"))
    # Same vectors: the model still accepts the store; the split keeps every album on its side.
    assert cli("evaluate", "--model", "xgb-hsv", "--json").exit_code == 0
    with Store.open(cli.db, read_only=True) as store:
        assert store.genres_by_album([album]) == {album: ["Jazz"]}
        assert load_split(store).sides == sides_before
    one_line_error(cli("label", "--album", album, "--remove", "Jazz"), f"album {album} would have no genre left")
    again = ok_json(cli("label", "--album", album, "--add", "Jazz", "--json"))
    assert again["added"] == [] and len(again["unchanged"]) == 1  # re-running is harmless

    # Bulk: checked whole first, so one bad line changes nothing.
    bad = tmp_path / "bad.csv"
    bad.write_text(f"album_id,action,genre\n{rock[1]},add,Blues\n999999,add,Blues\n")
    one_line_error(cli("label", "--csv", bad), "bad.csv line 3: no album with id 999999")
    good = tmp_path / "good.csv"
    good.write_text(f"album_id,action,genre\n{rock[1]},add,Blues\n{rock[2]},add,Blues\n{rock[2]},remove,Rock\n")
    done = ok_json(cli("label", "--csv", good, "--json"))
    assert len(done["added"]) == 2 and done["removed"] == [{"album_id": rock[2], "genre": "Rock"}] and done["new_genres"] == ["Blues"]
    with Store.open(cli.db, read_only=True) as store:
        assert store.genres_by_album([rock[1], rock[2]]) == {rock[1]: ["Blues", "Rock"], rock[2]: ["Blues"]}


def test_albums_ingested_after_a_split_are_placed_by_the_rule(curated, covers5_dir, tmp_path):
    cli, _ = curated
    with Store.open(cli.db, read_only=True) as store:
        made = load_split(store)
    assert made.added_by_rule == 0
    more = link_covers(covers5_dir, tmp_path / "more", per_genre=8, offset=700)
    with Store.open(cli.db) as store:
        ingest(store, read_source(more), [get_extractor("hsv")])
        split = load_split(store)
        shas = dict(store.con.execute("SELECT id, sha256 FROM albums").fetchall())
    new = sorted(set(split.sides) - set(made.sides))
    assert split.added_by_rule == len(new) == 40
    assert {a: made.sides[a] for a in made.sides} == {a: split.sides[a] for a in made.sides}  # nobody moved
    assert all(split.sides[a] == side_by_rule(split.seed, shas[a], split.fractions) for a in new)
    assert len({split.sides[a] for a in new}) == 3  # 40 albums at 70/10/20 reach every side
    shown = ok_json(cli("split", "show", "--json"))
    assert shown["added_by_rule"] == 40 and sum(shown["albums"].values()) == len(split.sides)
    # The rule is a function of (seed, bytes, fractions) alone.
    u = [int(side_by_rule(7, f"{i:064x}", (0.7, 0.1, 0.2)) == "train") for i in range(2000)]
    assert 0.65 < np.mean(u) < 0.75
