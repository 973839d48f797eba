"""The page's "look around" section (part of the Jinja template in ``page.py``): every result
thumbnail is a query ("more like this"), search by colour, and a genre browse view.

Clicks on any thumbnail that carries ``data-album-id`` (the upload's results, these results, the
browse grid, the map) open that album's neighbours here, with the album shown beside them.
"""

EXPLORE = r"""
<style>
#explore{margin-top:2em;border-top:1px solid #ccc;padding-top:.5em}
#explore .tools{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-end}
#explore fieldset{border:1px solid #ccc;border-radius:6px}
.swatch{display:inline-block;width:1.4em;height:1.4em;border:1px solid #888;vertical-align:middle;margin-right:.2em}
#explore-error{color:#b00;font-weight:bold;min-height:1.2em}#explore-status{color:#555;min-height:1.2em}
#explore-query{width:230px}#explore-query img.cover{width:220px;height:220px;object-fit:contain;background:#eee;display:block}
#explore-query .palette div{margin:.2em 0}
.grid{display:flex;gap:.6em;flex-wrap:wrap;flex:1}
.grid figure{margin:0;width:134px;font-size:.72em}
.grid img,#similar img{cursor:pointer}
.grid img{width:130px;height:130px;object-fit:contain;background:#eee;display:block}
#explain-img{max-width:220px;display:block;margin-top:.4em}
</style>
<section id="explore">
<h2>Look around</h2>
<p>Click any cover (here, in the results above, or on the map) to see the covers most like it.</p>
<div class="tools">
  <fieldset id="colour-form"><legend>Search by colour (hsv)</legend>
    {% for i in range(3) %}<div><label><input type="checkbox" id="use-colour-{{ i }}" {% if i < 2 %}checked{% endif %}> colour {{ i + 1 }}</label>
      <input type="color" id="colour-{{ i }}" value="{{ ['#101010', '#c0a000', '#2050c0'][i] }}">
      share <input type="number" id="share-{{ i }}" min="0.01" max="1" step="0.05" placeholder="auto" value="{{ ['0.6', '0.4', ''][i] }}" style="width:5em"></div>{% endfor %}
    <button id="colour-search" type="button">search colours</button>
  </fieldset>
  <fieldset id="browse-form"><legend>Browse a genre</legend>
    <select id="browse-genre">{% for g in info.genres %}<option value="{{ g }}">{{ g }}</option>{% endfor %}</select>
    <button id="browse-go" type="button">browse</button>
    <button id="browse-prev" type="button" disabled>&larr; previous</button>
    <button id="browse-next" type="button" disabled>next &rarr;</button>
  </fieldset>
</div>
<div id="explore-error" role="alert"></div><div id="explore-status"></div>
<div class="row">
  <div id="explore-query"></div>
  <div id="explore-results" class="grid"></div>
</div>
</section>
<script>
(() => {
const $ = id => document.getElementById(id);
let ticket = 0;  // only the newest request's answer is shown
let browseAt = {genre: null, offset: 0, limit: 24, total: 0};
function fail(msg) { $("explore-error").textContent = msg ? "error: " + msg : ""; }
async function getJSON(url) {
  const mine = ++ticket;
  fail(""); $("explore-status").textContent = "loading...";
  let r, a;
  try { r = await fetch(url); a = await r.json(); }
  catch (err) { if (mine === ticket) { fail("the request failed: " + err); $("explore-status").textContent = ""; } return null; }
  if (mine !== ticket) return null;
  if (!r.ok) { fail(a.error || ("HTTP " + r.status)); $("explore-status").textContent = ""; return null; }
  return a;
}
function figure(h, caption) {
  const fig = document.createElement("figure"); fig.className = "hit"; fig.dataset.albumId = h.album_id;
  const img = document.createElement("img"); img.src = h.thumb; img.alt = "album " + h.album_id; img.className = "thumb";
  img.title = "more like this";
  const cap = document.createElement("figcaption"); cap.textContent = caption;
  fig.append(img, cap); return fig;
}
function showHits(hits) {
  const grid = $("explore-results"); grid.innerHTML = "";
  for (const h of hits) grid.append(figure(h, `${h.rank}. #${h.album_id} d=${h.distance.toFixed(4)} ${h.genres.join(", ")}`));
}
function setBrowse(on) { $("browse-prev").disabled = !on || browseAt.offset <= 0;
  $("browse-next").disabled = !on || browseAt.offset + browseAt.limit >= browseAt.total; }
async function moreLike(albumId) {
  const feature = $("feature") ? $("feature").value : "";
  const k = $("k") ? $("k").value : 10;
  const genre = $("genre") ? $("genre").value : "";
  const a = await getJSON(`/api/similar?album=${encodeURIComponent(albumId)}&feature=${encodeURIComponent(feature)}&k=${k}&genre=${encodeURIComponent(genre)}`);
  if (!a) return;
  setBrowse(false);
  const q = $("explore-query"); q.innerHTML = ""; q.dataset.albumId = a.query.album_id;
  const h = document.createElement("h3"); h.textContent = `Album #${a.query.album_id}`;
  const img = document.createElement("img"); img.className = "cover"; img.id = "query-cover"; img.src = a.query.thumb; img.alt = "album " + a.query.album_id;
  const g = document.createElement("div"); g.textContent = a.query.genres.join(", ");
  q.append(h, img, g);
  q.append(explainButton(a.query.album_id));
  showHits(a.similar.results);
  $("explore-status").textContent = `${a.similar.results.length} covers most like album #${a.query.album_id} by ${a.similar.feature} (${a.similar.kind}) in ${a.seconds.total.toFixed(2)} s`;
  $("explore").scrollIntoView({block: "start"});
}
window.coversearchMoreLike = moreLike;
function explainButton(albumId) {
  const box = document.createElement("div"); box.id = "explain";
  const button = document.createElement("button"); button.type = "button"; button.id = "explain-button";
  button.textContent = "why this genre?";
  const note = document.createElement("div"); note.id = "explain-note"; note.className = "snapshot";
  button.addEventListener("click", async () => {
    const model = $("model") ? $("model").value : "";
    note.textContent = "masking 49 patches and re-scoring...";
    button.disabled = true;
    const r = await fetch(`/api/explain?album=${albumId}&model=${encodeURIComponent(model)}`);
    button.disabled = false;
    if (!r.ok) { const a = await r.json(); note.textContent = ""; fail(a.error || ("HTTP " + r.status)); return; }
    const img = document.createElement("img"); img.id = "explain-img"; img.alt = "heat map of album " + albumId;
    img.src = URL.createObjectURL(await r.blob());
    note.textContent = `${decodeURIComponent(r.headers.get("X-Genre"))} (${(100 * r.headers.get("X-Probability")).toFixed(0)}%, model ${decodeURIComponent(r.headers.get("X-Model"))}): ` +
      "brighter regions lowered that genre's score most when hidden. It shows what the features react to, not what makes the genre.";
    const old = $("explain-img"); if (old) old.remove();
    box.append(img);
  });
  box.append(button, note); return box;
}
async function colourSearch() {
  const parts = [];
  for (let i = 0; i < 3; i++) {
    if (!$("use-colour-" + i).checked) continue;
    const share = $("share-" + i).value.trim();
    parts.push($("colour-" + i).value + (share ? ":" + share : ""));
  }
  if (!parts.length) { fail("tick at least one colour"); return; }
  const k = $("k") ? $("k").value : 10;
  const genre = $("genre") ? $("genre").value : "";
  const a = await getJSON(`/api/colours?colours=${encodeURIComponent(parts.join(","))}&k=${k}&genre=${encodeURIComponent(genre)}`);
  if (!a) return;
  setBrowse(false);
  const q = $("explore-query"); q.innerHTML = ""; delete q.dataset.albumId;
  const h = document.createElement("h3"); h.textContent = "Your colours";
  const pal = document.createElement("div"); pal.className = "palette";
  for (const c of a.palette) {
    const row = document.createElement("div"); const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = c.colour;
    row.append(sw, `${c.colour} ${(100 * c.share).toFixed(0)}%`); pal.append(row);
  }
  q.append(h, pal);
  showHits(a.similar.results);
  $("explore-status").textContent = `${a.similar.results.length} covers nearest these colours (${a.similar.feature}, ${a.similar.kind}) in ${a.seconds.total.toFixed(2)} s`;
}
async function browse(offset) {
  const genre = $("browse-genre").value;
  const a = await getJSON(`/api/browse?genre=${encodeURIComponent(genre)}&offset=${offset}&limit=${browseAt.limit}`);
  if (!a) return;
  browseAt = {genre: a.genre, offset: a.offset, limit: a.limit, total: a.total};
  const q = $("explore-query"); q.innerHTML = ""; delete q.dataset.albumId;
  const h = document.createElement("h3"); h.textContent = a.genre; q.append(h);
  const grid = $("explore-results"); grid.innerHTML = "";
  for (const al of a.albums) grid.append(figure(al, `#${al.album_id} ${al.genres.join(", ")}`));
  $("explore-status").textContent = `${a.genre}: covers ${a.total ? a.offset + 1 : 0}-${a.offset + a.albums.length} of ${a.total}`;
  setBrowse(true);
}
$("colour-search").addEventListener("click", colourSearch);
$("browse-go").addEventListener("click", () => browse(0));
$("browse-prev").addEventListener("click", () => browse(Math.max(0, browseAt.offset - browseAt.limit)));
$("browse-next").addEventListener("click", () => browse(browseAt.offset + browseAt.limit));
// Any stored cover on the page is a query: the upload's results, these grids, the map's pop-ups.
document.addEventListener("click", e => {
  const img = e.target.closest("img.thumb");
  const fig = img && img.closest("[data-album-id]");
  if (fig) { e.preventDefault(); moreLike(fig.dataset.albumId); }
});
})();
</script>
"""
