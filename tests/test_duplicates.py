"""Near-duplicate covers on real covers and the real VGG16: the phash feature, `coversearch dedupe`,
`coversearch check` / `similar --duplicates`, `ingest --report-duplicates`, and the group-aware split."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from coversearch.bench.transforms import MIRROR, TRANSFORMS, transformed_jpeg
from coversearch.classify.split import assign_sides, groups_across_sides, make_split
from coversearch.cli.main import app
from coversearch.features.base import extract_images
from coversearch.dedupe.check import EXACT, NEAR, NEW, check_image
from coversearch.dedupe.candidates import near_pairs
from coversearch.dedupe.groups import connected_components, find_groups, store_groups
from coversearch.dedupe.rules import default_rules, make_rule
from coversearch.dedupe.stored import stored_groups
from coversearch.dedupe.verify import CELL_DIFFERS, MAX_DIFFERING, MIN_INLIERS, confirmed, match
from coversearch.features.keypoints import keypoints
from coversearch.imaging.images import decode_image
from coversearch.features.phash import PerceptualHash, phash_bits
from coversearch.index.registry import create_index
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.store import Store
from conftest import GENRES, link_covers, serving

PER_GENRE = 5  # 25 real covers in the base store
ORIGINALS = 2  # covers whose transformed copies are checked and stored
# Every transformation, mirror included, must be found at the default rule (keypoint-verified
# candidates beyond the sure distances); benchmarks/README.md measures the same on 100 covers.
FOUND = list(TRANSFORMS)


def run(db: Path, index_dir: Path, *args):
    argv = ["--db", str(db), "--index-dir", str(index_dir), *map(str, args)]
    return CliRunner().invoke(app, argv, catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, covers5_dir, vgg16_extractor) -> Path:
    """25 real covers (5 per genre) with phash and vgg16 vectors."""
    folder = link_covers(covers5_dir, tmp_path_factory.mktemp("covers"), PER_GENRE)
    db = tmp_path_factory.mktemp("base") / "store.duckdb"
    with Store.open(db) as store:
        ingest(store, read_source(folder), [PerceptualHash(), vgg16_extractor])
    return db


@pytest.fixture(scope="module")
def originals(covers5_dir) -> list[Path]:
    """Two stored covers from different genres."""
    return [sorted((covers5_dir / genre).iterdir())[0] for genre in ("Rock", "Country")][:ORIGINALS]


@pytest.fixture(scope="module")
def copies_dir(tmp_path_factory, originals) -> Path:
    """ROOT/<genre>/<file>: every transformation of each original, filed under Pop (another genre)."""
    folder = tmp_path_factory.mktemp("copies")
    (folder / "Pop").mkdir()
    for i, original in enumerate(originals):
        with Image.open(original) as img:
            for name in TRANSFORMS:
                (folder / "Pop" / f"{i}-{name}.jpg").write_bytes(transformed_jpeg(img, name))
    return folder


@pytest.fixture(scope="module")
def grouped_store(tmp_path_factory, base_store, copies_dir, vgg16_extractor) -> Path:
    """The base store plus the copies (all found at the defaults, but mirror) of both originals."""
    db = tmp_path_factory.mktemp("grouped") / "store.duckdb"
    shutil.copy(base_store, db)
    keep = tmp_path_factory.mktemp("kept")
    (keep / "Pop").mkdir()
    for path in sorted((copies_dir / "Pop").iterdir()):
        if path.stem.split("-", 1)[1] in FOUND and not path.stem.endswith(MIRROR):
            (keep / "Pop" / path.name).symlink_to(path)
    with Store.open(db) as store:
        ingest(store, read_source(keep), [PerceptualHash(), vgg16_extractor])
    return db


# -- the feature ---------------------------------------------------------------------------------------
def test_phash_is_64_bits_stable_under_resizing_and_far_apart_for_different_covers(covers5_dir):
    covers = [decode_image(p.read_bytes()).rgb for p in sorted((covers5_dir / "Rock").iterdir())[:6]]
    hashes = np.stack([phash_bits(rgb) for rgb in covers])
    assert hashes.shape == (6, 64) and set(np.unique(hashes)) <= {0.0, 1.0}
    assert (hashes.sum(axis=1) >= 24).all()  # a median split sets about half the bits
    half = [phash_bits(np.asarray(Image.fromarray(rgb).resize((150, 150), Image.Resampling.LANCZOS))) for rgb in covers]
    assert max(int((a != b).sum()) for a, b in zip(hashes, half)) <= 4
    different = [int((hashes[i] != hashes[j]).sum()) for i in range(6) for j in range(i + 1, 6)]
    assert min(different) > make_rule("phash", None, 64).threshold


def test_keypoints_confirm_every_transformed_copy_and_no_unrelated_cover(covers5_dir, originals):
    """The verification stage alone: each copy (from its JPEG file) against its original clears
    MIN_INLIERS with room to spare; covers of one genre against each other stay far below it."""
    for original in originals:
        with Image.open(original) as img:
            stored = keypoints(decode_image(original.read_bytes()).rgb)
            for name in TRANSFORMS:
                copy = keypoints(decode_image(transformed_jpeg(img, name)).rgb, mirrored=True)
                assert match(copy, stored).inliers >= 2 * MIN_INLIERS, name
    others = [keypoints(decode_image(p.read_bytes()).rgb) for p in sorted((covers5_dir / "Rock").iterdir())[1:9]]
    assert max(match(a, b).inliers for i, a in enumerate(others) for b in others[i + 1 :]) < MIN_INLIERS


def _another_release(img: Image.Image) -> Image.Image:
    """The same photograph under another release's lettering: a title band over the top third and a
    track list down the left side, the rest of the picture untouched."""
    out = img.convert("RGB").copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, w, round(h * 0.3)), fill=(20, 20, 20))
    draw.text((w * 0.05, h * 0.05), "GREATEST HITS", fill=(240, 220, 60), font=ImageFont.load_default(max(8, h // 9)))
    draw.rectangle((0, round(h * 0.3), round(w * 0.3), h), fill=(235, 235, 235))
    for line in range(6):
        draw.text((w * 0.02, h * (0.35 + 0.1 * line)), f"{line + 1}. Track", fill=(0, 0, 0), font=ImageFont.load_default(max(6, h // 20)))
    return out


def test_the_aligned_comparison_keeps_a_stickered_copy_and_refuses_a_reused_photograph(originals):
    """Both share the original's geometry; only the copy differs from it in few enough cells."""
    for original in originals:
        stored = keypoints(decode_image(original.read_bytes()).rgb)
        with Image.open(original) as img:
            sticker = match(keypoints(decode_image(transformed_jpeg(img, "overlay")).rgb, mirrored=True), stored)
            buf = io.BytesIO()
            _another_release(img).save(buf, format="JPEG", quality=90)
        reused = match(keypoints(decode_image(buf.getvalue()).rgb, mirrored=True), stored)
        assert sticker.inliers >= MIN_INLIERS and sticker.differing(CELL_DIFFERS) <= MAX_DIFFERING, original.name
        assert reused.inliers >= MIN_INLIERS, original.name  # the geometry alone would call it a copy
        assert reused.differing(CELL_DIFFERS) > MAX_DIFFERING, original.name
        assert not confirmed(keypoints(decode_image(buf.getvalue()).rgb), stored)


