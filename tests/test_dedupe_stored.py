"""Near-duplicate groups kept in the store, on real covers and the real VGG16: the keypoints feature
read instead of decoding, ingest placing copies in their original's group (copies arriving in the
same run too), remove splitting a group, and the stored groups equal to a rebuild after a random
sequence of ingests and removes."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from coversearch.bench.transforms import MIRROR, TRANSFORMS, transformed_jpeg
from coversearch.cli.main import app
from coversearch.dedupe.groups import store_groups
from coversearch.dedupe.rules import default_rules
from coversearch.dedupe.stored import is_current, place, stored_groups
from coversearch.dedupe.verify import MIN_INLIERS, KeypointCache
from coversearch.features.keypoints import Keypoints, keypoints
from coversearch.imaging.images import decode_image
from coversearch.ingest.readers import read_source
from coversearch.ingest.run import run_ingest
from coversearch.store import Store
from coversearch.store.curate import apply_removal, plan_removal
from conftest import link_covers, serving

FEATURES = "phash,vgg16,keypoints"
COPIES = [name for name in TRANSFORMS if name != MIRROR]



def cli(db: Path, *args):
    return CliRunner().invoke(app, ["--db", str(db), *map(str, args)], catch_exceptions=False)


def as_sets(groups) -> set[frozenset[int]]:
    return {frozenset(int(x) for x in g) for g in groups}


@pytest.fixture(scope="module")
def base(tmp_path_factory, covers5_dir, vgg16_weights) -> Path:
    """20 real covers (4 per genre) ingested with the default rule's features and keypoints."""
    folder = link_covers(covers5_dir, tmp_path_factory.mktemp("covers"), 4)
    db = tmp_path_factory.mktemp("base") / "store.duckdb"
    run_ingest(db, read_source(folder), FEATURES, vgg16_weights)
    return db


@pytest.fixture(scope="module")
def copies(tmp_path_factory, covers5_dir) -> dict[str, Path]:
    """Pop/<name>.jpg: every transformed copy (mirror aside) of one stored Rock cover."""
    original = sorted((covers5_dir / "Rock").iterdir())[0]
    folder = tmp_path_factory.mktemp("copies")
    (folder / "Pop").mkdir()
    out = {"original": original}
    with Image.open(original) as img:
        for name in COPIES:
            out[name] = folder / "Pop" / f"{name}.jpg"
            out[name].write_bytes(transformed_jpeg(img, name))
    return out


def ingest_copies(base: Path, copies: dict[str, Path], tmp_path: Path, vgg16_weights, names=COPIES) -> tuple[Path, Path, dict]:
    """A copy of the base store after one ingest of the ``names`` copies (links in tmp_path/new/Pop):
    (store, that folder, the ingest's summary)."""
    db = tmp_path / "store.duckdb"
    shutil.copy(base, db)
    folder = tmp_path / "new"
    (folder / "Pop").mkdir(parents=True)
    for name in names:
        (folder / "Pop" / copies[name].name).symlink_to(copies[name])
    return db, folder, run_ingest(db, read_source(folder), FEATURES, vgg16_weights)


def album_of(store: Store, path: Path) -> int:
    return store.known_files()[str(path)]


def stored_original(store: Store, original: Path) -> int:
    """The album of a covers5 file ingested through a folder of links to it."""
    return next(a for p, a in store.known_files().items() if p.endswith(f"/{original.parent.name}/{original.name}"))


def test_verification_reads_the_stored_keypoints_and_decodes_nothing(base, covers5_dir):
    original = sorted((covers5_dir / "Rock").iterdir())[0]
    with Store.open(base, read_only=True) as store:
        cache = KeypointCache(store)
        cache.load(sorted(store.album_ids_by_sha().values()))
        assert cache.decoded == 0 and cache.unreadable == 0
        stored = cache.get(stored_original(store, original))
    fresh = keypoints(decode_image(original.read_bytes()).rgb)
    assert np.array_equal(stored.points, fresh.points) and np.array_equal(stored.descriptors, fresh.descriptors)
    assert np.array_equal(stored.small, fresh.small)
    assert Keypoints.from_bytes(fresh.to_bytes()).width == fresh.width


