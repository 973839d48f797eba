"""The one HTML page (a Jinja template): pick or drop a cover, see genres and similar covers."""

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>coversearch</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
#drop{border:2px dashed #888;border-radius:8px;padding:1.5em;text-align:center;background:#fafafa;cursor:pointer}
#drop.over{background:#e8f0ff;border-color:#36c}
form .opts{display:flex;gap:1em;flex-wrap:wrap;margin:.8em 0;align-items:center}
#error{color:#b00;font-weight:bold;min-height:1.2em;white-space:pre-wrap}
#status{color:#555;min-height:1.2em}
.row{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
#preview{max-width:220px;max-height:220px;display:none;border:1px solid #ccc}
.genre{display:flex;align-items:center;gap:.5em;margin:.15em 0;font-size:.95em}
.genre .name{width:7em}.genre .bar{height:.9em;background:#4a7ab5;border-radius:2px}
#similar{display:flex;gap:.6em;flex-wrap:wrap}
#similar figure{margin:0;width:164px;font-size:.75em}
#similar img{width:160px;height:160px;object-fit:contain;background:#eee;display:block}
.notes{color:#a40;font-size:.85em}.snapshot{color:#777;font-size:.8em}
#verdict{font-weight:bold;margin:.4em 0}#verdict.new{color:#285}#verdict.dup{color:#a40}
#answer{font-size:1.2em;font-weight:bold;margin:.3em 0}#answer.unknown{color:#777}
#answer small{font-weight:normal;color:#555;font-size:.75em}
</style></head>
<body>
<h1>coversearch</h1>
<p>{{ info.albums }} covers in {{ info.store }}. Drop a cover image here or pick one: its predicted genres and
the most similar stored covers appear below (images up to {{ (info.max_upload_bytes / 1048576) | round | int }} MB).</p>
<p class="snapshot">Snapshot of the store loaded at <span id="loaded-at">{{ info.loaded_at }}</span>.</p>
{% if info.broken_models %}<ul class="notes" id="broken">{% for m, why in info.broken_models.items() %}<li>model {{ m }} is broken: {{ why }}</li>{% endfor %}</ul>{% endif %}
{% if info.notes %}<ul class="notes">{% for n in info.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<form id="form">
  <div id="drop">Drop a cover image here, or <label><u>choose a file</u>
    <input id="file" name="image" type="file" accept="image/*" style="display:none"></label></div>
  <div class="opts">
    <label>feature <select id="feature" name="feature">
      {% for name, f in info.features.items() %}<option value="{{ name }}" {% if name == info.default_feature %}selected{% endif %}>{{ name }} ({{ f.metric }}, {{ f.index or 'exact' }})</option>{% endfor %}
    </select></label>
    <label>genre <select id="genre" name="genre"><option value="">any</option>
      {% for g in info.genres %}<option value="{{ g }}">{{ g }}</option>{% endfor %}
    </select></label>
    <label>k <input id="k" name="k" type="number" min="1" max="{{ info.max_k }}" value="10" style="width:4em"></label>
    <label>model <select id="model" name="model">
      {% for m in info.models %}<option value="{{ m }}" {% if m == info.default_model %}selected{% endif %}>{{ m }}{% if m == info.default_model %} (default){% endif %}</option>{% endfor %}
      {% for m, why in info.broken_models.items() %}<option value="{{ m }}" class="broken" disabled title="{{ why }}">{{ m }} (broken)</option>{% endfor %}
    </select></label>
    <label title="answer 'unknown' when the top genre's calibrated probability is below this (empty: the model's default)">min confidence
      <input id="min_confidence" name="min_confidence" type="number" min="0" max="1" step="0.05" placeholder="model default" style="width:7em"></label>
    <label title="one cover per near-duplicate group, so k results are k different covers"><input id="collapse_duplicates" name="collapse_duplicates" type="checkbox"> one per duplicate group</label>
    <button id="submit" type="submit">search</button>
  </div>
</form>
<div id="error" role="alert"></div><div id="status"></div><div id="verdict"></div>
<div class="row" id="results" style="display:none">
  <div><h3>Your cover</h3><img id="preview" alt="your cover"></div>
  <div><h3>Predicted genres <small id="model-name"></small></h3><div id="answer"></div><div id="genres"></div></div>
</div>
<h3 id="similar-title" style="display:none">Similar covers</h3>
<div id="similar"></div>
<script>
const MAX_BYTES = {{ info.max_upload_bytes | tojson }};
const $ = id => document.getElementById(id);
let chosen = null;
let latest = 0;  // only the newest request's answer is shown
function showError(msg) { $("error").textContent = msg ? "error: " + msg : ""; }
function pick(file) { chosen = file; run(); }
$("file").addEventListener("change", e => { if (e.target.files.length) pick(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) pick(e.dataTransfer.files[0]); });
$("form").addEventListener("submit", e => { e.preventDefault(); run(); });
for (const id of ["feature", "genre", "model", "min_confidence", "collapse_duplicates"]) $(id).addEventListener("change", () => { if (chosen) run(); });

async function run() {
  showError("");
  if (!chosen) { showError("choose or drop an image file first"); return; }
  if (chosen.size > MAX_BYTES) {
    showError(`${chosen.name} is ${(chosen.size / 1048576).toFixed(1)} MB: the upload is larger than the ${Math.round(MAX_BYTES / 1048576)} MB limit for an image`);
    clearResults(); return;
  }
  const form = new FormData();
  form.append("image", chosen, chosen.name);
  for (const id of ["feature", "genre", "k", "model", "min_confidence"]) form.append(id, $(id).value);
  form.append("collapse_duplicates", $("collapse_duplicates").checked ? "1" : "");
  $("status").textContent = "searching...";
  const ticket = ++latest;
  let answer;
  try {
    const response = await fetch("/api/query", {method: "POST", body: form});
    answer = await response.json();
    if (ticket !== latest) return;
    if (!response.ok) { showError(answer.error || ("HTTP " + response.status)); clearResults(); $("status").textContent = ""; return; }
  } catch (err) { if (ticket === latest) { showError("the upload failed: " + err); clearResults(); $("status").textContent = ""; } return; }
  render(answer);
}
function clearResults() { $("verdict").textContent = ""; $("results").style.display = "none"; $("similar").innerHTML = ""; $("similar-title").style.display = "none"; }
function render(a) {
  $("status").textContent = `${a.similar.results.length} similar covers by ${a.similar.feature} (${a.similar.kind}) in ${a.seconds.total.toFixed(2)} s`;
  $("results").style.display = "flex";
  const verdict = $("verdict");
  verdict.textContent = a.duplicates ? a.duplicates.summary : "";
  verdict.className = a.duplicates ? (a.duplicates.verdict === "new" ? "new" : "dup") : "";
  verdict.dataset.verdict = a.duplicates ? a.duplicates.verdict : "";
  if (a.duplicates && a.duplicates.matches.length) {  // why the stored match is one group: the evidence picture
    const link = document.createElement("a"); link.id = "evidence"; link.target = "_blank";
    link.href = `/duplicates/${a.duplicates.matches[0].album_id}/evidence.png`; link.textContent = " (evidence)";
    verdict.append(link);
  }
  const preview = $("preview"); preview.src = URL.createObjectURL(chosen); preview.style.display = "block";
  $("model-name").textContent = a.model ? `(model ${a.model})` : "(no model)";
  const answer = $("answer"); answer.textContent = ""; answer.className = "";
  if (a.answer) {
    const pct = p => (100 * p).toFixed(1) + "%";
    answer.className = a.answer === "unknown" ? "unknown" : "known";
    answer.append(a.answer === "unknown" ? "unknown" : `${a.answer} (${pct(a.confidence)})`);
    const note = document.createElement("small");
    note.textContent = a.answer === "unknown"
      ? ` none of these: the top genre's probability ${pct(a.confidence)} is below ${pct(a.min_confidence)}; ranked genres:`
      : ` (answers "unknown" below ${pct(a.min_confidence)}; ${a.calibration === "none" ? "uncalibrated" : "calibrated"} probabilities)`;
    answer.append(note);
  }
  const genres = $("genres"); genres.innerHTML = "";
  for (const g of a.genres) {
    const row = document.createElement("div"); row.className = "genre"; row.dataset.genre = g.genre;
    const name = document.createElement("span"); name.className = "name"; name.textContent = g.genre;
    const bar = document.createElement("span"); bar.className = "bar"; bar.style.width = (g.probability * 200) + "px";
    const p = document.createElement("span"); p.className = "p"; p.textContent = (100 * g.probability).toFixed(1) + "%";
    row.append(name, bar, p); genres.append(row);
  }
  const grid = $("similar"); grid.innerHTML = ""; $("similar-title").style.display = "block";
  for (const h of a.similar.results) {
    const fig = document.createElement("figure"); fig.className = "hit"; fig.dataset.albumId = h.album_id;
    const img = document.createElement("img"); img.src = h.thumb; img.alt = "album " + h.album_id; img.className = "thumb";
    const cap = document.createElement("figcaption");
    cap.textContent = `${h.rank}. #${h.album_id} d=${h.distance.toFixed(4)} ${h.genres.join(", ")}`;
    fig.append(img, cap); grid.append(fig);
  }
}
</script>
</body></html>
"""

# The "look around" section (more like this, colours, genre browse) lives in its own module.
from coversearch.web.explore_page import EXPLORE  # noqa: E402
from coversearch.web.map_view import PAGE_SECTION as MAP_SECTION  # noqa: E402

PAGE = PAGE.replace("</body>", EXPLORE + MAP_SECTION + "</body>", 1)
from coversearch.web.text_page import TEXT_SECTION  # noqa: E402

# The text search box sits right under the upload form.
PAGE = PAGE.replace('<div id="error" role="alert">', TEXT_SECTION + '<div id="error" role="alert">', 1)
