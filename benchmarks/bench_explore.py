"""The looking tools, timed: the catalogue map's layout time and page weight at 5k (covers5) and
100k albums (synthetic vectors, real thumbnails reused), and the page latency of click-through
and colour search under concurrent clients.

    .venv/bin/python benchmarks/bench_explore.py --db COPY_OF_covers5.duckdb [--synthetic 100000]
        [--clients 8] [--duration 30] [--no-readme]

The store is used as given (make a copy first: `coversearch map` caches the layout in it and the
thumbnail cache grows beside it); it is brought to the current schema with `coversearch db upgrade`.

- map, 5k: `catalogue_map` on the store's vgg16 vectors, laid out anew (load + t-SNE + save in the
  store) and then from the cache; the page served by the real `coversearch serve`, opened in
  headless Chromium: /api/map bytes, time from the button to the first drawn map, one redraw at
  full view (all dots), and the thumbnails the map loads zoomed out and zoomed in (count, bytes).
- map, 100k: the store's vgg16 vectors tiled with Gaussian noise (0.05 x each dimension's standard
  deviation) to --synthetic rows: PCA time (the page weight does not depend on the method; t-SNE at
  100k is in bench_map.py), the map file's bytes, and the same browser figures on
  a map file served over HTTP whose thumbnails are the real covers' reused (album i shows
  real album i mod n).
- palette: 300 random stored covers, each searched by its own 3-colour palette: how many come first.
- latency: --clients threads each loop for --duration seconds over (a) a click on a random stored
  cover (GET /api/similar, vgg16, k=10, then its 11 thumbnails) and (b) a colour search with 1-3
  random colours (GET /api/colours, k=10, then its 10 thumbnails); p50/p95/p99 per request and
  per request with thumbnails.
Figures go between the `explore` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from benchmarks.bench_web import COVERSEARCH, Server, log, percentile  # noqa: E402
from benchmarks.readme_blocks import machine_line, replace_block  # noqa: E402


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tempfile.mkdtemp(prefix='bench-explore-chromium-')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(300)
    driver.set_script_timeout(300)
    return driver


# JavaScript measuring one map already mounted as window.coversearchMap.
MEASURE_JS = """
const done = arguments[arguments.length - 1];
performance.setResourceTimingBufferSize(100000);  // the default keeps 250 entries
const map = window.coversearchMap, canvas = document.getElementById("map");
const t0 = performance.now(); map.draw(); const drawMs = performance.now() - t0;
const thumbs = () => performance.getEntriesByType("resource").filter(e => /thumb|\\/t\\//.test(e.name));
const before = thumbs().length;
const id = arguments[0];
let factor = 2;
map.zoomTo(id, factor);
while (canvas.dataset.mode !== "thumbs" && factor < 1e6) { factor *= 1.5; map.zoomTo(id, factor); }
const t1 = performance.now(); map.draw(); const drawThumbsMs = performance.now() - t1;
const wait = () => {
  if (Number(canvas.dataset.loaded) >= Number(canvas.dataset.requested)) {
    const got = thumbs();
    done({drawMs, drawThumbsMs, thumbsBefore: before, zoom: factor, visible: Number(canvas.dataset.visible),
          requested: Number(canvas.dataset.requested), thumbsLoaded: got.length - before,
          thumbBytes: got.slice(before).reduce((s, e) => s + (e.encodedBodySize || 0), 0)});
  } else setTimeout(wait, 100);
};
wait();
"""


def map_5k(args, work: Path, server: Server) -> dict:
    from coversearch.layout.map import catalogue_map
    from coversearch.store import Store

    out: dict = {}
    with Store.open(args.db, create=False) as store:
        started = time.perf_counter()
        layout = catalogue_map(store, "vgg16", recompute=True)
        out["albums"] = len(layout.album_ids)
        out["layout_total_s"] = time.perf_counter() - started
        out["pca_s"] = layout.seconds
        started = time.perf_counter()
        again = catalogue_map(store, "vgg16")
        out["cached_s"] = time.perf_counter() - started
        assert again.cache == "hit"
    api = requests.get(f"{server.url}/api/map?feature=vgg16", timeout=300)
    out["api_bytes"] = len(api.content)
    out["api_gzip_bytes"] = len(gzip.compress(api.content))
    out["page_bytes"] = len(requests.get(server.url + "/", timeout=60).content)
    result = subprocess.run([*COVERSEARCH, "--db", str(args.db), "map", "--feature", "vgg16", "--out", str(work / "map5k.html"),
                             "--no-thumbs", "--json"], cwd=REPO, capture_output=True, text=True, env=args.env)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    out["file_bytes"] = json.loads(result.stdout)["bytes"]
    driver = chromium()
    try:
        driver.get(server.url + "/")
        started = time.perf_counter()
        driver.find_element("id", "map-show").click()
        while " covers, " not in driver.find_element("id", "map-status").text:
            time.sleep(0.05)
        out["first_draw_s"] = time.perf_counter() - started
        ids = json.loads(api.content)["ids"]
        out |= driver.execute_async_script(MEASURE_JS, ids[len(ids) // 2])
    finally:
        driver.quit()
    return out


class _Thumbs(http.server.SimpleHTTPRequestHandler):
    """Serves the map file from its folder, and /t/<i>.jpg as real thumbnail i mod n."""

    thumbs: list[bytes] = []

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/t/"):
            i = int(self.path[3:].split(".")[0])
            body = self.thumbs[i % len(self.thumbs)]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def map_synthetic(args, work: Path) -> dict:
    from coversearch.layout.map import MapLayout, pca_2d
    from coversearch.store import Store
    from coversearch.imaging.thumbs import album_thumbnail
    from coversearch.web.map_view import map_data, standalone_html

    out: dict = {"albums": args.synthetic}
    with Store.open(args.db, read_only=True) as store:
        fs = store.feature_set("vgg16")
        ids, real = store.load_embeddings(fs)
        genres_of = store.first_genres(ids)
        sample = ids[:: max(1, len(ids) // 400)][:400]
        albums = store.albums(sample.tolist())
        _Thumbs.thumbs = [album_thumbnail(store, albums[int(a)]) for a in sample]
    rng = np.random.default_rng(0)
    reps = -(-args.synthetic // len(real))
    vectors = np.tile(real, (reps, 1))[: args.synthetic]
    vectors = vectors + rng.normal(size=vectors.shape).astype(np.float32) * (0.05 * real.std(axis=0))
    started = time.perf_counter()
    xy = pca_2d(vectors, "cosine")
    out["pca_s"] = time.perf_counter() - started
    synthetic_ids = np.arange(args.synthetic, dtype=np.int64)
    real_genre = [genres_of.get(int(ids[i % len(ids)]), "") for i in range(args.synthetic)]
    layout = MapLayout("vgg16 v1 (synthetic)", "pca", synthetic_ids, xy, out["pca_s"], "computed", False, "")
    data = map_data(layout, dict(zip(synthetic_ids.tolist(), real_genre)), "t/{id}.jpg")
    text = standalone_html(data, f"{args.synthetic:,} synthetic albums")
    (work / "map100k.html").write_text(text)
    out["file_bytes"] = len(text.encode())
    out["file_gzip_bytes"] = len(gzip.compress(text.encode()))
    handler = lambda *a, **k: _Thumbs(*a, directory=str(work), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    driver = chromium()
    try:
        started = time.perf_counter()
        driver.get(f"http://127.0.0.1:{httpd.server_port}/map100k.html")
        out["first_draw_s"] = time.perf_counter() - started
        out |= driver.execute_async_script(MEASURE_JS, args.synthetic // 2)
    finally:
        driver.quit()
        httpd.shutdown()
    return out


def latency(args, server: Server, album_ids: list[int]) -> dict:
    rng = random.Random(0)
    results = {"click": [], "click+thumbs": [], "colours": [], "colours+thumbs": []}
    errors = []
    stop = threading.Event()

    def client(seed: int) -> None:
        r = random.Random(seed)
        session = requests.Session()
        while not stop.is_set():
            kind = "click" if r.random() < 0.5 else "colours"
            if kind == "click":
                url = f"{server.url}/api/similar?album={r.choice(album_ids)}&feature=vgg16&k=10"
            else:
                n = r.randint(1, 3)
                colours = ",".join("#%06x" % r.randrange(1 << 24) for _ in range(n))
                url = f"{server.url}/api/colours?colours={requests.utils.quote(colours)}&k=10"
            t0 = time.perf_counter()
            response = session.get(url, timeout=300)
            t1 = time.perf_counter()
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:100]}")
                continue
            answer = response.json()
            thumbs = [h["thumb"] for h in answer["similar"]["results"]] + ([answer["query"]["thumb"]] if kind == "click" else [])
            for t in thumbs:
                if session.get(server.url + t, timeout=300).status_code != 200:
                    errors.append("thumb " + t)
            t2 = time.perf_counter()
            if not stop.is_set():
                results[kind].append(t1 - t0)
                results[kind + "+thumbs"].append(t2 - t0)

    threads = [threading.Thread(target=client, args=(rng.random(),)) for _ in range(args.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(args.duration)
    stop.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "errors": errors,
            "rows": {k: {"n": len(v), "p50": statistics.median(v), "p95": percentile(v, 0.95), "p99": percentile(v, 0.99)}
                     for k, v in results.items() if v}}


def palette_self_search(args, n: int = 300) -> dict:
    """How often a stored cover's own 3-colour palette finds that cover first (and within 10)."""
    from coversearch.imaging.images import decode_image, read_bytes
    from coversearch.query.colour import palette_of_image, search_by_colours
    from coversearch.query.similar import SimilarSearcher
    from coversearch.store import Store
    from coversearch.imaging.thumbs import candidate_paths

    ranks = []
    with Store.open(args.db, read_only=True) as store:
        searcher = SimilarSearcher.exact(store, "hsv")
        ids = searcher.index.ids.tolist()
        chosen = random.Random(1).sample(ids, min(n, len(ids)))
        albums = store.albums(chosen)
        started = time.perf_counter()
        for album_id in chosen:
            path = next((p for p in candidate_paths(store, albums[album_id]) if p.is_file()), None)
            if path is None:
                raise SystemExit(f"album {album_id}'s file is not where it was ingested from")
            palette = palette_of_image(decode_image(read_bytes(path)).rgb)
            hits = [h.album_id for h in search_by_colours(searcher, palette, 10).hits]
            ranks.append(hits.index(album_id) + 1 if album_id in hits else None)
        seconds = time.perf_counter() - started
    return {"covers": len(chosen), "first": sum(r == 1 for r in ranks), "top10": sum(r is not None for r in ranks),
            "seconds_per_query": seconds / len(chosen)}


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5")
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--parts", default="map,synthetic,latency,palette")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    import os

    args.env = os.environ | {"COVERSEARCH_VGG16_WEIGHTS": str(args.weights), "PYTHONPATH": str(REPO)}
    parts = set(args.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-explore-"))
    subprocess.run([*COVERSEARCH, "--db", str(args.db), "db", "upgrade"], cwd=REPO, check=True, env=args.env, capture_output=True)
    from coversearch.store import Store

    with Store.open(args.db, read_only=True) as store:
        album_ids = store.embedding_album_ids(store.feature_set("vgg16")).tolist()
    load = os.getloadavg()[0]
    figures: dict = {"load_before": load}
    server = Server(["--db", str(args.db), "--model-dir", str(work / "no-models"), "--index-dir", str(work / "no-indexes")],
                    args.env, work / "serve.log", "--threads", "8")
    try:
        if "map" in parts:
            log("map at 5k ...")
            figures["map5k"] = map_5k(args, work, server)
            log(json.dumps(figures["map5k"]))
        if "latency" in parts:
            log(f"latency with {args.clients} clients for {args.duration} s ...")
            figures["latency"] = latency(args, server, album_ids)
            log(json.dumps(figures["latency"]))
    finally:
        server.stop()
    if "palette" in parts:
        log("own-palette searches ...")
        figures["palette"] = palette_self_search(args)
        log(json.dumps(figures["palette"]))
    if "synthetic" in parts:
        log(f"map at {args.synthetic:,} synthetic albums ...")
        figures["map100k"] = map_synthetic(args, work)
        log(json.dumps(figures["map100k"]))
    figures["load_after"] = os.getloadavg()[0]
    (work / "figures.json").write_text(json.dumps(figures, indent=2))
    log(f"figures in {work / 'figures.json'}")
    if args.no_readme:
        print(json.dumps(figures, indent=2))
        return
    replace_block(HERE / "README.md", "explore", render(args, figures))


def render(args, f: dict) -> str:
    lines = [f"Command: `.venv/bin/python benchmarks/bench_explore.py --db COPY_OF_covers5.duckdb --synthetic {args.synthetic} "
             f"--clients {args.clients} --duration {args.duration:g}`  ",
             f"Machine: {machine_line()}; load average {f['load_before']:.1f} before, {f['load_after']:.1f} after (shared machine)", ""]
    rows = []
    for key, label in (("map5k", "covers5"), ("map100k", f"{args.synthetic:,} synthetic")):
        m = f.get(key)
        if not m:
            continue
        weight = m.get("api_bytes", m.get("file_bytes"))
        gz = m.get("api_gzip_bytes", m.get("file_gzip_bytes"))
        rows.append(f"| {label} | {m['albums']:,} | {m['pca_s']:.2f} s | "
                    f"{(str(round(m['layout_total_s'], 2)) + ' s / ' + str(round(m['cached_s'], 2)) + ' s') if 'layout_total_s' in m else '-'} | "
                    f"{mb(weight)} ({mb(gz)} gzipped) | {m['first_draw_s']:.2f} s | {m['drawMs']:.0f} ms | "
                    f"{m['thumbsBefore']} | {m['visible']} covers in view: {m['thumbsLoaded']} thumbnails, {mb(m['thumbBytes'])} | {m['drawThumbsMs']:.0f} ms |")
    if rows:
        lines += ["| map | albums | layout (5k: t-SNE; synthetic: PCA) | layout anew (load, layout, save) / from the cache | coordinates | button (or file) to drawn map | redraw, all dots | thumbnails zoomed out | zoomed in | redraw, thumbnails |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|", *rows, ""]
    if "map5k" in f:
        lines.append(f"The covers5 map file written by `coversearch map --no-thumbs` (8 neighbours per album for clicks) is "
                     f"{mb(f['map5k']['file_bytes'])}; the page around the map is {mb(f['map5k']['page_bytes'])}.")
        lines.append("")
    if "latency" in f:
        lat = f["latency"]
        lines += [f"Page latency under {args.clients} concurrent clients for {lat['seconds']:.0f} s (`coversearch serve`, 8 threads, "
                  "exact search over the covers5 vectors; clients are threads of the benchmark on the same cores; "
                  f"errors: {len(lat['errors'])}):", "",
                  "| request | answered | p50 | p95 | p99 |", "|---|---:|---:|---:|---:|"]
        names = {"click": "click-through: GET /api/similar (vgg16, k=10)", "click+thumbs": "click-through with its 11 thumbnails",
                 "colours": "colour search: GET /api/colours (k=10)", "colours+thumbs": "colour search with its 10 thumbnails"}
        for key, label in names.items():
            r = lat["rows"].get(key)
            if r:
                lines.append(f"| {label} | {r['n']} | {r['p50']:.3f} s | {r['p95']:.3f} s | {r['p99']:.3f} s |")
    if "palette" in f:
        p = f["palette"]
        lines += ["", f"Search by colour with a stored cover's own palette (its 3 fullest hsv bins, each as its pixels' median "
                      f"colour, with their shares), exact search over the covers5 hsv vectors: {p['first']} of {p['covers']} random "
                      f"covers come first, {p['top10']} within the top 10 ({p['seconds_per_query'] * 1000:.0f} ms per cover, "
                      "decode included)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
