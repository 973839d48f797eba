"""Search by colour: palettes as queries in the hsv space, over a real store of real covers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coversearch.features.hsv import HSVHistogram
from coversearch.imaging.images import decode_image, read_bytes
from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.query.colour import (
    Colour,
    ColourError,
    find_by_colours,
    format_palette,
    palette_of_image,
    palette_vector,
    parse_palette,
)
from coversearch.store import Store
from conftest import Cli, GENRES, link_covers

PER_GENRE = 30


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory, covers5_dir):
    """150 real covers (30 per genre), hsv only: colour search needs no VGG16."""
    base = tmp_path_factory.mktemp("colour")
    root = link_covers(covers5_dir, base / "covers", per_genre=PER_GENRE, offset=100)
    db = base / "store.duckdb"
    with Store.open(db) as store:
        ingest(store, read_source(root), [get_extractor("hsv")])
    return db, root, base


def test_a_single_colour_palette_is_exactly_the_histogram_of_a_cover_of_that_colour():
    for rgb in [(16, 16, 16), (192, 160, 0), (255, 255, 255), (10, 40, 200), (250, 5, 5)]:
        flat = np.full((40, 30, 3), rgb, dtype=np.uint8)
        np.testing.assert_array_equal(palette_vector([Colour(rgb, 1.0)]), HSVHistogram().prepare(flat))


def test_a_two_colour_palette_is_the_histogram_of_a_cover_split_in_those_shares():
    half = np.zeros((50, 40, 3), dtype=np.uint8)
    half[:30] = (16, 16, 16)
    half[30:] = (192, 160, 0)
    palette = parse_palette("#101010:0.6,#c0a000:0.4")
    np.testing.assert_allclose(palette_vector(palette), HSVHistogram().prepare(half), atol=1e-6)


def test_parse_palette_shares():
    assert [c.share for c in parse_palette("#101010:0.6,#c0a000:0.4")] == pytest.approx([0.6, 0.4])
    assert [c.share for c in parse_palette("#101010, #fff")] == pytest.approx([0.5, 0.5])
    assert [c.share for c in parse_palette("#101010:0.5,#fff,#000")] == pytest.approx([0.5, 0.25, 0.25])
    assert [c.share for c in parse_palette("#101010:0.2,#c0a000:0.2")] == pytest.approx([0.5, 0.5])  # proportions
    assert parse_palette("abc")[0].rgb == (0xAA, 0xBB, 0xCC)
    palette = parse_palette("#123456:0.7,#abcdef:0.3")
    assert parse_palette(format_palette(palette)) == palette


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "no colours"),
        ("#12345", "'#12345' is not a colour"),
        ("red", "'red' is not a colour"),
        ("#101010:abc", "share 'abc' of #101010 is not a number"),
        ("#101010:0", "share 0 of #101010 is out of range"),
        ("#101010:1.5", "share 1.5 of #101010 is out of range"),
        ("#101010:nan", "share nan of #101010 is out of range"),
        ("#101010,,#fff", "empty colour"),
        ("#101010,#202020,#303030,#404040", "4 colours given; a palette has one to 3"),
        ("#101010:1,#fff", "leaving nothing for the 1 colour(s) without one"),
    ],
)
def test_bad_palettes_are_one_clear_error(text, message):
    with pytest.raises(ColourError) as err:
        parse_palette(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_palette_taken_from_a_stored_cover_finds_that_cover_first(colour_store):
    db, root, _ = colour_store
    with Store.open(db, read_only=True) as store:
        files = store.known_files()
        chosen = [sorted((root / g).iterdir())[i] for g in GENRES for i in (0, 7)]  # ten covers, two per genre
        for path in chosen:
            palette = palette_of_image(decode_image(read_bytes(path)).rgb)
            assert 1 <= len(palette) <= 3
            result = find_by_colours(store, palette, k=5)
            assert result.hits[0].album_id == files[str(path)], (path, format_palette(palette), result.hits[:2])


def test_cli_similar_colours(colour_store, covers5_dir):
    db, root, base = colour_store
    cli = Cli(db, base / "indexes", base / "models")
    path = sorted((root / "Pop").iterdir())[3]
    palette = format_palette(palette_of_image(decode_image(read_bytes(path)).rgb))
    out = cli("similar", "--colours", palette, "-k", "3", "--json")
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    assert answer["feature"] == "hsv v1" and len(answer["results"]) == 3
    with Store.open(db, read_only=True) as store:
        assert answer["results"][0]["album_id"] == store.known_files()[str(path)]
    # An index built for hsv answers the same query.
    assert cli("index", "build", "--feature", "hsv", "--kind", "faiss-hnsw").exit_code == 0
    again = json.loads(cli("similar", "--colours", palette, "-k", "3", "--json").stdout)
    assert again["index_name"] and again["results"][0]["album_id"] == answer["results"][0]["album_id"]
    genre_only = json.loads(cli("similar", "--colours", "#101010:0.6,#c0a000:0.4", "--genre", "Rock", "-k", "4", "--json").stdout)
    assert all("Rock" in hit["genres"] for hit in genre_only["results"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--colours", "#zzzzzz"], "error: '#zzzzzz' is not a colour"),
        (["--colours", "#101010:2"], "error: share 2 of #101010 is out of range"),
        (["--colours", "#101010", "--feature", "vgg16"], "error: --colours is a query of its own"),
        (["--colours", "#101010", "--album", "1"], "error: --colours is a query of its own"),
        (["--colours", "#101010", "--genre", "Jazz"], "error: no album of genre 'Jazz'"),
    ],
)
def test_cli_colours_bad_input(colour_store, args, message):
    db, _, base = colour_store
    out = Cli(db, base / "indexes", base / "models")("similar", *args)
    assert out.exit_code != 0
    assert out.stderr.strip().splitlines()[-1].startswith(message), out.stderr


def test_colour_search_needs_hsv_vectors(tmp_path, covers5_dir):
    from coversearch.errors import CoverSearchError

    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=1)
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_source(root), [get_extractor("phash")])
        with pytest.raises(CoverSearchError, match="no 'hsv' embeddings"):
            find_by_colours(store, parse_palette("#101010"), k=1)
