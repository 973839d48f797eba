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

from coversearch.layout.map import METHOD_LABELS
from coversearch.plots import PALETTE

MAX_THUMBS = 300


TYPICAL = 6  # covers shown for a cluster on hover



def map_data(layout, genres_of: dict[int, str], thumb: str, neighbours: dict[int, list[int]] | None = None,
             duplicate_groups: list | None = None) -> dict[str, Any]:
    """The JSON the script reads: ids, quantised x/y, genre index per album, the thumbnail URL
    pattern; each album's cluster and density percentile, each cluster's centre, size, genre mix
    and most typical covers; optionally each album's duplicate group and its neighbours."""
    genres = sorted(set(genres_of.values()))
    index = {g: i for i, g in enumerate(genres)}
    q = np.clip(np.round(layout.xy * 65535), 0, 65535).astype(np.int64)
    ids = layout.album_ids.tolist()
    g = [index.get(genres_of.get(int(a), ""), -1) for a in ids]
    data: dict[str, Any] = {
        "feature": layout.feature, "method": layout.method, "genres": genres,
        "ids": ids, "x": q[:, 0].tolist(), "y": q[:, 1].tolist(), "g": g,
        "thumb": thumb, "palette": PALETTE, "maxThumbs": MAX_THUMBS,
        "methodLabel": METHOD_LABELS.get(layout.method, layout.method), "placedSinceLayout": int(layout.placed_since_fit),
    }
    if layout.cluster is not None and len(ids):
        data["c"] = layout.cluster.astype(int).tolist()
        data["clusters"] = clusters_summary(layout, g, genres, q)
    if layout.density is not None and len(ids):
        # Percentile ranks (0-99): the colour scale reads the same whatever the feature's distances.
        order = np.argsort(layout.density, kind="stable")
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        data["d"] = (rank * 100 // max(len(ids), 1)).tolist()
    if duplicate_groups is not None:
        position = {a: i for i, a in enumerate(ids)}
        dup = [-1] * len(ids)
        k = 0
        for group in duplicate_groups:
            members = [position[int(a)] for a in group if int(a) in position]
            if len(members) > 1:
                for i in members:
                    dup[i] = k
                k += 1
        data["dup"], data["dupGroups"] = dup, k
    if neighbours is not None:
        data["neighbours"] = {str(k): v for k, v in neighbours.items()}
    return data


def clusters_summary(layout, g: list[int], genres: list[str], q: np.ndarray) -> list[dict[str, Any]]:
    """Per cluster: its centre (quantised), size, genre mix ("Jazz 61%, Rock 22%") and most typical covers."""
    out = []
    cluster = layout.cluster
    g = np.asarray(g)
    for c in range(int(cluster.max()) + 1):
        rows = np.flatnonzero(cluster == c)
        if len(rows) == 0:
            out.append({"n": 0, "x": 0, "y": 0, "typical": [], "label": ""})
            continue
        best = rows[np.argsort(-layout.typicality[rows], kind="stable")[:TYPICAL]]
        labelled = g[rows][g[rows] >= 0]
        mix = []
        if len(labelled):
            counts = np.bincount(labelled, minlength=len(genres))
            for k in np.argsort(-counts, kind="stable")[:2]:
                if counts[k]:
                    mix.append(f"{genres[k]} {counts[k] / len(rows):.0%}")
        out.append({"n": int(len(rows)), "x": int(q[rows, 0].mean()), "y": int(q[rows, 1].mean()),
                    "typical": [int(layout.album_ids[i]) for i in best], "label": ", ".join(mix)})
    return out


MAP_JS = r"""
function coversearchMountMap(canvas, data, onPick, onCluster) {
  const ctx = canvas.getContext("2d");
  const n = data.ids.length, X = new Float32Array(n), Y = new Float32Array(n);
  for (let i = 0; i < n; i++) { X[i] = data.x[i] / 65535; Y[i] = data.y[i] / 65535; }
  const images = new Map();  // album id -> Image, requested once
  const state = {scale: 1, ox: 0, oy: 0, filter: -1, requested: 0, loaded: 0, visible: 0, mode: "points", drawn: [],
                 colour: "genre", hover: -1};
  const thumbUrl = id => data.thumb.replace("{id}", id);
  const pal = k => data.palette[k % data.palette.length];
  function densityColour(p) {  // light yellow (sparse) to dark purple (dense), by percentile
    const t = p / 99, r = Math.round(250 - 190 * t), g = Math.round(220 - 200 * t), b = Math.round(120 + 20 * t);
    return `rgb(${r},${g},${b})`;
  }
  function colourOf(i) {
    if (state.colour === "cluster" && data.c) return pal(data.c[i]);
    if (state.colour === "density" && data.d) return densityColour(data.d[i]);
    if (state.colour === "duplicates" && data.dup) return data.dup[i] >= 0 ? pal(data.dup[i]) : "#d8d8d8";
    return data.g[i] >= 0 ? pal(data.g[i]) : "#999";
  }
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
      // One path per colour, filled once: 100k fillRect calls with a colour change each are ten times slower.
      const d = scale > 3000 ? 4 : 3, paths = new Map();
      for (const i of vis) { const c = colourOf(i); let p = paths.get(c); if (!p) { p = new Path2D(); paths.set(c, p); }
        p.rect(ox + X[i] * scale - d / 2, oy + Y[i] * scale - d / 2, d, d); }
      for (const [c, p] of paths) { ctx.fillStyle = c; ctx.fill(p); }
      if (state.hover >= 0 && data.c) {  // the hovered cluster's albums, ringed
        const p = new Path2D();
        for (const i of vis) if (data.c[i] === state.hover) p.rect(ox + X[i] * scale - d, oy + Y[i] * scale - d, 2 * d, 2 * d);
        ctx.strokeStyle = "#222"; ctx.lineWidth = 1; ctx.stroke(p);
      }
      if (data.clusters) {  // cluster numbers at their centres: what the hover panel names
        ctx.font = "bold 12px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
        data.clusters.forEach((c, k) => { if (!c.n) return; const sx = ox + c.x / 65535 * scale, sy = oy + c.y / 65535 * scale;
          if (sx < 0 || sx > W || sy < 0 || sy > H) return;
          ctx.lineWidth = 3; ctx.strokeStyle = "rgba(255,255,255,.85)"; ctx.strokeText(String(k + 1), sx, sy);
          ctx.fillStyle = k === state.hover ? "#000" : "#444"; ctx.fillText(String(k + 1), sx, sy); });
      }
    } else {
      const t = Math.max(28, Math.min(96, Math.sqrt(W * H / Math.max(vis.length, 1)) * 0.6));
      for (const i of vis) {
        const id = data.ids[i], sx = ox + X[i] * scale - t / 2, sy = oy + Y[i] * scale - t / 2;
        let img = images.get(id);
        if (!img) { img = new Image(); images.set(id, img); state.requested++;
          img.onload = () => { state.loaded++; redraw(); }; img.onerror = () => redraw(); img.src = thumbUrl(id); }
        if (img.complete && img.naturalWidth > 0) { ctx.drawImage(img, sx, sy, t, t); }
        else { ctx.fillStyle = "#ddd"; ctx.fillRect(sx, sy, t, t); }
        ctx.strokeStyle = colourOf(i); ctx.lineWidth = data.c && data.c[i] === state.hover ? 4 : 2; ctx.strokeRect(sx, sy, t, t);
        state.drawn.push([i, sx, sy, t]);
      }
    }
    canvas.dataset.mode = state.mode; canvas.dataset.visible = state.visible;
    canvas.dataset.requested = state.requested; canvas.dataset.loaded = state.loaded;
    canvas.dataset.colour = state.colour; canvas.dataset.hover = state.hover;
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
    const i = pickAt(px, py); if (i !== null && onPick) onPick(data.ids[i]);
  });
  let hoverPending = null;  // hover is looked up once per frame, however fast the mouse moves
  canvas.addEventListener("mousemove", e => {
    if (drag || !data.c) return;
    const r = canvas.getBoundingClientRect(); const first = hoverPending === null;
    hoverPending = [e.clientX - r.left, e.clientY - r.top];
    if (first) requestAnimationFrame(() => { const [px, py] = hoverPending; hoverPending = null;
      const i = pickAt(px, py, 144); if (i !== null) setHover(data.c[i]); });
  });
  function setHover(c) { if (c === state.hover) return; state.hover = c; redraw(); if (onCluster) onCluster(c); }
  function pickAt(px, py, within) {  // the index of the album under (px, py), or null
    if (state.mode === "thumbs") {
      for (let k = state.drawn.length - 1; k >= 0; k--) { const [i, sx, sy, t] = state.drawn[k];
        if (px >= sx && px <= sx + t && py >= sy && py <= sy + t) return i; }
      return null;
    }
    let best = null, bestD = within || 64;  // within 8 px unless told
    for (let i = 0; i < n; i++) { if (state.filter >= 0 && data.g[i] !== state.filter) continue;
      const dx = state.ox + X[i] * state.scale - px, dy = state.oy + Y[i] * state.scale - py, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = i; } }
    return best;
  }
  window.addEventListener("resize", () => { rect = size(); redraw(); });
  const api = {
    state, draw, home: () => { home(); redraw(); },
    setFilter: g => { state.filter = g; redraw(); },
    setColour: c => { state.colour = c; redraw(); },
    setHover,
    // Centre album `id` and zoom until about `count` albums are in view (tests and screenshots).
    zoomTo: (id, factor) => { const i = data.ids.indexOf(id); if (i < 0) return false;
      state.scale = Math.min(rect.width, rect.height) * factor; state.ox = rect.width / 2 - X[i] * state.scale;
      state.oy = rect.height / 2 - Y[i] * state.scale; draw(); return true; },
    screenOf: id => { const i = data.ids.indexOf(id); return [state.ox + X[i] * state.scale, state.oy + Y[i] * state.scale]; },
    clusterScreen: c => { const k = data.clusters[c]; return [state.ox + k.x / 65535 * state.scale, state.oy + k.y / 65535 * state.scale]; },
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
  const colour = document.createElement("select"); colour.className = "map-colour";
  colour.append(new Option("genre", "genre"));
  if (data.c) colour.append(new Option("cluster", "cluster"));
  if (data.d) colour.append(new Option("neighbour density", "density"));
  if (data.dup) colour.append(new Option(`duplicate group (${data.dupGroups})`, "duplicates"));
  const swatches = document.createElement("span");
  function legend() {
    swatches.innerHTML = "";
    if (colour.value === "genre") data.genres.forEach((g, i) => { const s = document.createElement("span"); s.className = "legend";
      s.innerHTML = `<span class="swatch" style="background:${data.palette[i % data.palette.length]}"></span>`;
      s.append(g + " "); swatches.append(s); });
    else if (colour.value === "density") swatches.innerHTML = ' <span class="swatch" style="background:rgb(250,220,120)"></span>sparse ' +
      '<span class="swatch" style="background:rgb(60,20,140)"></span>dense (its 10 nearest covers are close)';
    else if (colour.value === "duplicates") swatches.append(" grey: no near-duplicate; one colour per group");
    else swatches.append(" numbered on the map; hover a region for its most typical covers");
  }
  colour.addEventListener("change", () => { api.setColour(colour.value); legend(); });
  box.append("genre ", sel, " colour by ", colour, " ", swatches);
  legend();
}
function coversearchClusterPanel(box, data, thumbOf, onPick) {
  // What a hovered cluster is: its number, size, genre mix and most typical covers.
  return c => {
    box.innerHTML = ""; if (c < 0 || !data.clusters) return;
    const k = data.clusters[c]; box.dataset.cluster = c;
    const h = document.createElement("div"); h.className = "map-cluster-title";
    h.textContent = `cluster ${c + 1}: ${k.n} covers` + (k.label ? ` (${k.label})` : "") + "; most typical:";
    box.append(h);
    k.typical.forEach(a => { const img = document.createElement("img"); img.src = thumbOf(a); img.alt = "album " + a;
      img.className = "typical"; img.dataset.albumId = a; img.title = "album #" + a;
      img.addEventListener("click", () => onPick(a)); box.append(img); });
  };
}
"""

STYLE = """
.map-canvas{width:100%;height:620px;border:1px solid #bbb;border-radius:4px;cursor:grab;display:block;touch-action:none}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #888;vertical-align:middle;margin:0 .2em 0 .6em}
.map-help{color:#555;font-size:.85em}
.map-cluster{min-height:86px;margin:.4em 0}.map-cluster img.typical{width:72px;height:72px;object-fit:contain;background:#eee;margin-right:.3em;cursor:pointer}
.map-cluster-title{font-size:.85em;color:#333;margin-bottom:.2em}
"""

STANDALONE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>coversearch map: __TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;margin:1em;color:#222}__STYLE__
#picked{display:flex;gap:.5em;flex-wrap:wrap;margin-top:.6em}#picked figure{margin:0;width:104px;font-size:.7em}
#picked img{width:100px;height:100px;object-fit:contain;background:#eee}#picked figure.q img{outline:3px solid #36c}</style>
</head><body>
<h1>coversearch map: __TITLE__</h1>
<p class="map-help">__COUNT__ albums laid out by __METHOD__ of their __FEATURE__ vectors__WHAT__. Scroll to zoom, drag to pan; dots
become thumbnails once at most __MAX__ covers are in view; hover a region for its cluster's most typical covers; click a
cover for its nearest covers.</p>
<div id="legend"></div>
<div id="map-cluster" class="map-cluster"></div>
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
const map = coversearchMountMap(document.getElementById("map"), data, show,
  coversearchClusterPanel(document.getElementById("map-cluster"), data, thumbOf, a => { map.zoomTo(a, 40); show(a); }));
coversearchLegend(document.getElementById("legend"), data, map);
window.coversearchMap = map;
</script></body></html>
"""


def standalone_html(data: dict[str, Any], title: str) -> str:
    """A map page of its own (the thumbnails it names must sit where ``data["thumb"]`` points)."""
    import html

    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (STANDALONE.replace("__STYLE__", STYLE).replace("__JS__", MAP_JS).replace("__TITLE__", html.escape(title))
            .replace("__COUNT__", f"{len(data['ids']):,}").replace("__METHOD__", data["methodLabel"])
            .replace("__WHAT__", " (nearby covers look alike to the feature)" if data["method"] == "tsne" else "")
            .replace("__FEATURE__", html.escape(data["feature"])).replace("__MAX__", str(data["maxThumbs"]))
            .replace("__DATA__", payload))


# The page's map section (part of the Jinja template in ``page.py``): loaded on request, since a
# big catalogue's coordinates are megabytes.
PAGE_SECTION = """
<style>""" + STYLE + """</style>
<section id="catalogue-map">
<h2>Map of the catalogue</h2>
<p class="map-help">Every stored cover, laid out in 2-D by its vectors (t-SNE: covers the feature finds alike lie together).
Scroll to zoom, drag to pan; dots become thumbnails once at most a few hundred covers are in view; hover a region for its
cluster's most typical covers; click a cover for the covers most like it.</p>
<label>feature <select id="map-feature">{% for name, f in info.features.items() %}<option value="{{ name }}" {% if name == info.default_feature %}selected{% endif %}>{{ name }}</option>{% endfor %}</select></label>
<button id="map-show" type="button">show the map</button> <span id="map-status" class="map-help"></span>
<div id="map-legend"></div>
<div id="map-cluster" class="map-cluster"></div>
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
  const pick = id => window.coversearchMoreLike && window.coversearchMoreLike(id);
  const thumbOf = id => data.thumb.replace("{id}", id);
  const map = coversearchMountMap(fresh, data, pick, coversearchClusterPanel(document.getElementById("map-cluster"), data, thumbOf, pick));
  coversearchLegend(document.getElementById("map-legend"), data, map);
  window.coversearchMap = map;
  status.textContent = `${data.ids.length} covers, ${data.methodLabel} of ${data.feature} (${data.cache} layout)` +
    (data.notes && data.notes.length ? "; " + data.notes.join("; ") : "");
});
</script>
"""
