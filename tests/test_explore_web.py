"""The page's looking tools in a real headless Chromium over the real server: every thumbnail is a
"more like this" query, genre browse pages through the store, colour search; their JSON routes
answer as the library does."""

from __future__ import annotations

import pytest
import requests

from coversearch.query.colour import find_by_colours, parse_palette
from coversearch.query.similar import find_similar
from coversearch.store import Store
from test_web import a_cover, images_loaded, server, upload_in_page, wait_for  # noqa: F401 (server: a fixture)


def _explore_ids(driver) -> list[int]:
    return [int(x) for x in driver.execute_script(
        "return [...document.querySelectorAll('#explore-results figure')].map(f => f.dataset.albumId);")]


def test_clicking_a_result_shows_its_neighbours_beside_it(browser, server, web_store, covers5_dir):
    from selenium.webdriver.common.by import By

    url, _ = server
    db, _, _ = web_store
    upload_in_page(browser, url, a_cover(covers5_dir, "Pop", 2), "vgg16")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#similar img")) == 10, what="upload results")
    first = browser.find_element(By.CSS_SELECTOR, "#similar figure img")
    clicked = int(first.find_element(By.XPATH, "..").get_attribute("data-album-id"))
    first.click()
    wait_for(lambda: browser.find_element(By.ID, "explore-query").get_attribute("data-album-id") == str(clicked)
             and len(_explore_ids(browser)) == 10, what="the clicked cover's neighbours")
    with Store.open(db, read_only=True) as store:
        want = find_similar(store, album_id=clicked, feature="vgg16", k=11)
    assert _explore_ids(browser) == [h.album_id for h in want.hits if h.album_id != clicked][:10]
    wait_for(lambda: not images_loaded(browser, "#explore-results img, #query-cover")[1], what="thumbnails to load")
    assert images_loaded(browser, "#explore-results img, #query-cover") == [11, []]
    assert f"most like album #{clicked} by vgg16" in browser.find_element(By.ID, "explore-status").text

    # A result of the click-through is itself a query: click the third one.
    third = browser.find_elements(By.CSS_SELECTOR, "#explore-results figure img")[2]
    again = int(third.find_element(By.XPATH, "..").get_attribute("data-album-id"))
    third.click()
    wait_for(lambda: browser.find_element(By.ID, "explore-query").get_attribute("data-album-id") == str(again),
             what="the second click's neighbours")
    wait_for(lambda: not images_loaded(browser, "#explore-results img, #query-cover")[1], what="thumbnails to load")
    assert again not in _explore_ids(browser) and len(_explore_ids(browser)) == 10
    assert browser.find_element(By.ID, "explore-error").text == ""


