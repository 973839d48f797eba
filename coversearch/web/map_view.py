"""The catalogue map in the browser: one canvas, panned and zoomed, with a level-of-detail rule.

Zoomed out, every album is a dot coloured by its genre; once at most ``MAX_THUMBS`` albums are in
view, they are drawn as thumbnails, and only those thumbnails are requested (each once, cached by
the browser), so a 100k-album map never loads more than a screenful of images.  A click on a cover
calls ``onPick(albumId)``: the page opens its neighbours ("more like this"); a map file written by
``coversearch map --out`` shows the neighbours it was written with.

The same script serves the page (thumbnails from ``/thumb/<id>.jpg``) and the stand-alone file
(thumbnails in a folder beside it).  Coordinates travel as integers 0-65535 to keep the JSON small.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from coversearch.plots import PALETTE

MAX_THUMBS = 300


def map_data(layout, genres_of: dict[int, str], thumb: str, neighbours: dict[int, list[int]] | None = None) -> dict[str, Any]:
    """The JSON the script reads: ids, quantised x/y, genre index per album, the thumbnail URL pattern."""
    genres = sorted(set(genres_of.values()))
    index = {g: i for i, g in enumerate(genres)}
    q = np.clip(np.round(layout.xy * 65535), 0, 65535).astype(np.int64)
    data: dict[str, Any] = {
        "feature": layout.feature, "method": layout.method, "genres": genres,
        "ids": layout.album_ids.tolist(), "x": q[:, 0].tolist(), "y": q[:, 1].tolist(),
        "g": [index.get(genres_of.get(int(a), ""), -1) for a in layout.album_ids.tolist()],
        "thumb": thumb, "palette": PALETTE, "maxThumbs": MAX_THUMBS,
    }
    if neighbours is not None:
        data["neighbours"] = {str(k): v for k, v in neighbours.items()}
    return data


MAP_JS = r"""
function coversearchMountMap(canvas, data, onPick) {
  const ctx = canvas.getContext("2d");
  const n = data.ids.length, X = new Float32Array(n), Y = new Float32Array(n);
  for (let i = 0; i < n; i++) { X[i] = data.x[i] / 65535; Y[i] = data.y[i] / 65535; }
  const images = new Map();  // album id -> Image, requested once
  const state = {scale: 1, ox: 0, oy: 0, filter: -1, requested: 0, loaded: 0, visible: 0, mode: "points", drawn: []};
  const thumbUrl = id => data.thumb.replace("{id}", id);
  function size() {
    const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(r.width * dpr); canvas.height = Math.round(r.height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0); return r;
  }
  let rect = size();
  function home() { const s = Math.min(rect.width, rect.height) * 0.95; state.scale = s;
    state.ox = (rect.width - s) / 2; state.oy = (rect.height - s) / 2; }
  home();
  let pending = false;
  function redraw() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } }
  function draw() {
    const {scale, ox, oy} = state, W = rect.width, H = rect.height;
    ctx.clearRect(0, 0, W, H); ctx.fillStyle = "#fbfbfb"; ctx.fillRect(0, 0, W, H);
    const x0 = -ox / scale, x1 = (W - ox) / scale, y0 = -oy / scale, y1 = (H - oy) / scale;
    const vis = [];
    for (let i = 0; i < n; i++) {
      if (state.filter >= 0 && data.g[i] !== state.filter) continue;
      if (X[i] >= x0 && X[i] <= x1 && Y[i] >= y0 && Y[i] <= y1) vis.push(i);
    }
    state.visible = vis.length;
    state.mode = vis.length <= data.maxThumbs ? "thumbs" : "points";
    state.drawn = [];
    if (state.mode === "points") {
      // One path per genre, filled once: 100k fillRect calls with a colour change each are ten times slower.
      const d = scale > 3000 ? 4 : 3, paths = new Map();
      for (const i of vis) { let p = paths.get(data.g[i]); if (!p) { p = new Path2D(); paths.set(data.g[i], p); }
        p.rect(ox + X[i] * scale - d / 2, oy + Y[i] * scale - d / 2, d, d); }
      for (const [g, p] of paths) { ctx.fillStyle = g >= 0 ? data.palette[g % data.palette.length] : "#999"; ctx.fill(p); }
    } else {
      const t = Math.max(28, Math.min(96, Math.sqrt(W * H / Math.max(vis.length, 1)) * 0.6));
      for (const i of vis) {
        const id = data.ids[i], sx = ox + X[i] * scale - t / 2, sy = oy + Y[i] * scale - t / 2;
        let img = images.get(id);
        if (!img) { img = new Image(); images.set(id, img); state.requested++;
          img.onload = () => { state.loaded++; redraw(); }; img.onerror = () => redraw(); img.src = thumbUrl(id); }
        const colour = data.g[i] >= 0 ? data.palette[data.g[i] % data.palette.length] : "#999";
        if (img.complete && img.naturalWidth > 0) { ctx.drawImage(img, sx, sy, t, t); }
        else { ctx.fillStyle = "#ddd"; ctx.fillRect(sx, sy, t, t); }
        ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.strokeRect(sx, sy, t, t);
        state.drawn.push([i, sx, sy, t]);
      }
    }
    canvas.dataset.mode = state.mode; canvas.dataset.visible = state.visible;
    canvas.dataset.requested = state.requested; canvas.dataset.loaded = state.loaded;
  }
  function zoomAt(px, py, factor) {
    const s = Math.max(rect.width * 0.2, Math.min(state.scale * factor, rect.width * 2000));
    const f = s / state.scale; state.ox = px - (px - state.ox) * f; state.oy = py - (py - state.oy) * f; state.scale = s; redraw();
  }
  canvas.addEventListener("wheel", e => { e.preventDefault(); const r = canvas.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * 0.0015)); }, {passive: false});
  let drag = null;
  canvas.addEventListener("mousedown", e => { drag = {x: e.clientX, y: e.clientY, ox: state.ox, oy: state.oy, moved: false}; });
  window.addEventListener("mousemove", e => { if (!drag) return; const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true; state.ox = drag.ox + dx; state.oy = drag.oy + dy; redraw(); });
  window.addEventListener("mouseup", e => {
    if (!drag) return; const moved = drag.moved; drag = null; if (moved) return;
    const r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
    const id = pickAt(px, py); if (id !== null && onPick) onPick(id);
  });
  function pickAt(px, py) {
    if (state.mode === "thumbs") {
      for (let k = state.drawn.length - 1; k >= 0; k--) { const [i, sx, sy, t] = state.drawn[k];
        if (px >= sx && px <= sx + t && py >= sy && py <= sy + t) return data.ids[i]; }
      return null;
    }
    let best = null, bestD = 64;  // within 8 px
    for (let i = 0; i < n; i++) { if (state.filter >= 0 && data.g[i] !== state.filter) continue;
      const dx = state.ox + X[i] * state.scale - px, dy = state.oy + Y[i] * state.scale - py, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = data.ids[i]; } }
    return best;
  }
  window.addEventListener("resize", () => { rect = size(); redraw(); });
  const api = {
    state, draw, home: () => { home(); redraw(); },
    setFilter: g => { state.filter = g; redraw(); },
    // Centre album `id` and zoom until about `count` albums are in view (tests and screenshots).
    zoomTo: (id, factor) => { const i = data.ids.indexOf(id); if (i < 0) return false;
      state.scale = Math.min(rect.width, rect.height) * factor; state.ox = rect.width / 2 - X[i] * state.scale;
      state.oy = rect.height / 2 - Y[i] * state.scale; draw(); return true; },
    screenOf: id => { const i = data.ids.indexOf(id); return [state.ox + X[i] * state.scale, state.oy + Y[i] * state.scale]; },
  };
  draw();
  return api;
}
function coversearchLegend(box, data, api) {
  box.innerHTML = "";
  const sel = document.createElement("select"); sel.className = "map-filter";
  sel.append(new Option("all genres", "-1"));
  data.genres.forEach((g, i) => sel.append(new Option(g, String(i))));
  sel.addEventListener("change", () => api.setFilter(Number(sel.value)));
  box.append("genre ", sel, " ");
  data.genres.forEach((g, i) => { const s = document.createElement("span"); s.className = "legend";
    s.innerHTML = `<span class="swatch" style="background:${data.palette[i % data.palette.length]}"></span>`;
    s.append(g + " "); box.append(s); });
}
"""

STYLE = """
.map-canvas{width:100%;height:620px;border:1px solid #bbb;border-radius:4px;cursor:grab;display:block;touch-action:none}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #888;vertical-align:middle;margin:0 .2em 0 .6em}
.map-help{color:#555;font-size:.85em}
"""

STANDALONE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>coversearch map: __TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;margin:1em;color:#222}__STYLE__
#picked{display:flex;gap:.5em;flex-wrap:wrap;margin-top:.6em}#picked figure{margin:0;width:104px;font-size:.7em}
#picked img{width:100px;height:100px;object-fit:contain;background:#eee}#picked figure.q img{outline:3px solid #36c}</style>
</head><body>
<h1>coversearch map: __TITLE__</h1>
<p class="map-help">__COUNT__ albums laid out by __METHOD__ of their __FEATURE__ vectors. Scroll to zoom, drag to pan; dots
become thumbnails once at most __MAX__ covers are in view; click a cover for its nearest covers.</p>
<div id="legend"></div>
<canvas id="map" class="map-canvas"></canvas>
<div id="picked"></div>
<script id="map-data" type="application/json">__DATA__</script>
<script>__JS__
const data = JSON.parse(document.getElementById("map-data").textContent);
const thumbOf = id => data.thumb.replace("{id}", id);
function show(id) {
  const box = document.getElementById("picked"); box.innerHTML = "";
  const ids = [id, ...((data.neighbours || {})[String(id)] || [])];
  ids.forEach((a, k) => { const f = document.createElement("figure"); f.className = k ? "hit" : "q"; f.dataset.albumId = a;
    const img = document.createElement("img"); img.src = thumbOf(a); img.alt = "album " + a; img.className = "thumb";
    img.addEventListener("click", () => { map.zoomTo(a, 40); show(a); });
    const c = document.createElement("figcaption"); c.textContent = k ? `${k}. #${a}` : `album #${a}`;
    f.append(img, c); box.append(f); });
}
const map = coversearchMountMap(document.getElementById("map"), data, show);
coversearchLegend(document.getElementById("legend"), data, map);
window.coversearchMap = map;
</script></body></html>
"""


def standalone_html(data: dict[str, Any], title: str) -> str:
    """A map page of its own (the thumbnails it names must sit where ``data["thumb"]`` points)."""
    import html

    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (STANDALONE.replace("__STYLE__", STYLE).replace("__JS__", MAP_JS).replace("__TITLE__", html.escape(title))
            .replace("__COUNT__", f"{len(data['ids']):,}").replace("__METHOD__", data["method"].upper())
            .replace("__FEATURE__", html.escape(data["feature"])).replace("__MAX__", str(data["maxThumbs"]))
            .replace("__DATA__", payload))


# The page's map section (part of the Jinja template in ``page.py``): loaded on request, since a
# big catalogue's coordinates are megabytes.
PAGE_SECTION = """
<style>""" + STYLE + """</style>
<section id="catalogue-map">
<h2>Map of the catalogue</h2>
<p class="map-help">Every stored cover, laid out in 2-D by its vectors (PCA). Scroll to zoom, drag to pan; dots become
thumbnails once at most a few hundred covers are in view; click a cover for the covers most like it.</p>
<label>feature <select id="map-feature">{% for name, f in info.features.items() %}<option value="{{ name }}" {% if name == info.default_feature %}selected{% endif %}>{{ name }}</option>{% endfor %}</select></label>
<button id="map-show" type="button">show the map</button> <span id="map-status" class="map-help"></span>
<div id="map-legend"></div>
<canvas id="map" class="map-canvas" style="display:none"></canvas>
</section>
<script>""" + MAP_JS + """
document.getElementById("map-show").addEventListener("click", async () => {
  const status = document.getElementById("map-status"), canvas = document.getElementById("map");
  status.textContent = "loading the layout...";
  const r = await fetch("/api/map?feature=" + encodeURIComponent(document.getElementById("map-feature").value));
  const data = await r.json();
  if (!r.ok) { status.textContent = "error: " + (data.error || r.status); return; }
  canvas.style.display = "block";
  const fresh = canvas.cloneNode(false); canvas.replaceWith(fresh);  // drop the previous map's listeners
  const map = coversearchMountMap(fresh, data, id => window.coversearchMoreLike && window.coversearchMoreLike(id));
  coversearchLegend(document.getElementById("map-legend"), data, map);
  window.coversearchMap = map;
  status.textContent = `${data.ids.length} covers, ${data.method.toUpperCase()} of ${data.feature} (${data.cache} layout)`;
});
</script>
"""