def test_ingest_puts_transformed_copies_in_the_originals_group_without_running_dedupe(base, copies, tmp_path, vgg16_weights):
    # Every copy in one run: near-copies of each other arrive together.
    db, folder, result = ingest_copies(base, copies, tmp_path, vgg16_weights)
    assert result["duplicate_groups"]["decoded"] == 0
    with Store.open(db, read_only=True) as store:
        assert is_current(store)
        original = stored_original(store, copies["original"])
        members = {album_of(store, folder / "Pop" / copies[name].name) for name in COPIES}
        groups = as_sets(stored_groups(store))
        group = next(g for g in groups if members & g)
        assert members <= group, "every copy joined one group"
        assert original in group
        assert groups == as_sets(store_groups(store, default_rules(store))), "the stored groups are what a whole dedupe finds"
    # `dedupe` on the unchanged store answers from the stored groups; --rebuild finds the same.
    stored = json.loads(cli(db, "dedupe", "--json").stdout)
    assert set(stored["searched_with"].values()) == {"stored groups"}
    rebuilt = json.loads(cli(db, "dedupe", "--rebuild", "--json").stdout)
    assert stored["groups"] == rebuilt["groups"] and stored["groups"]


def test_remove_splits_a_group(base, copies, tmp_path, vgg16_weights):
    """A chain original - resize-50 - resize-25 held by its middle: without it the ends may part;
    the stored groups after the removal are those a whole dedupe of what remains finds."""
    db, folder, _ = ingest_copies(base, copies, tmp_path, vgg16_weights, ("crop-10", "crop-25", "border-10"))
    with Store.open(db) as store:
        before = as_sets(stored_groups(store))
        crop10 = album_of(store, folder / "Pop" / "crop-10.jpg")
        group = next(g for g in before if crop10 in g)
        assert len(group) >= 3
        # Remove every member but two: the group shrinks to that pair, or parts if they were joined
        # only through the others; either way exactly as a whole dedupe of what remains says.
        keep = sorted(group)[:2]
        gone = sorted(set(group) - set(keep))
    result = cli(db, "remove", *[x for a in gone for x in ("--album", a)])
    assert result.exit_code == 0, result.stderr
    with Store.open(db, read_only=True) as store:
        after = as_sets(stored_groups(store))
        assert not any(set(gone) & g for g in after)
        assert after == as_sets(store_groups(store, default_rules(store)))
        assert is_current(store)


def test_stored_groups_equal_a_rebuild_after_random_ingests_and_removes(base, copies, covers5_dir, tmp_path, vgg16_weights):
    db = tmp_path / "store.duckdb"
    shutil.copy(base, db)
    rng = random.Random(7)
    incremental = 0
    pool = [copies[name] for name in COPIES] + sorted((covers5_dir / "Pop").iterdir())[10:16]
    for step in range(6):
        if step % 3 != 2:
            folder = tmp_path / f"batch{step}" / "Pop"
            folder.mkdir(parents=True)
            for path in rng.sample(pool, 4):
                (folder / path.name).symlink_to(path)
            placed = run_ingest(db, read_source(folder.parent), FEATURES, vgg16_weights)["duplicate_groups"]
            incremental += not placed["whole"].get("vgg16", True)
        else:
            with Store.open(db) as store:
                ids = sorted(store.album_ids_by_sha().values())
                apply_removal(store, plan_removal(store, album_ids=rng.sample(ids, 3)))
                place(store)
        with Store.open(db, read_only=True) as store:
            assert is_current(store)
            assert as_sets(stored_groups(store)) == as_sets(store_groups(store, default_rules(store))), step
    assert incremental >= 2, "newcomers were placed among the stored albums, not by a whole self-join"


