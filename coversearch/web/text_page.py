"""The page's search box for the words printed on covers (beside the upload), over ``/api/text``."""

TEXT_SECTION = r"""
<section id="text-search">
{% if info.text_search %}
<form id="text-form" class="opts" style="display:flex;gap:.6em;align-items:center;margin:.3em 0 .8em">
  <label>or find covers that say <input id="text-q" name="q" type="search" maxlength="200" placeholder="e.g. demon days" style="width:16em"></label>
  <button id="text-go" type="submit">find text</button>
  <span id="text-status" class="snapshot"></span>
</form>
<div id="text-results" style="display:flex;gap:.6em;flex-wrap:wrap"></div>
<script>
(() => {
  const $ = id => document.getElementById(id);
  let ticket = 0;
  $("text-form").addEventListener("submit", async e => {
    e.preventDefault();
    const q = $("text-q").value.trim();
    const out = $("text-results"); out.innerHTML = "";
    $("error").textContent = "";
    if (!q) { $("error").textContent = "error: type the words to look for"; return; }
    const params = new URLSearchParams({q, k: $("k").value || "10"});
    if ($("genre").value) params.set("genre", $("genre").value);
    $("text-status").textContent = "searching...";
    const mine = ++ticket;
    let a, response;
    try { response = await fetch("/api/text?" + params); a = await response.json(); }
    catch (err) { if (mine === ticket) { $("error").textContent = "error: the search failed: " + err; $("text-status").textContent = ""; } return; }
    if (mine !== ticket) return;
    if (!response.ok) { $("error").textContent = "error: " + (a.error || ("HTTP " + response.status)); $("text-status").textContent = ""; return; }
    $("text-status").textContent = a.hits.length ? `${a.hits.length} covers say "${q}"` : `no cover says "${q}"`;
    for (const h of a.hits) {
      const fig = document.createElement("figure"); fig.className = "text-hit"; fig.dataset.albumId = h.album_id;
      fig.style = "margin:0;width:164px;font-size:.75em";
      const img = document.createElement("img"); img.src = h.thumb; img.alt = "album " + h.album_id;
      img.style = "width:160px;height:160px;object-fit:contain;background:#eee;display:block";
      const cap = document.createElement("figcaption");
      const words = document.createElement("b"); words.className = "matched"; words.textContent = h.matched.join(" | ");
      cap.append(words, ` ${(100 * h.score).toFixed(0)}% #${h.album_id} ${h.genres.join(", ")}`);
      fig.append(img, cap); out.append(fig);
    }
  });
})();
</script>
{% else %}
<p class="snapshot" id="text-search-off">Search by printed text: ingest with <code>--features text</code> first.</p>
{% endif %}
</section>
"""