# -- finding copies --------------------------------------------------------------------------------------
def test_every_transformation_of_a_stored_cover_is_found_at_the_default_thresholds(base_store, originals, vgg16_extractor):
    extractors = {"vgg16": vgg16_extractor}
    with Store.open(base_store, read_only=True) as store:
        rules = default_rules(store)
        assert [r.feature for r in rules] == ["phash", "vgg16"]
        original_ids = [store.album_id_for_sha256(hashlib.sha256(p.read_bytes()).hexdigest()) for p in originals]
        missed = []
        for original, album_id in zip(originals, original_ids):
            with Image.open(original) as img:
                for name in TRANSFORMS:
                    data = transformed_jpeg(img, name)
                    result = check_image(store, name, rules, data=data, extractors=extractors, label=name)
                    matched = [m.album_id for m in result.matches]
                    if name in FOUND and (result.verdict != NEAR or album_id not in matched):
                        missed.append((original.name, name, result.verdict, matched))
                    # Nothing but the original (the other covers are unrelated).
                    assert set(matched) <= {album_id}, (name, matched)
        exact = check_image(store, originals[0], rules, extractors=extractors)
        assert exact.verdict == EXACT and exact.matches[0].exact and exact.matches[0].album_id == original_ids[0]
    assert missed == []