def test_collapse_duplicates_never_returns_two_members_of_a_group(base, copies, tmp_path, vgg16_weights):
    db, _, _ = ingest_copies(base, copies, tmp_path, vgg16_weights)
    with Store.open(db, read_only=True) as store:
        original = stored_original(store, copies["original"])
        group_of = {int(a): i for i, g in enumerate(stored_groups(store)) for a in g}
        total = store.album_count()
    k = 12
    plain = json.loads(cli(db, "similar", "--album", original, "-k", k, "--json").stdout)["results"]
    assert sum(group_of.get(h["album_id"]) == group_of[original] for h in plain) >= 3, "the copies crowd the plain results"
    for query in (original, *sorted(group_of)[:3]):
        result = cli(db, "similar", "--album", query, "-k", k, "--collapse-duplicates", "--json")
        assert result.exit_code == 0, result.stderr
        hits = json.loads(result.stdout)["results"]
        keys = [group_of.get(h["album_id"], -h["album_id"]) for h in hits]
        assert len(hits) == k and len(set(keys)) == k, keys
        assert hits[0]["album_id"] == query or group_of.get(hits[0]["album_id"]) == group_of.get(query)
        distances = [h["distance"] for h in hits]
        assert distances == sorted(distances)
    # Asking for more distinct covers than exist outside the groups stops at what there is.
    groups = len(set(group_of.values()))
    distinct = total - len(group_of) + groups
    assert distinct < total
    everything = json.loads(cli(db, "similar", "--album", original, "-k", total, "--collapse-duplicates", "--json").stdout)["results"]
    assert len(everything) == distinct


def test_the_evidence_picture_shows_both_covers_and_every_inlier(base, copies, tmp_path, vgg16_weights):
    from coversearch.dedupe.evidence import AGREE, GAP
    from coversearch.features.keypoints import SIDE

    db = tmp_path / "store.duckdb"
    shutil.copy(base, db)
    folder = tmp_path / "new"
    (folder / "Pop").mkdir(parents=True)
    for name in ("overlay", "crop-10"):
        (folder / "Pop" / copies[name].name).symlink_to(copies[name])
    run_ingest(db, read_source(folder), FEATURES, vgg16_weights)
    out = tmp_path / "evidence.png"
    result = cli(db, "dedupe", "--evidence", 1, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    first = figures["pairs"][0]
    assert first["inliers"] >= MIN_INLIERS and first["drawn_matches"] >= first["inliers"]
    assert first["shared_cells"] > 0 and 0 <= first["differing_cells"] <= first["shared_cells"]
    with Store.open(db, read_only=True) as store:
        files = {a: store.album_paths(a)[0] for a in (first["a"], first["b"])}
    with Image.open(out) as img:
        picture = np.asarray(img.convert("RGB")).astype(np.float32)
    for album_id, left in ((first["a"], GAP), (first["b"], 2 * GAP + SIDE)):
        with Image.open(files[album_id]) as cover:
            cover = cover.convert("RGB")
            scale = SIDE / max(cover.size)
            cover = np.asarray(cover.resize((round(cover.width * scale), round(cover.height * scale)))).astype(np.float32)
        panel = picture[GAP : GAP + cover.shape[0], left : left + cover.shape[1]]
        if first["mirrored"] and album_id == first["a"]:
            panel = panel[:, ::-1]
        assert np.corrcoef(panel.ravel(), cover.ravel())[0, 1] > 0.6, album_id  # the cover, under its drawn matches
    green = (np.abs(picture - np.asarray(AGREE, np.float32)).sum(axis=2) < 30).sum()
    assert green >= first["inliers"]
    # Bad input: one clear line.
    for args, fragment in ((["--evidence", 99, "--out", out], "no group 99"), (["--evidence", 1], "needs --out"),
                           (["--evidence", 1, "--out", tmp_path / "no" / "x.png"], "does not exist")):
        bad = cli(db, "dedupe", *args)
        assert bad.exit_code != 0 and bad.stderr.strip().startswith("error: ") and fragment in bad.stderr, bad.stderr


def test_the_api_collapses_duplicates_and_serves_the_evidence(base, copies, tmp_path, vgg16_weights):
    import io

    import requests

    db, _, _ = ingest_copies(base, copies, tmp_path, vgg16_weights)
    with Store.open(db, read_only=True) as store:
        original = stored_original(store, copies["original"])
        group_of = {int(a): i for i, g in enumerate(stored_groups(store)) for a in g}
    with serving(db, tmp_path / "no-models", tmp_path / "idx", vgg16_weights) as (url, engine):
        data = copies["original"].read_bytes()
        ask = lambda **form: requests.post(f"{url}/api/query", files={"image": ("q.jpg", data)},  # noqa: E731
                                           data={"k": 10, "feature": "vgg16", **form}, timeout=120).json()
        index = engine.snapshot.searchers["vgg16"].index
        search, asked = index.search, []
        index.search = lambda vector, n, allowed=None: asked.append(n) or search(vector, n, allowed)  # counts, then searches
        plain, collapsed = ask(), ask(collapse_duplicates="1")
        # One search of the vgg16 index per upload, collapsed or not: the duplicate check shares it.
        assert len(asked) == 2 and asked[1] > 10, asked
        keys = lambda a: [group_of.get(h["album_id"], -h["album_id"]) for h in a["similar"]["results"]]  # noqa: E731
        assert len(set(keys(plain))) < 10 and len(set(keys(collapsed))) == 10 == len(keys(collapsed))
        # The answer of `coversearch similar --collapse-duplicates`: one code path.
        by_cli = cli(db, "similar", copies["original"], "-f", "vgg16", "-k", 10, "--collapse-duplicates",
                     "--vgg16-weights", vgg16_weights, "--json")
        assert by_cli.exit_code == 0, by_cli.output
        assert [h["album_id"] for h in json.loads(by_cli.stdout)["results"]] == [h["album_id"] for h in collapsed["similar"]["results"]]
        figures = requests.get(f"{url}/api/duplicates/{original}", timeout=120).json()
        assert original in figures["members"] and figures["pairs"]
        picture = requests.get(url + figures["picture"], timeout=120)
        assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(picture.content)).width > 0
        loner = next(a for a in range(1, 100) if a not in group_of)
        missing = requests.get(f"{url}/api/duplicates/{loner}", timeout=30)
        assert missing.status_code == 404 and "no near-duplicate group" in missing.json()["error"]
        page = requests.get(url + "/", timeout=30).text
        assert 'id="collapse_duplicates"' in page and "/evidence.png" in page


