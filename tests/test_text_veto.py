"""The text veto of near-duplicates (coversearch/dedupe/text_veto.py), on real covers5 covers, the
real ORB verification and the real OCR: three Parlophone Beatles singles printed from one label
template share their geometry and, at 128 px, their pictures, but not their titles; the text tells
them apart, while transformed copies of one of them keep matching it, and a pair without text is
judged as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from coversearch.bench.transforms import transformed_jpeg
from coversearch.cli.main import app
from coversearch.dedupe import text_veto
from coversearch.dedupe.stored import stored_groups
from coversearch.dedupe.verify import CELL_DIFFERS, MAX_DIFFERING, MIN_INLIERS, confirmed, match, verdict
from coversearch.features.keypoints import Keypoints, keypoints
from coversearch.features.text import CoverText
from coversearch.imaging.images import decode_image
from coversearch.ingest.readers import read_source
from coversearch.ingest.run import run_ingest
from coversearch.store import Store

# Three 45 rpm Parlophone labels of covers5: one template, different titles and catalogue numbers.
WE_CAN_WORK_IT_OUT = "Pop/R-4473502-1519837907-9366-jpeg.jpg"  # R 5389
CANT_BUY_ME_LOVE = "Pop/R-1388116-1265977760-jpeg.jpg"  # R 5114
I_WANT_TO_HOLD_YOUR_HAND = "Pop/R-1388123-1519699074-6087-jpeg.jpg"  # R 5084
COPIES = ["crop-10", "crop-25", "resize-50", "overlay", "greyscale", "mirror"]
READABLE = ["crop-10", "overlay", "greyscale"]  # copies at the original's size, not mirrored


@pytest.fixture(scope="module")
def reader() -> CoverText:
    return CoverText()


def described(reader: CoverText, data: bytes, *, query: bool = False) -> Keypoints:
    """A cover as verification sees it: its stored keypoints record (a query's: described mirrored
    too, as `check` does) and its text record."""
    rgb = decode_image(data).rgb
    found = keypoints(rgb, mirrored=True) if query else Keypoints.from_bytes(keypoints(rgb).to_bytes())
    found.text = json.loads(reader.prepare(rgb))
    return found


@pytest.fixture(scope="module")
def singles(covers5_dir, reader) -> dict[str, Keypoints]:
    return {name: described(reader, (covers5_dir / name).read_bytes())
            for name in (WE_CAN_WORK_IT_OUT, CANT_BUY_ME_LOVE, I_WANT_TO_HOLD_YOUR_HAND)}


def without_text(k: Keypoints) -> Keypoints:
    return Keypoints(k.points, k.descriptors, k.mirrored, k.mirrored_points, k.width, k.small)


@pytest.mark.parametrize("a, b", [(CANT_BUY_ME_LOVE, I_WANT_TO_HOLD_YOUR_HAND), (CANT_BUY_ME_LOVE, WE_CAN_WORK_IT_OUT),
                                  (I_WANT_TO_HOLD_YOUR_HAND, WE_CAN_WORK_IT_OUT)])
def test_two_singles_printed_from_one_template_are_told_apart_by_their_text(singles, a, b):
    ka, kb = singles[a], singles[b]
    found = match(ka, kb)
    # The pictures alone say one cover: the geometry holds and, aligned, few cells differ.
    assert found.inliers >= MIN_INLIERS and found.differing(CELL_DIFFERS) <= MAX_DIFFERING
    assert confirmed(without_text(ka), without_text(kb))
    # The words do not: a title or a catalogue number reads otherwise in the same place.
    lines = text_veto.conflicts(ka.text, kb.text, found.transform, found.grid)
    assert lines, (ka.text["compact"], kb.text["compact"])
    assert not confirmed(ka, kb) and not confirmed(kb, ka)
    inliers, differing, holds = verdict(ka, kb)
    assert inliers >= MIN_INLIERS and differing <= MAX_DIFFERING and not holds


def test_a_pair_without_text_is_unaffected(singles):
    ka, kb = singles[CANT_BUY_ME_LOVE], singles[WE_CAN_WORK_IT_OUT]
    for a, b in ((without_text(ka), without_text(kb)), (ka, without_text(kb)), (without_text(ka), kb)):
        assert verdict(a, b) == verdict(without_text(ka), without_text(kb))
        assert verdict(a, b)[2]
    empty = without_text(kb)
    empty.text = {"lines": [], "width": 300, "height": 300}
    assert verdict(ka, empty)[2]


@pytest.mark.parametrize("name", COPIES)
def test_transformed_copies_of_a_template_single_still_match_it(covers5_dir, reader, singles, name):
    original = singles[WE_CAN_WORK_IT_OUT]
    with Image.open(covers5_dir / WE_CAN_WORK_IT_OUT) as img:
        copy = described(reader, transformed_jpeg(img.convert("RGB"), name), query=True)
    assert copy.text is not None
    assert confirmed(copy, original), (name, copy.text["compact"], text_veto.conflicts(
        copy.text, original.text, match(copy, original).transform, match(copy, original).grid))
    if name in READABLE:  # ... and, where its title can still be read, it matches neither other single
        for other in (CANT_BUY_ME_LOVE, I_WANT_TO_HOLD_YOUR_HAND):
            assert not confirmed(copy, singles[other])


def cli(db: Path, *args):
    return CliRunner().invoke(app, ["--db", str(db), *map(str, args)], catch_exceptions=False)


def test_every_dedupe_path_applies_the_veto(covers5_dir, vgg16_weights, tmp_path):
    """ingest's placement, --report-duplicates, a whole `dedupe --rebuild` and `dedupe check`: two
    singles of one template (a pair beyond the sure distances, so verified) stay apart, a copy joins
    its original."""
    folder = tmp_path / "covers" / "Pop"
    folder.mkdir(parents=True)
    for name in (CANT_BUY_ME_LOVE, I_WANT_TO_HOLD_YOUR_HAND):
        (folder / Path(name).name).symlink_to(covers5_dir / name)
    db = tmp_path / "store.duckdb"
    run_ingest(db, read_source(folder.parent), "phash,vgg16,keypoints,text", vgg16_weights)
    with Store.open(db, read_only=True) as store:
        assert stored_groups(store) == []  # without the text they are one group (see the test above)
    with Image.open(covers5_dir / CANT_BUY_ME_LOVE) as img:
        crop = transformed_jpeg(img.convert("RGB"), "crop-10")
        sticker = transformed_jpeg(img.convert("RGB"), "overlay")
    later = tmp_path / "later" / "Pop"
    later.mkdir(parents=True)
    (later / "crop.jpg").write_bytes(crop)
    result = cli(db, "ingest", later.parent, "--features", "phash,vgg16,keypoints,text", "--vgg16-weights", vgg16_weights,
                 "--report-duplicates", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    with Store.open(db, read_only=True) as store:
        ids = {Path(p).name: a for p, a in store.known_files().items()}
        original, copy = ids[Path(CANT_BUY_ME_LOVE).name], ids["crop.jpg"]
        groups = [set(g.tolist()) for g in stored_groups(store)]
    assert groups == [{original, copy}]
    assert {(d["album_id"], d["duplicate_of"]) for d in report["near_duplicates"]["found"]} == {(copy, original)}
    whole = json.loads(cli(db, "dedupe", "--rebuild", "--json").output)
    assert [sorted(m["album_id"] for m in g["members"]) for g in whole["groups"]] == [sorted([original, copy])]
    (tmp_path / "sticker.jpg").write_bytes(sticker)
    checked = json.loads(cli(db, "check", tmp_path / "sticker.jpg", "--vgg16-weights", vgg16_weights, "--json").output)
    assert checked["verdict"] == "near-duplicate"
    assert sorted(m["album_id"] for m in checked["matches"]) == sorted([original, copy])


def test_text_read_after_the_groups_were_placed_splits_them(covers5_dir, vgg16_weights, tmp_path):
    """Groups stay current when text arrives later: for a whole store (the first text set redoes every
    group) and for covers placed before their text was read (they are placed again)."""
    one, two = tmp_path / "one" / "Pop", tmp_path / "two" / "Pop"
    for folder, name in ((one, CANT_BUY_ME_LOVE), (two, I_WANT_TO_HOLD_YOUR_HAND)):
        folder.mkdir(parents=True)
        (folder / Path(name).name).symlink_to(covers5_dir / name)

    def groups(db):
        with Store.open(db, read_only=True) as store:
            return len(stored_groups(store))

    db = tmp_path / "first.duckdb"
    for folder in (one, two):
        run_ingest(db, read_source(folder.parent), "phash,vgg16,keypoints", vgg16_weights)
    assert groups(db) == 1  # without text the two singles are one cover
    run_ingest(db, read_source(one.parent), "text", vgg16_weights)
    run_ingest(db, read_source(two.parent), "text", vgg16_weights)
    assert groups(db) == 0

    db = tmp_path / "second.duckdb"
    run_ingest(db, read_source(one.parent), "phash,vgg16,keypoints,text", vgg16_weights)
    run_ingest(db, read_source(two.parent), "phash,vgg16,keypoints", vgg16_weights)
    assert groups(db) == 1  # the second single has no text yet: nothing to veto
    run_ingest(db, read_source(two.parent), "text", vgg16_weights)
    assert groups(db) == 0
