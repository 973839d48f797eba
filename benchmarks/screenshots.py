"""Screenshots of the page's map, click-through and explanation views for README.md, made by the
tests' headless Chromium against the real server.

    .venv/bin/python benchmarks/screenshots.py --db COPY_OF_covers5.duckdb [--model-dir models] [--out docs/screenshots]

With no usable model in --model-dir, a quick one (XGBoost, 40 rounds on vgg16) is trained into a
temporary folder so that the explanation has a genre to explain (the store must then be writable:
the first training makes the split).  Writes map.png, map-cluster.png (a hovered cluster and its
most typical covers), map-zoomed.png, click-through.png and explanation.png; `--parts map` writes
the map's three alone (no model needed).  Run `coversearch map` on the store first so the page
finds its t-SNE layout cached.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


def wait_for(predicate, timeout: float = 300, what: str = "condition"):
    """Selenium's own wait (the browser may be slow to lay out 4,702 covers on a busy machine)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(None, timeout, poll_frequency=0.1).until(lambda _: predicate(), message=f"waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--album", type=int, default=None, help="The album clicked (default: the map's centre album).")
    parser.add_argument("--parts", default="map,click", help="map: the map's screenshots; click: click-through and explanation.")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    from benchmarks.bench_explore import chromium
    from coversearch.classify.model import list_models
    from coversearch.classify.recipes import Recipe
    from coversearch.classify.train import train_model
    from coversearch.store import Store
    from coversearch.web import create_app
    from coversearch.web.server import WebServer

    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    models = args.model_dir
    if "click" in parts and (models is None or not any(e.card is not None for e in list_models(models))):
        models = work / "models"
        print("training a quick model for the explanation ...", file=sys.stderr)
        with Store.open(args.db, create=False) as store:
            train_model(store, models, Recipe("screens-xgb", "xgboost", ("vgg16",), {"n_estimators": 40}), name="screens-xgb",
                        evaluate=False)
    args.out.mkdir(parents=True, exist_ok=True)
    app = create_app(args.db, models or work / "no-models", work / "no-indexes", args.weights)
    server = WebServer(app, "127.0.0.1", 0, threads=4)
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    driver = chromium()
    driver.set_window_size(1400, 1100)
    try:
        driver.get(url + "/")
        driver.find_element("id", "map-show").click()
        wait_for(lambda: " covers, " in driver.find_element("id", "map-status").text, what="the map")
        section = driver.find_element("id", "catalogue-map")
        driver.execute_script("arguments[0].scrollIntoView();", section)
        time.sleep(0.5)
        section.screenshot(str(args.out / "map.png"))
        # Hover the biggest cluster's centre: its albums ringed, its most typical covers above the map.
        clusters = driver.execute_async_script(
            "const done = arguments[0]; fetch('/api/map').then(r => r.json()).then(d => done(d.clusters || []));")
        if clusters:
            from selenium.webdriver.common.action_chains import ActionChains

            c = max(range(len(clusters)), key=lambda k: clusters[k]["n"])
            canvas = driver.find_element("id", "map")
            x, y = driver.execute_script(f"return window.coversearchMap.screenOf({clusters[c]['typical'][0]});")
            size = canvas.size
            ActionChains(driver).move_to_element_with_offset(canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)).perform()
            wait_for(lambda: driver.execute_script(
                "const i = [...document.querySelectorAll('#map-cluster img')]; return i.length > 0 && i.every(i => i.complete && i.naturalWidth > 0);"),
                what="the cluster's typical covers")
            time.sleep(0.5)
            section.screenshot(str(args.out / "map-cluster.png"))
        album = args.album
        if album is None:
            album = driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/map').then(r => r.json()).then(d => done(d.ids[Math.floor(d.ids.length / 2)]));")
        driver.execute_script(f"window.coversearchMap.zoomTo({album}, 14);")
        canvas = driver.find_element("id", "map")
        wait_for(lambda: canvas.get_attribute("data-mode") == "thumbs"
                 and canvas.get_attribute("data-loaded") == canvas.get_attribute("data-requested"), what="map thumbnails")
        time.sleep(0.5)
        section.screenshot(str(args.out / "map-zoomed.png"))
        if "click" not in parts:
            return

        driver.execute_script(f"window.coversearchMoreLike({album});")
        wait_for(lambda: driver.find_element("id", "explore-query").get_attribute("data-album-id") == str(album), what="neighbours")
        wait_for(lambda: driver.execute_script(
            "return [...document.querySelectorAll('#explore img')].every(i => i.complete && i.naturalWidth > 0);"), what="thumbnails")
        explore = driver.find_element("id", "explore")
        driver.execute_script("arguments[0].scrollIntoView();", explore)
        time.sleep(0.3)
        explore.screenshot(str(args.out / "click-through.png"))

        driver.find_element("id", "explain-button").click()
        wait_for(lambda: driver.execute_script(
            "const i = document.getElementById('explain-img'); return i && i.complete && i.naturalWidth > 0;"), what="the heat map")
        time.sleep(0.3)
        driver.find_element("css selector", "#explore .row").screenshot(str(args.out / "explanation.png"))
    finally:
        driver.quit()
        server.stop()
        app.extensions["coversearch"].close()
    print(f"wrote {', '.join(p.name for p in sorted(args.out.glob('*.png')))} to {args.out}")


if __name__ == "__main__":
    main()
