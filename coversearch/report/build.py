"""Build the self-contained HTML report.

Everything the page shows comes from the library: ``Store.stats`` for the store, stored vectors
queried through ``SimilarSearcher`` (exact search, as ``coversearch similar --album``) for the
similar-cover panels, the model folder's ``card.json`` / ``evaluation.json`` / ``confusion.png``
for the classifiers, and the search benchmark's ``results.json`` and PNGs when they exist.  Images
are embedded as base64 data URLs, so the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from coversearch.bench import tables as bench_tables
from coversearch.classify.evaluate import CONFUSION_PNG, EVALUATION, RELIABILITY_PNG
from coversearch.classify.model import list_cards
from coversearch.errors import CoverSearchError
from coversearch.fsutil import check_output, write_atomic
from coversearch.imaging.thumbs import find_thumbnail, placeholder
from coversearch.plots import plot_png
from coversearch.dedupe.rules import default_rules
from coversearch.dedupe.stored import read_result
from coversearch.query.similar import SimilarSearcher
from coversearch.store import Store

DEFAULT_BENCH_DIR = Path("benchmarks/results/search")
SECTIONS = ("store", "covers", "similar", "duplicates", "classifiers", "search-benchmark")
DUPLICATE_GROUPS = 5  # largest near-duplicate groups shown
GROUP_MEMBERS = 8  # covers shown per group


@dataclass
class ReportSummary:
    out: Path
    seconds: float
    images: int
    sections: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "seconds": round(self.seconds, 2), "images": self.images, "sections": self.sections, "notes": self.notes}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.images = 0
        self.missing_covers = 0  # stored covers whose files could not be read for a thumbnail

    def add(self, text: str) -> None:
        self.parts.append(text)

    def cover(self, store: Store, album: dict, alt: str) -> str:
        data = find_thumbnail(store, album)
        if data is None:
            self.missing_covers += 1
            data = placeholder()
        return self.img(data, "image/jpeg", alt, "thumb")

    def img(self, data: bytes, mime: str, alt: str, cls: str = "") -> str:
        self.images += 1
        return f'<img class="{cls}" alt="{_e(alt)}" src="{_data_url(data, mime)}">'


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _label(album: dict[str, Any]) -> str:
    genres = ", ".join(album.get("genres") or []) or "no genre"
    extra = " - ".join(x for x in (album.get("artist"), album.get("title")) if x)
    return f"#{album['id']} {genres}" + (f" ({extra})" if extra else "")


# -- sections -------------------------------------------------------------------------------------
def _store_section(page: _Page, store: Store, stats: dict[str, Any]) -> None:
    page.add('<section id="store"><h2>The store</h2>')
    page.add(f"<p>{_e(stats['store'])}: <b>{stats['albums']:,}</b> albums from {stats['files']:,} files; "
             f"{stats['albums_with_several_genres']:,} albums carry several genres; schema {_e(stats['schema_revision'])}.</p>")
    per_genre = stats["albums_per_genre"]
    page.add('<div class="row"><div>')
    page.add(_table(("genre", "albums"), [(g, f"{n:,}") for g, n in per_genre.items()], "genres"))
    page.add("</div><div>")
    page.add(_table(("feature set", "dim", "vectors", "model"),
                    [(f"{f['name']} v{f['version']}", f["dim"], f"{f['embeddings']:,}", f["model_fingerprint"] or "-")
                     for f in stats["feature_sets"]], "features"))
    errors = stats["errors_by_reason"]
    page.add(f"<h3>Ingest errors: {stats['errors']:,}</h3>")
    page.add(_table(("reason", "files"), sorted(errors.items())) if errors else "<p>none</p>")
    page.add("</div>")
    if per_genre:
        png = plot_png(lambda ax: (ax.bar(list(per_genre), list(per_genre.values()), color="#4a7ab5"),
                                    ax.set_ylabel("albums"), ax.set_title("albums per genre")))
        page.add("<div>" + page.img(png, "image/png", "albums per genre", "plot") + "</div>")
    page.add("</div></section>")


def _covers_section(page: _Page, store: Store, rng: random.Random, per_genre: int) -> None:
    page.add(f'<section id="covers"><h2>Random covers per genre</h2><p>{per_genre} random albums of each genre with their labels.</p>')
    for genre in store.genres():
        ids = store.album_ids_in_genre(genre).tolist()
        picked = sorted(rng.sample(ids, min(per_genre, len(ids))))
        albums = store.albums(picked)
        cells = []
        for album_id in picked:
            album = albums[album_id]
            cells.append(f'<figure>{page.cover(store, album, _label(album))}'
                         f"<figcaption>{_e(_label(album))}</figcaption></figure>")
        page.add(f'<div class="genre-row"><h3>{_e(genre)}</h3><div class="grid">{"".join(cells)}</div></div>')
    page.add("</section>")


def _similar_section(page: _Page, store: Store, rng: random.Random, queries: int, k: int, notes: list[str]) -> None:
    page.add(f'<section id="similar"><h2>Similar covers</h2><p>For {queries} random stored covers: the {k} nearest other '
             "covers by their stored vectors (exact search, as <code>coversearch similar --album ID</code>), "
             "HSV histogram (Euclidean) beside VGG16 (cosine distance).</p>")
    names = [fs.name for fs in store.feature_sets() if fs.name in ("hsv", "vgg16")]
    searchers = {}
    for name in ("hsv", "vgg16"):
        if name not in names:
            notes.append(f"the store has no {name} vectors: its similar-cover column is left out")
            continue
        searcher = SimilarSearcher.exact(store, name)
        if len(searcher.index) < 2:
            notes.append(f"too few {name} vectors to search")
            continue
        searchers[name] = searcher
    if not searchers:
        page.add("<p>No feature vectors to search.</p></section>")
        return
    common = set.intersection(*(set(s.index.ids.tolist()) for s in searchers.values()))
    picked = rng.sample(sorted(common), min(queries, len(common)))
    for album_id in picked:
        album = store.albums([album_id])[album_id]
        page.add('<div class="query">')
        page.add(f'<figure class="q">{page.cover(store, album, _label(album))}'
                 f"<figcaption>query {_e(_label(album))}</figcaption></figure>")
        for name, searcher in searchers.items():
            kk = min(k + 1, len(searcher.index))
            result = searcher.search_album(album_id, kk)
            hits = [h for h in result.hits if h.album_id != album_id][:k]
            found = store.albums([h.album_id for h in hits])
            cells = []
            for h in hits:
                a = found[h.album_id]
                cells.append(f'<figure>{page.cover(store, a, _label(a))}'
                             f"<figcaption>{h.rank - 1}. d={h.distance:.4f}<br>{_e(', '.join(h.genres) or '-')}</figcaption></figure>")
            page.add(f'<div class="feature"><h4>{_e(result.feature)} ({_e(result.metric)})</h4><div class="grid">{"".join(cells)}</div></div>')
        page.add("</div>")
    page.add("</section>")


def _duplicates_section(page: _Page, store: Store) -> None:
    page.add('<section id="duplicates"><h2>Near-duplicate covers</h2>')
    rules = default_rules(store)
    if not rules:
        page.add("<p>The store has no phash or vgg16 vectors to compare "
                 "(<code>coversearch ingest ROOT --features phash</code> adds them).</p></section>")
        return
    result = read_result(store)  # the stored groups when current
    page.add(f"<p>{len(result.groups)} groups of near-duplicates ({_e(' or '.join(result.rules))}) hold "
             f"{result.albums_in_groups} of {result.albums} albums (<code>coversearch dedupe</code> lists them all); "
             f"the {min(DUPLICATE_GROUPS, len(result.groups))} largest, representative (largest image) first:</p>")
    for group in result.groups[:DUPLICATE_GROUPS]:
        shown = group.members[:GROUP_MEMBERS]
        albums = store.albums([m.album_id for m in shown])
        cells = []
        for i, member in enumerate(shown):
            album = albums[member.album_id]
            how = "representative" if i == 0 else ", ".join(f"{f} {d}" for f, d in member.distances.items())
            cells.append(f"<figure>{page.cover(store, album, _label(album))}"
                         f"<figcaption>{_e(_label(album))}<br>{_e(how)}</figcaption></figure>")
        more = f" ({len(group.members) - len(shown)} more not shown)" if len(group.members) > len(shown) else ""
        page.add(f'<div class="dup-group"><h3>Group {group.group}: {len(group.members)} albums{more}</h3>'
                 f'<div class="grid">{"".join(cells)}</div></div>')
    page.add("</section>")


def _classifier_section(page: _Page, model_dir: Path, notes: list[str]) -> None:
    page.add(f'<section id="classifiers"><h2>Genre classifiers</h2><p>Models in {_e(model_dir)}, scored on the test split '
             "they never saw (from each model's evaluation.json).</p>")
    rows, plots, reliability, accuracies = [], [], [], {}
    cards = sorted(list_cards(model_dir), key=lambda c: c.name)
    for card in cards:
        folder = Path(model_dir) / card.name
        try:
            result = json.loads((folder / EVALUATION).read_text())
        except (OSError, ValueError):
            notes.append(f"model {card.name} has no readable {EVALUATION}: run `coversearch evaluate --model {card.name}`")
            rows.append((card.name, card.method, "+".join(card.feature_names), "-", "-", "-", "-", card.trained_at))
            continue
        accuracies[card.name] = result.get("accuracy", 0.0)
        recall = result.get("per_genre_recall") or {}
        cal = result.get("calibration")
        ece = f"{cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f} ({cal['method']})" if cal else "-"
        rows.append((card.name, card.method, "+".join(card.feature_names), f"{result.get('accuracy', 0):.1%}",
                     result.get("albums", "-"),
                     ", ".join(f"{g} {v:.0%}" for g, v in recall.items() if v is not None), ece, card.trained_at))
        if (folder / CONFUSION_PNG).is_file():
            plots.append((card.name, (folder / CONFUSION_PNG).read_bytes()))
        if (folder / RELIABILITY_PNG).is_file():
            reliability.append((card.name, (folder / RELIABILITY_PNG).read_bytes()))
    if not cards:
        page.add(f"<p>No trained models in {_e(model_dir)} (train one with <code>coversearch train</code>).</p></section>")
        return
    page.add(_table(("model", "method", "features", "test accuracy", "test albums", "per-genre recall",
                     "test ECE, raw -> calibrated", "trained"), rows, "models"))
    if accuracies:
        names = sorted(accuracies, key=accuracies.get)
        png = plot_png(lambda ax: (ax.barh(names, [accuracies[n] for n in names], color="#6a9f58"),
                                    ax.set_xlabel("test accuracy"), ax.set_xlim(0, 1), ax.set_title("accuracy by model")))
        page.add("<div>" + page.img(png, "image/png", "accuracy by model", "plot") + "</div>")
    page.add('<h3>Confusion matrices</h3><div class="grid confusion">')
    for name, data in plots:
        page.add(f'<figure>{page.img(data, "image/png", f"confusion matrix of {name}", "heat")}<figcaption>{_e(name)}</figcaption></figure>')
    page.add("</div>")
    if reliability:
        page.add('<h3>Reliability diagrams</h3><p>Accuracy against the confidence of the top genre on the test split, '
                 'before and after calibration (ECE: 15 bins).</p><div class="grid reliability">')
        for name, data in reliability:
            page.add(f'<figure>{page.img(data, "image/png", f"reliability diagram of {name}", "plot")}<figcaption>{_e(name)}</figcaption></figure>')
        page.add("</div>")
    page.add("</section>")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "-" if value is None else str(value)


def _flat(row: dict) -> dict:
    """One level of nested parameters becomes 'a=1, b=2' text so that it shows in a table cell."""
    return {k: (", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v) for k, v in row.items()}


def _bench_rows(data: Any) -> tuple[list[dict], dict]:
    """Rows (flat dicts) and metadata from a results.json of any reasonable shape."""
    if isinstance(data, list):
        return [_flat(r) for r in data if isinstance(r, dict)], {}
    if isinstance(data, dict):
        meta = {k: v for k, v in data.items() if _scalar(v)}
        for key in ("points", "results", "rows", "runs", "indexes", "configs"):
            if isinstance(data.get(key), list):
                return [_flat(r) for r in data[key] if isinstance(r, dict)], meta
        for value in data.values():
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                return [_flat(r) for r in value], meta
        return [], meta
    return [], {}


def _search_bench_tables(page: _Page, data: Any) -> bool:
    """`coversearch bench search`'s results.json: per data set, the table its results.md shows (bench/tables.py)."""
    if not (isinstance(data, dict) and isinstance(data.get("points"), list) and isinstance(data.get("datasets"), dict)):
        return False
    try:
        tables = {key: bench_tables.table_rows(data, key) for key in bench_tables.measured_datasets(data)}
    except (KeyError, TypeError, ValueError):  # another shape of results.json: shown generically
        return False
    for key, rows in tables.items():
        info = data["datasets"][key] if isinstance(data["datasets"][key], dict) else {}
        page.add(f"<h3>{_e(info.get('title', key))}</h3>")
        page.add(_table(list(bench_tables.TABLE_HEADER), rows, "bench"))
    return bool(tables)