def test_placement_searches_an_index_kept_beside_the_store_and_rebuilds_one_that_is_not_its_own(base, copies, covers5_dir, tmp_path,
                                                                                                 vgg16_weights):
    db, other = tmp_path / "a" / "store.duckdb", tmp_path / "b" / "store.duckdb"
    for path in (db, other):
        path.parent.mkdir()
        shutil.copy(base, path)

    def ingest_into(store_path: Path, name: str, files) -> dict:
        folder = tmp_path / name / "Pop"
        folder.mkdir(parents=True)
        for path in files:
            (folder / path.name).symlink_to(path)
        return run_ingest(store_path, read_source(folder.parent), FEATURES, vgg16_weights)["duplicate_groups"]

    first = ingest_into(db, "one", [copies["resize-50"], copies["crop-10"]])
    assert not first["whole"]["vgg16"] and first["index_rebuilt"] == {"phash": "no saved index", "vgg16": "no saved index"}
    second = ingest_into(db, "two", [copies["jpeg-20"]])
    assert second["index_rebuilt"] == {"phash": None, "vgg16": None}, "the saved index was read and brought up to date"
    assert (Path(str(db) + ".dedupe-index") / "vgg16" / "delta.npz").is_file()
    with Store.open(db) as store:
        assert as_sets(stored_groups(store)) == as_sets(store_groups(store, default_rules(store)))
        original = stored_original(store, copies["original"])
        linked = lambda name: next(a for p, a in store.known_files().items() if p.endswith(f"/Pop/{name}.jpg"))  # noqa: E731
        assert any({original, linked("jpeg-20")} <= set(g.tolist()) for g in stored_groups(store))
        apply_removal(store, plan_removal(store, album_ids=[linked("crop-10")]))
        removed = place(store).to_dict()
        assert removed["index_rebuilt"].get("vgg16") is None, "the exact index drops a removed album in place"
        assert as_sets(stored_groups(store)) == as_sets(store_groups(store, default_rules(store)))
    # Another store's index (the same album ids, other covers) is never trusted.
    ingest_into(other, "three", sorted((covers5_dir / "Pop").iterdir())[10:13])
    shutil.rmtree(Path(str(other) + ".dedupe-index"))
    shutil.copytree(Path(str(db) + ".dedupe-index"), Path(str(other) + ".dedupe-index"))
    placed = ingest_into(other, "four", [copies["overlay"]])
    assert placed["index_rebuilt"]["vgg16"] == "saved vectors differ from the store's"
    with Store.open(other, read_only=True) as store:
        assert as_sets(stored_groups(store)) == as_sets(store_groups(store, default_rules(store)))