def test_an_unrelated_cover_is_new(base_store, covers5_dir, vgg16_extractor):
    stranger = sorted((covers5_dir / "HipHop").iterdir())[PER_GENRE + 3]
    with Store.open(base_store, read_only=True) as store:
        result = check_image(store, stranger, default_rules(store), extractors={"vgg16": vgg16_extractor})
    assert result.verdict == NEW and result.matches == []


def test_unrelated_covers_are_not_grouped(base_store):
    with Store.open(base_store, read_only=True) as store:
        result = find_groups(store, default_rules(store))
        albums = store.stats()["albums"]  # 25 files, fewer albums: covers5 files the same bytes under two genres
    assert result.albums == albums and result.groups == []


def test_each_original_and_its_copies_form_one_group_and_nothing_else_joins(grouped_store, originals):
    with Store.open(grouped_store, read_only=True) as store:
        result = find_groups(store, default_rules(store))
        by_sha = store.album_ids_by_sha()

    expected_originals = {by_sha[hashlib.sha256(p.read_bytes()).hexdigest()] for p in originals}
    assert len(result.groups) == ORIGINALS
    for group in result.groups:
        members = {m.album_id for m in group.members}
        assert len(members & expected_originals) == 1
        assert len(members) == 1 + len(FOUND) - 1  # every stored copy (not the mirror)
        rep = group.members[0]
        assert rep.album_id == group.representative
        assert rep.width * rep.height == max(m.width * m.height for m in group.members)  # the largest image
        for member in group.members[1:]:
            assert member.distances  # distance to the representative, per feature


def test_groups_are_connected_components_of_the_relation():
    """A-B and B-C within the threshold, A-C not: one group of three (a chain of real FAISS searches)."""
    rng = np.random.default_rng(7)
    bits = (rng.random((500, 64)) > 0.5).astype(np.float32)
    ids = np.arange(500, dtype=np.int64) * 10 + 3
    bits[1] = bits[0]
    bits[1, :8] = 1 - bits[1, :8]  # 8 bits from 0
    bits[2] = bits[1]
    bits[2, 8:16] = 1 - bits[2, 8:16]  # 8 from 1, 16 from 0
    bits[3] = bits[2]  # identical to 2
    rule = make_rule("phash", 10, 64)
    for params in ({"nhash": 0}, {"nhash": 4, "hash_bits": 16}):
        index = create_index("faiss-binary", "hamming", 64, params).fit(bits, ids)
        a, b, d = near_pairs(index, bits, ids, rule, first_k=2)  # k=2 forces the widening path
        assert {(int(x), int(y)) for x, y in zip(a, b)} == {(3, 13), (13, 23), (13, 33), (23, 33)}
        assert (ids[0], ids[2]) not in set(zip(a.tolist(), b.tolist()))  # 16 bits: not a pair itself
        groups = connected_components(ids, a, b)
        assert [g.tolist() for g in groups] == [[3, 13, 23, 33]]


# -- the split -------------------------------------------------------------------------------------------
def test_the_split_never_separates_a_near_duplicate_group(grouped_store, tmp_path):
    db = tmp_path / "split.duckdb"
    shutil.copy(grouped_store, db)
    with Store.open(db) as store:
        groups = store_groups(store, default_rules(store))
        assert len(groups) == ORIGINALS
        separated_without = 0
        for seed in range(6):
            split = make_split(store, f"s{seed}", seed=seed, replace=True)
            assert groups_across_sides(split, groups)["groups_split"] == 0
            for group in groups:
                assert len({split.sides[int(a)] for a in group}) == 1
            ignoring = make_split(store, f"plain{seed}", seed=seed, replace=True, near_duplicates=False)
            separated_without += groups_across_sides(ignoring, groups)["groups_split"]
    assert separated_without > 0  # the old split does cut them: the test above could fail