def _bench_section(page: _Page, bench_dir: Path, notes: list[str]) -> None:
    page.add('<section id="search-benchmark"><h2>Search benchmark</h2>')
    shown = False
    results = bench_dir / "results.json"
    if results.is_file():
        try:
            data = json.loads(results.read_text())
        except (OSError, ValueError) as exc:
            notes.append(f"{results} is unreadable: {exc}")
            data = None
        shown = _search_bench_tables(page, data)
    if results.is_file() and not shown:
        rows, meta = _bench_rows(data)
        if meta:
            page.add("<p>" + "; ".join(f"{_e(k)}: {_e(_fmt(v))}" for k, v in meta.items()) + "</p>")
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k, v in r.items() if _scalar(v)))
            page.add(_table(cols, [[_fmt(r.get(c)) for c in cols] for r in rows], "bench"))
            shown = True
            recall_key = next((c for c in cols if "recall" in c.lower()), None)
            qps_key = next((c for c in cols if "qps" in c.lower() or "q/s" in c.lower() or "per_s" in c.lower()), None)
            pngs = sorted(bench_dir.glob("*.png"))
            if recall_key and qps_key and not pngs:
                points = [(r.get(recall_key), r.get(qps_key), r.get("kind") or r.get("index") or "") for r in rows]
                points = [(x, y, k) for x, y, k in points if isinstance(x, (int, float)) and isinstance(y, (int, float))]

                def draw(ax):
                    for kind in sorted({k for _, _, k in points}):
                        xs = [x for x, _, kk in points if kk == kind]
                        ys = [y for _, y, kk in points if kk == kind]
                        ax.plot(xs, ys, "o-", label=str(kind) or None)
                    ax.set_xlabel(recall_key), ax.set_ylabel(qps_key), ax.set_yscale("log"), ax.set_title("recall vs queries/s")
                    if any(k for _, _, k in points):
                        ax.legend(fontsize=7)

                if points:
                    page.add("<div>" + page.img(plot_png(draw), "image/png", "recall vs queries per second", "plot") + "</div>")
    for png in sorted(bench_dir.glob("*.png")) if bench_dir.is_dir() else []:
        page.add(f'<figure>{page.img(png.read_bytes(), "image/png", png.stem, "plot")}<figcaption>{_e(png.name)}</figcaption></figure>')
        shown = True
    if not shown:
        page.add(f"<p>No search benchmark results yet ({_e(results)} is missing); run <code>coversearch bench search</code>.</p>")
        notes.append("no search benchmark results: that section says so")
    page.add("</section>")


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1500px}
h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;font-size:.9em;text-align:left}
th{background:#f0f0f0}.row{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
.grid{display:flex;gap:.5em;flex-wrap:wrap}figure{margin:0;width:164px;font-size:.75em}
figure.q{width:170px}.thumb{width:160px;height:160px;object-fit:contain;background:#eee;display:block}
.confusion figure{width:auto}.heat{max-width:460px}.plot{max-width:600px}
.query{display:flex;gap:1.5em;align-items:flex-start;border-top:1px solid #ddd;padding:.8em 0;flex-wrap:wrap}
.query .feature figure{width:106px}.query .feature .thumb{width:102px;height:102px}.query{flex-wrap:nowrap}
.explanations figure{width:244px}.map{max-width:900px}.explain{width:240px;display:block}
.feature h4{margin:.2em 0}.genre-row h3{margin:.6em 0 .2em}.notes{color:#a40}
"""


def build_report(
    store_path: Path,
    out: Path,
    *,
    model_dir: Path,
    index_dir: Path | None = None,
    seed: int = 0,
    covers_per_genre: int = 5,
    queries: int = 3,
    k: int = 5,
    bench_dir: Path | None = None,
    explain: bool = False,
    explain_model: str | None = None,
    vgg16_weights: Path | None = None,
    map_feature: str | None = None,
) -> ReportSummary:
    """Write the report for the store at ``store_path`` to ``out`` (atomically) and say what is in it."""
    started = time.perf_counter()
    out = check_output(out, "--out")  # before the work: a report is minutes of it
    rng = random.Random(seed)
    notes: list[str] = []
    page = _Page()
    bench_dir = Path(bench_dir) if bench_dir is not None else DEFAULT_BENCH_DIR
    with Store.open(store_path, read_only=True) as store:
        stats = store.stats()
        if stats["albums"] == 0:
            raise CoverSearchError(f"the store {store_path} holds no albums; run `coversearch ingest` first")
        _store_section(page, store, stats)
        _covers_section(page, store, rng, covers_per_genre)
        _similar_section(page, store, rng, queries, k, notes)
        _duplicates_section(page, store)
        if explain:
            from coversearch.report.explore import explain_section

            explain_section(page, store, Path(model_dir), explain_model, vgg16_weights, notes)
        if map_feature:
            from coversearch.report.explore import map_section

            map_section(page, store, map_feature, notes)
    if page.missing_covers:
        notes.append(f"{page.missing_covers} covers could not be read at their stored paths (shown grey): "
                     "was the data moved since ingest?")
    _classifier_section(page, Path(model_dir), notes)
    _bench_section(page, bench_dir, notes)
    seconds = time.perf_counter() - started
    head = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>coversearch report: {_e(Path(store_path).name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>coversearch report</h1>"
            f"<p>Store {_e(store_path)}, models {_e(model_dir)}, seed {seed}; made {time.strftime('%Y-%m-%d %H:%M:%S')} "
            f"in {seconds:.1f} s.</p><nav>" + " | ".join(f'<a href="#{s}">{s}</a>' for s in [*SECTIONS, *(["explanations"] if explain else []), *(["map"] if map_feature else [])]) + "</nav>")
    if notes:
        head += '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
    text = head + "".join(page.parts) + "</body></html>"
    write_atomic(out, text, option="--out")
    sections = [*SECTIONS, *(["explanations"] if explain else []), *(["map"] if map_feature else [])]
    return ReportSummary(out, time.perf_counter() - started, page.images, sections, notes)