def test_genre_browse_pages_through_a_genre(browser, server, web_store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, _ = server
    db, _, _ = web_store
    browser.get(url + "/")
    Select(browser.find_element(By.ID, "browse-genre")).select_by_value("Rock")
    browser.find_element(By.ID, "browse-go").click()
    wait_for(lambda: len(_explore_ids(browser)) == 8, what="the Rock covers")
    with Store.open(db, read_only=True) as store:
        rock = sorted(a for a, g in store.genres_by_album().items() if "Rock" in g)
    assert _explore_ids(browser) == rock
    wait_for(lambda: not images_loaded(browser, "#explore-results img")[1], what="thumbnails to load")
    assert images_loaded(browser, "#explore-results img") == [8, []]
    assert "Rock: covers 1-8 of 8" in browser.find_element(By.ID, "explore-status").text
    assert browser.find_element(By.ID, "browse-next").get_attribute("disabled")
    # A browsed cover is a query too.
    browser.find_elements(By.CSS_SELECTOR, "#explore-results figure img")[1].click()
    wait_for(lambda: browser.find_element(By.ID, "explore-query").get_attribute("data-album-id") == str(rock[1]), what="neighbours")

    pages = [requests.get(f"{url}/api/browse", params={"genre": "Rock", "offset": o, "limit": 3}, timeout=30).json() for o in (0, 3, 6)]
    assert [a["album_id"] for p in pages for a in p["albums"]] == rock and {p["total"] for p in pages} == {8}


def test_colour_search_on_the_page_equals_the_library(browser, server, web_store):
    from selenium.webdriver.common.by import By

    url, _ = server
    db, _, _ = web_store
    browser.get(url + "/")
    browser.execute_script("document.getElementById('colour-0').value = '#202020';"
                           "document.getElementById('colour-1').value = '#d0b020';")
    browser.find_element(By.ID, "colour-search").click()
    wait_for(lambda: len(_explore_ids(browser)) == 10, what="colour results")
    with Store.open(db, read_only=True) as store:
        want = find_by_colours(store, parse_palette("#202020:0.6,#d0b020:0.4"), k=10)
    assert _explore_ids(browser) == [h.album_id for h in want.hits]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#explore-query .swatch")) == 2
    wait_for(lambda: not images_loaded(browser, "#explore-results img")[1], what="thumbnails to load")


def test_explore_api_errors_are_clear_json(server):
    url, _ = server
    get = lambda path, **params: requests.get(url + path, params=params, timeout=30)  # noqa: E731
    cases = [
        (get("/api/similar"), 400, "no album: give ?album=ID"),
        (get("/api/similar", album="x"), 400, "album must be a whole number"),
        (get("/api/similar", album="999999"), 404, "no album with id 999999"),
        (get("/api/similar", album="1", feature="colour"), 400, "unknown feature 'colour'"),
        (get("/api/similar", album="1", k="0"), 400, "k must be a whole number from 1 to 50"),
        (get("/api/similar", album="1", genre="Jazz"), 400, "unknown genre 'Jazz'"),
        (get("/api/colours"), 400, "no colours"),
        (get("/api/colours", colours="#12"), 400, "'#12' is not a colour"),
        (get("/api/colours", colours="#101010:7"), 400, "share 7 of #101010 is out of range"),
        (get("/api/browse"), 400, "no genre: give ?genre=NAME"),
        (get("/api/browse", genre="Rock", limit="500"), 400, "limit must be a whole number from 1 to 100"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (fragment, response.text)
        assert fragment in response.json()["error"], response.json()
    ok = get("/api/similar", album="1", k="3", genre="Pop").json()
    assert len(ok["similar"]["results"]) == 3 and all("Pop" in h["genres"] for h in ok["similar"]["results"])
    assert all(h["album_id"] != 1 for h in ok["similar"]["results"])


def test_why_this_genre_on_request(browser, server, web_store):
    """The button asks /api/explain for the shown album; the heat map comes back at the cover's size."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, _ = server
    db, _, _ = web_store
    with Store.open(db, read_only=True) as store:
        album = store.albums([3])[3]
    browser.get(url + "/")
    Select(browser.find_element(By.ID, "model")).select_by_value("xgb-hsv")
    browser.execute_script("window.coversearchMoreLike(3);")
    wait_for(lambda: browser.find_elements(By.ID, "explain-button"), what="the explain button")
    browser.find_element(By.ID, "explain-button").click()
    wait_for(lambda: browser.execute_script(
        "const i = document.getElementById('explain-img'); return i && i.complete && i.naturalWidth > 0;"), what="the heat map")
    size = browser.execute_script("const i = document.getElementById('explain-img'); return [i.naturalWidth, i.naturalHeight];")
    assert size == [album["width"], album["height"]]
    assert "model xgb-hsv" in browser.find_element(By.ID, "explain-note").text

    response = requests.get(f"{url}/api/explain", params={"album": 3, "model": "xgb-hsv"}, timeout=120)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (album["width"], album["height"])
    assert response.headers["X-Model"] == "xgb-hsv" and response.headers["X-Genre"]
    for params, status, fragment in [({}, 400, "give ?album=ID"), ({"album": 999999, "model": "xgb-hsv"}, 404, "no album with id 999999"),
                                     ({"album": 3, "model": "nope"}, 400, "no model named 'nope'")]:
        bad = requests.get(f"{url}/api/explain", params=params, timeout=60)
        assert bad.status_code == status and fragment in bad.json()["error"], bad.text
