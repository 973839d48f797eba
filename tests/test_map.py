"""The catalogue map: layouts cached in the store per feature-set state, stale after ingest and
remove, recomputed on demand; the map page's level of detail and clicks in a real Chromium."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coversearch.features.registry import get_extractor
from coversearch.ingest.pipeline import ingest
from coversearch.ingest.readers import read_source
from coversearch.layout.map import catalogue_map, layout_state, pca_2d
from coversearch.store import Store
from conftest import GENRES, Cli, hsv_map, link_covers
from test_web import images_loaded, server, wait_for  # noqa: F401 (server: a fixture)


def test_pca_2d_is_deterministic_in_the_unit_square_and_finds_the_main_axis():
    rng = np.random.default_rng(0)
    # Points along one direction with small noise: the first axis must carry their order.
    t = rng.uniform(-1, 1, 500)
    direction = rng.normal(size=64)
    direction /= np.linalg.norm(direction)
    vectors = (t[:, None] * direction * 10 + rng.normal(scale=0.1, size=(500, 64))).astype(np.float32)
    xy = pca_2d(vectors)
    assert xy.shape == (500, 2) and xy.dtype == np.float32
    assert xy.min() >= 0 and xy.max() <= 1
    assert abs(np.corrcoef(xy[:, 0], t)[0, 1]) > 0.99
    np.testing.assert_array_equal(xy, pca_2d(vectors.copy()))


def test_map_layout_is_cached_goes_stale_after_ingest_and_remove_and_is_recomputed(covers5_dir, tmp_path):
    cli, run = hsv_map(covers5_dir, tmp_path, 4, "--method", "pca")

    def albums() -> int:
        with Store.open(cli.db, read_only=True) as store:
            return store.stats()["albums"]

    n = albums()  # 20 files; covers5 holds the same bytes under two genres now and then
    first = run()
    assert (first["cache"], first["albums"], first["saved"]) == ("computed", n, True)
    assert first["thumbs_written"] == n and len(list((tmp_path / "map_thumbs").glob("*.jpg"))) == n
    with Store.open(cli.db, read_only=True) as store:
        record, cols = store.map_layout(store.feature_set("hsv").id, "pca")
        ids, xy = cols["album_id"], cols["xy"]
        assert len(ids) == n and record["albums"] == n and layout_state(store, "hsv", "pca") == "current"
        assert catalogue_map(store, "hsv", method="pca").cache == "hit"
        np.testing.assert_array_equal(catalogue_map(store, "hsv", method="pca").xy, xy)
    second = run("--no-thumbs")
    assert second["cache"] == "hit" and second["layout_seconds"] == first["layout_seconds"]  # not laid out again

    # An ingest changes the vectors: the cached layout is stale, and the next map lays out again.
    more = link_covers(covers5_dir, tmp_path / "more", per_genre=2, offset=50)
    assert cli("ingest", more, "--features", "hsv", "--quiet").exit_code == 0
    with Store.open(cli.db, read_only=True) as store:
        assert layout_state(store, "hsv", "pca") == "stale"
        stale = catalogue_map(store, "hsv", method="pca")  # a reader recomputes in memory and cannot cache it
        n = store.stats()["albums"]
        assert n > first["albums"] and (stale.cache, stale.saved, len(stale.album_ids)) == ("recomputed", False, n)
        assert "not cached" in stale.notes[0]
        assert layout_state(store, "hsv", "pca") == "stale"
    third = run("--no-thumbs")
    assert (third["cache"], third["albums"]) == ("recomputed", n)
    with Store.open(cli.db, read_only=True) as store:
        assert layout_state(store, "hsv", "pca") == "current"

    # A remove takes the album's point out at once and leaves the layout stale.
    assert cli("remove", "--album", "3").exit_code == 0
    with Store.open(cli.db, read_only=True) as store:
        ids = store.map_layout(store.feature_set("hsv").id, "pca")[1]["album_id"]
        assert 3 not in ids.tolist() and len(ids) == n - 1 and layout_state(store, "hsv", "pca") == "stale"
    assert run("--no-thumbs")["albums"] == n - 1
    assert run("--no-thumbs", "--rebuild")["cache"] == "recomputed"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--feature", "vgg16"], "error: the store has no 'vgg16' embeddings"),
        (["--out", "{tmp}/no/such/map.html"], "does not exist"),
        (["--out", "{tmp}"], "is a folder"),
        (["--method", "umap"], "error: unknown map method 'umap'; choose from tsne, pca"),
    ],
)
def test_map_bad_input(covers5_dir, tmp_path, args, message):
    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=1)
    cli = Cli(tmp_path / "store.duckdb", tmp_path / "indexes", tmp_path / "models")
    assert cli("ingest", root, "--features", "hsv", "--quiet").exit_code == 0
    result = cli("map", "--feature", "hsv", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0 and message in result.stderr.strip().splitlines()[-1], result.stderr


def test_map_file_shows_dots_zoomed_out_thumbnails_zoomed_in_and_neighbours_on_click(browser, covers5_dir, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from coversearch.layout.neighbours import nearest_albums
    from coversearch.imaging.thumbs import album_thumbnail
    from coversearch.web.map_view import map_data, standalone_html

    root = link_covers(covers5_dir, tmp_path / "covers", per_genre=12)
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, read_source(root), [get_extractor("hsv")])
        layout = catalogue_map(store, "hsv")
        data = map_data(layout, store.first_genres(layout.album_ids), "t/{id}.jpg", nearest_albums(store, "hsv", 4))
        (tmp_path / "t").mkdir()
        albums = store.albums(layout.album_ids.tolist())
        for a in layout.album_ids.tolist():
            (tmp_path / "t" / f"{a}.jpg").write_bytes(album_thumbnail(store, albums[a]))
    data["maxThumbs"] = 8  # about 60 albums: zoomed out they are dots
    (tmp_path / "map.html").write_text(standalone_html(data, "test"))
    browser.get((tmp_path / "map.html").as_uri())
    canvas = browser.find_element(By.ID, "map")
    assert canvas.get_attribute("data-mode") == "points" and canvas.get_attribute("data-visible") == str(len(data["ids"]))
    assert canvas.get_attribute("data-requested") == "0"  # no thumbnail is loaded for dots
    assert [o.text for o in browser.find_elements(By.CSS_SELECTOR, ".map-filter option")] == ["all genres", *GENRES]

    target = int(data["ids"][17])
    zoom = 2.0
    while True:  # zoom in on one album until few enough covers are in view for thumbnails
        browser.execute_script(f"window.coversearchMap.zoomTo({target}, {zoom});")
        if canvas.get_attribute("data-mode") == "thumbs":
            break
        zoom *= 1.6
        assert zoom < 1e5
    wait_for(lambda: canvas.get_attribute("data-loaded") == canvas.get_attribute("data-requested"), what="visible thumbnails")
    requested = int(canvas.get_attribute("data-requested"))
    assert 1 <= requested <= 8  # only what is in view
    # Click the album at the centre: it and its 4 neighbours appear, and their thumbnails load.
    x, y = browser.execute_script(f"return window.coversearchMap.screenOf({target});")
    size = canvas.size
    ActionChains(browser).move_to_element_with_offset(canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#picked figure")) == 5, what="the neighbours")
    shown = [int(f.get_attribute("data-album-id")) for f in browser.find_elements(By.CSS_SELECTOR, "#picked figure")]
    assert shown == [target, *data["neighbours"][str(target)]]
    wait_for(lambda: not images_loaded(browser, "#picked img")[1], what="neighbour thumbnails")


def test_page_map_zooms_to_thumbnails_and_a_click_opens_neighbours(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.get(url + "/")
    browser.find_element(By.ID, "map-show").click()
    wait_for(lambda: "covers, t-SNE of" in browser.find_element(By.ID, "map-status").text, what="the map")
    canvas = browser.find_element(By.ID, "map")
    assert canvas.get_attribute("data-visible") == "40"  # 8 covers x 5 genres, all in view
    data = requests_json(url + "/api/map?feature=vgg16")
    assert len(data["ids"]) == 40 and data["thumb"] == "/thumb/{id}.jpg"
    target = data["ids"][5]
    browser.execute_script(f"window.coversearchMap.zoomTo({target}, 6);")
    wait_for(lambda: canvas.get_attribute("data-mode") == "thumbs"
             and canvas.get_attribute("data-loaded") == canvas.get_attribute("data-requested"), what="thumbnails")
    browser.execute_script("arguments[0].scrollIntoView();", canvas)
    x, y = browser.execute_script(f"return window.coversearchMap.screenOf({target});")
    size = canvas.size
    ActionChains(browser).move_to_element_with_offset(canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()
    wait_for(lambda: browser.find_element(By.ID, "explore-query").get_attribute("data-album-id") == str(target)
             and len(browser.find_elements(By.CSS_SELECTOR, "#explore-results figure")) == 10, what="the neighbours")
    wait_for(lambda: not images_loaded(browser, "#explore-results img")[1], what="neighbour thumbnails")


def requests_json(url: str) -> dict:
    import requests

    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()