def test_assign_sides_keeps_units_whole_and_the_fractions():
    albums = [(i, f"{i:064x}", ("Rock",)) for i in range(1000)]
    groups = [list(range(i, i + 4)) for i in range(0, 200, 4)]
    sides = assign_sides(albums, seed=3, groups=groups)
    assert all(len({sides[a] for a in g}) == 1 for g in groups)
    counts = {s: list(sides.values()).count(s) for s in ("train", "val", "test")}
    assert abs(counts["train"] - 700) <= 4 and abs(counts["test"] - 200) <= 4


# -- the CLI -----------------------------------------------------------------------------------------------
def test_dedupe_json_and_csv_are_valid_and_agree(grouped_store, tmp_path):
    result = run(grouped_store, tmp_path / "idx", "dedupe", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["groups_found"] == ORIGINALS
    with Store.open(grouped_store, read_only=True) as store:
        assert data["rules"] == [rule.label for rule in default_rules(store)]
    out = tmp_path / "groups.csv"
    result = run(grouped_store, tmp_path / "idx", "dedupe", "--csv", out, "-q")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == data["albums_in_groups"]
    assert {int(r["album_id"]) for r in rows} == {m["album_id"] for g in data["groups"] for m in g["members"]}
    assert sum(r["representative"] == "1" for r in rows) == ORIGINALS
    assert "groups holding" in result.stdout
    one = json.loads(run(grouped_store, tmp_path / "idx", "dedupe", "-f", "phash", "-t", "0", "--json").stdout)
    assert one["rules"] == ["phash <= 0"] and all(
        m["distances"]["phash"] == 0 for g in one["groups"] for m in g["members"]
    )
    country = json.loads(run(grouped_store, tmp_path / "idx", "dedupe", "--genre", "Country", "--json").stdout)
    assert country["albums"] == PER_GENRE and country["groups"] == []  # the copies are filed under Pop


def test_check_and_similar_duplicates_give_the_verdict(base_store, originals, copies_dir, covers5_dir, tmp_path):
    stored = run(base_store, tmp_path / "idx", "check", originals[1], "-f", "phash", "--json")
    assert stored.exit_code == 0, stored.stderr
    assert json.loads(stored.stdout)["verdict"] == EXACT
    copy = copies_dir / "Pop" / "0-resize-25.jpg"  # not in the base store
    near = json.loads(run(base_store, tmp_path / "idx", "check", copy, "-f", "phash", "--json").stdout)
    assert near["verdict"] == NEAR and [m["exact"] for m in near["matches"]] == [False]
    assert Path(near["matches"][0]["path"]).name == originals[0].name
    result = run(base_store, tmp_path / "idx", "similar", copy, "--duplicates", "-f", "phash")
    assert result.exit_code == 0 and result.stdout.startswith("near-duplicate: a near-duplicate of album"), result.stdout
    stranger = sorted((covers5_dir / "Pop").iterdir())[PER_GENRE + 1]
    result = run(base_store, tmp_path / "idx", "similar", stranger, "--duplicates", "-f", "phash")
    assert result.exit_code == 0 and result.stdout.startswith("new: no stored album within phash"), result.stdout


def test_ingest_reports_new_near_duplicates_and_still_ingests_them(base_store, originals, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(base_store, db)
    new = tmp_path / "new" / "Pop"
    new.mkdir(parents=True)
    with Image.open(originals[0]) as img:
        (new / "small.jpg").write_bytes(transformed_jpeg(img, "resize-50"))
        (new / "grey.jpg").write_bytes(transformed_jpeg(img, "greyscale"))
    result = run(db, tmp_path / "idx", "ingest", new.parent, "--features", "phash", "--report-duplicates", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["albums_added"] == 2
    found = data["near_duplicates"]["found"]
    stored = [d for d in found if not d["same_run"]]
    assert sorted(Path(d["path"]).name for d in stored) == ["grey.jpg", "small.jpg"]
    assert {Path(d["duplicate_path"]).name for d in stored} == {originals[0].name}
    # The two copies of one cover arrived together: the later is listed as a copy of the earlier.
    same_run = [d for d in found if d["same_run"]]
    assert [sorted([Path(d["path"]).name, Path(d["duplicate_path"]).name]) for d in same_run] == [["grey.jpg", "small.jpg"]]
    assert same_run[0]["album_id"] > same_run[0]["duplicate_of"]


def test_ingest_reports_near_copies_arriving_in_the_same_run(base_store, covers5_dir, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(base_store, db)
    stranger = sorted((covers5_dir / "Pop").iterdir())[PER_GENRE + 1]  # not in the base store
    new = tmp_path / "new" / "Pop"
    new.mkdir(parents=True)
    (new / "a-original.jpg").write_bytes(stranger.read_bytes())
    with Image.open(stranger) as img:
        (new / "b-small.jpg").write_bytes(transformed_jpeg(img, "resize-50"))
    result = run(db, tmp_path / "idx", "ingest", new.parent, "--features", "phash,keypoints", "--report-duplicates", "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)["near_duplicates"]["found"]
    assert [(Path(d["path"]).name, Path(d["duplicate_path"]).name, d["same_run"]) for d in found] == [("b-small.jpg", "a-original.jpg", True)]
    with Store.open(db, read_only=True) as store:  # the report is the stored groups'
        ids = {Path(a["path"]).name: i for i, a in store.albums(list(store.album_ids_by_sha().values())).items()}
        assert any({ids["a-original.jpg"], ids["b-small.jpg"]} <= set(g.tolist()) for g in stored_groups(store))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["dedupe", "-f", "nosuch"], "unknown feature 'nosuch'"),
        (["dedupe", "-f", "phash", "-t", "64"], "out of range"),
        (["dedupe", "-f", "phash", "-t", "2.5"], "out of range"),
        (["dedupe", "-f", "vgg16", "-t", "-0.1"], "out of range"),
        (["dedupe", "-f", "vgg16", "-t", "abc"], "not a number"),
        (["dedupe", "-t", "5"], "FEATURE=T"),
        (["dedupe", "-f", "hsv"], "no 'hsv' embeddings"),
        (["dedupe", "--genre", "Jazz"], "no album of genre 'Jazz'"),
        (["dedupe", "--json", "--csv", "x.csv"], "choose one of --json and --csv"),
        (["check", "no-such.jpg", "-f", "phash"], "no such file"),
    ],
)
def test_bad_input_is_one_clear_error(base_store, tmp_path, args, needle):
    assert_one_line_error(run(base_store, tmp_path / "idx", *args), needle)


def test_an_empty_store_is_one_clear_error(tmp_path):
    db = tmp_path / "empty.duckdb"
    Store.open(db).close()
    assert_one_line_error(run(db, tmp_path / "idx", "dedupe"), "is empty")
    assert_one_line_error(run(tmp_path / "missing.duckdb", tmp_path / "idx", "dedupe"), "no store")


def test_the_web_api_and_page_give_the_duplicate_verdict(base_store, originals, covers5_dir, vgg16_extractor, vgg16_weights, tmp_path):
    import requests

    with serving(base_store, tmp_path / "no-models", tmp_path / "idx", vgg16_weights) as (url, _):
        with Image.open(originals[0]) as img:
            copy = transformed_jpeg(img, "overlay")
        answer = requests.post(f"{url}/api/query", files={"image": ("copy.jpg", copy)}, data={"feature": "phash"}, timeout=60).json()
        assert answer["duplicates"]["verdict"] == NEAR
        assert answer["duplicates"]["matches"][0]["thumb"].startswith("/thumb/")
        stranger = sorted((covers5_dir / "Pop").iterdir())[PER_GENRE + 2]
        with open(stranger, "rb") as fh:
            answer = requests.post(f"{url}/api/query", files={"image": (stranger.name, fh)}, timeout=60).json()
        assert answer["duplicates"]["verdict"] == NEW
        page = requests.get(url + "/", timeout=30).text
        assert 'id="verdict"' in page and "a.duplicates.summary" in page


def test_the_report_shows_the_largest_groups_as_thumbnail_rows(grouped_store, tmp_path):
    from coversearch.report.build import build_report

    out = tmp_path / "report.html"
    summary = build_report(grouped_store, out, model_dir=tmp_path / "no-models", bench_dir=tmp_path / "no-bench")
    assert "duplicates" in summary.sections
    html = out.read_text()
    section = html[html.index('<section id="duplicates">') : html.index("</section>", html.index('<section id="duplicates">'))]
    assert section.count('class="dup-group"') == ORIGINALS
    from coversearch.report.build import GROUP_MEMBERS

    assert section.count("<img") == ORIGINALS * min(GROUP_MEMBERS, len(FOUND)) and "representative" in section


# -- the faiss-binary index kind -------------------------------------------------------------------------
def test_faiss_binary_is_exact_hamming_and_its_multi_hash_is_exact_within_its_radius():
    from coversearch.index.base import IndexParamError
    from coversearch.index.faiss_binary import BinaryIndex

    rng = np.random.default_rng(3)
    codes = (rng.random((3000, 64)) > 0.5).astype(np.float32)
    near = codes[:300].copy()
    for row in near:  # queries 0..11 bits from a stored code
        flip = rng.choice(64, size=rng.integers(0, 12), replace=False)
        row[flip] = 1 - row[flip]
    ids = np.arange(3000, dtype=np.int64) + 1000
    truth = ((near[:, None, :] != codes[None, :, :]).sum(axis=2))  # Hamming, brute force in numpy
    flat = create_index("faiss-binary", "hamming", 64).fit(codes, ids)
    exact = create_index("exact", "hamming", 64).fit(codes, ids)  # float L2 on 0/1 values: squared = Hamming
    found_ids, found_d = flat.batch_search(near, 5)
    np.testing.assert_array_equal(found_d, np.sort(truth, axis=1)[:, :5])
    np.testing.assert_array_equal(exact.batch_search(near, 5)[1], found_d)
    multi = create_index("faiss-binary", "hamming", 64, {"nhash": 4, "hash_bits": 16, "nflip": 2}).fit(codes, ids)
    assert multi.exact_radius == 11
    m_ids, m_d = multi.batch_search(near, 1)
    np.testing.assert_array_equal(m_d[:, 0], truth.min(axis=1))  # every query has a code within 11 bits
    allowed = ids[::7]
    f_ids, f_d = multi.batch_search(near[:20], 3, allowed)
    assert np.isin(f_ids, allowed).all()
    np.testing.assert_array_equal(f_d, np.sort(truth[:20][:, ::7], axis=1)[:, :3])
    with pytest.raises(IndexParamError, match="hamming"):
        create_index("faiss-binary", "euclidean", 64)
    with pytest.raises(IndexParamError, match="hash_bits"):
        create_index("faiss-binary", "hamming", 64, {"nhash": 5, "hash_bits": 16})
    assert BinaryIndex.supported_metrics == ("hamming",)


def test_dedupe_uses_a_built_faiss_binary_index_and_agrees_with_exact_search(grouped_store, tmp_path):
    exact = json.loads(run(grouped_store, tmp_path / "idx", "dedupe", "-f", "phash", "--json").stdout)
    built = run(grouped_store, tmp_path / "idx", "index", "build", "--feature", "phash", "--kind", "faiss-binary",
                "--param", "nhash=4", "--json")
    assert built.exit_code == 0, built.stderr
    indexed = json.loads(run(grouped_store, tmp_path / "idx", "dedupe", "-f", "phash", "--json").stdout)
    assert exact["searched_with"]["phash"].startswith("exact search")
    assert indexed["searched_with"]["phash"] == "index 'phash-faiss-binary' (faiss-binary)"
    assert exact["groups"] == indexed["groups"] and exact["groups"]
