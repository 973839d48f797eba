"""results.json -> Markdown tables, recall-versus-throughput plots, and the issue's targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from coversearch.index.registry import INDEX_KINDS
from coversearch.plots import pyplot, save_figure



def _kind_rank(kind: str) -> int:
    order = list(INDEX_KINDS)  # registry order
    return order.index(kind) if kind in order else len(order)


def _approximate_kinds() -> list[str]:
    return [k for k in INDEX_KINDS if not INDEX_KINDS[k].exact]


def points_of(results: dict[str, Any], dataset_key: str) -> list[dict[str, Any]]:
    points = [p for p in results["points"] if p["dataset"] == dataset_key]
    return sorted(points, key=lambda p: (_kind_rank(p["kind"]), _sortable(p["build"]), p["recall"], -p["qps"]))


def _sortable(params: dict[str, Any]) -> list:
    """Parameters in numeric order (n_trees=50 before 100), "auto" after numbers."""
    return [(k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))) for k, v in sorted(params.items())]


def pareto_front(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points no other point beats on both recall and queries/s, by recall."""
    front = [p for p in points if not any(
        o["recall"] >= p["recall"] and o["qps"] >= p["qps"] and (o["recall"] > p["recall"] or o["qps"] > p["qps"])
        for o in points)]
    return sorted(front, key=lambda p: p["recall"])


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def describe_point(p: dict[str, Any]) -> str:
    params = {**p["build"], **p["query"]}
    return f"{p['kind']} ({_params(params)})"


TABLE_HEADER = ("front", "kind", "build", "query", "recall@10", "q/s (1 thread)", "p50 ms", "p99 ms", "batch q/s", "build s",
                "disk MiB", "RSS added MiB", "memory_bytes MiB", "genre acc. (k=10 vote)")


def table_rows(results: dict[str, Any], dataset_key: str) -> list[list[str]]:
    """One row of cells (as TABLE_HEADER) per measured point of a data set: the Markdown table and the
    HTML report both show these."""
    points = points_of(results, dataset_key)
    front = {id(p) for p in pareto_front(points)}
    rows = []
    for p in points:
        accuracy = "-" if p.get("genre_accuracy") is None else f"{p['genre_accuracy']:.1%}"
        rows.append([
            "*" if id(p) in front else "", p["kind"], _params(p["resolved_build"] if not p["build"] else p["build"]),
            _params(p["query"]), f"{p['recall']:.4f}", f"{p['qps']:,.0f}", f"{p['p50_ms']:.3f}", f"{p['p99_ms']:.3f}",
            f"{p['batch_qps']:,.0f}", f"{p['build_s']:.1f}", _mib(p["size_bytes"]), _mib(p["rss_delta_bytes"]),
            _mib(p["memory_bytes"]), accuracy,
        ])
    return rows


def measured_datasets(results: dict[str, Any]) -> list[str]:
    return [k for k in results.get("datasets", {}) if points_of(results, k)]


def markdown_table(results: dict[str, Any], dataset_key: str) -> str:
    lines = [
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|:-:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table_rows(results, dataset_key):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_name(dataset_key: str) -> str:
    return f"recall-qps-{dataset_key}.png"


def plot_dataset(results: dict[str, Any], dataset_key: str, path: Path) -> Path:
    """Recall@10 against single-thread queries/s (log), one line per kind along its own front; the
    overall Pareto front dashed in black."""
    plt = pyplot()

    points = points_of(results, dataset_key)
    title = results["datasets"].get(dataset_key, {}).get("title", dataset_key)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    kinds = sorted({p["kind"] for p in points}, key=_kind_rank)
    for i, kind in enumerate(kinds):
        mine = [p for p in points if p["kind"] == kind]
        color = f"C{i}"
        ax.scatter([p["recall"] for p in mine], [p["qps"] for p in mine], s=14, color=color, alpha=0.45)
        own = pareto_front(mine)
        ax.plot([p["recall"] for p in own], [p["qps"] for p in own], "-o", color=color, markersize=5, label=kind)
    front = pareto_front(points)
    if front:
        ax.plot([p["recall"] for p in front], [p["qps"] for p in front], "--", color="black", linewidth=1,
                label="Pareto front (all kinds)")
        ax.scatter([p["recall"] for p in front], [p["qps"] for p in front], s=90, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 (ann-benchmarks: true distance <= 10th + 1e-3)")
    ax.set_ylabel("queries/s, one query at a time on one thread (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


# -- targets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    met: bool | None  # None: not measured in these results
    detail: str

    def line(self) -> str:
        status = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        return f"- [{status}] {self.name}: {self.detail}"


def _datasets(results, *, real: bool, n: int | None = None) -> list[dict[str, Any]]:
    """Measured data sets; synthetic ones only at the standard noise (scale 1), where the targets apply."""
    found = [d for d in results["datasets"].values() if bool(d.get("real")) == real and (n is None or d["n"] == n)
             and (real or d.get("params", {}).get("noise_scale", 1.0) == 1.0)]
    return [d for d in found if any(p["dataset"] == d["key"] for p in results["points"])]


def _best_qps(points, kind: str, min_recall: float):
    ok = [p for p in points if p["kind"] == kind and p["recall"] >= min_recall]
    return max(ok, key=lambda p: p["qps"]) if ok else None


def _fmt(p: dict[str, Any]) -> str:
    return f"{describe_point(p)}: recall {p['recall']:.4f} at {p['qps']:,.0f} q/s (p50 {p['p50_ms']:.3f} ms)"


def targets(results: dict[str, Any]) -> list[Target]:
    out: list[Target] = []
    # 100k x 512
    synth = _datasets(results, real=False, n=100_000)
    points = [p for d in synth[:1] for p in results["points"] if p["dataset"] == d["key"]]
    where = "100k x 512 (noise scale 1)"
    for recall, qps in ((0.95, 1000), (0.99, 500)):
        name = f"{where}: faiss-hnsw recall@10 >= {recall} at >= {qps:,} q/s"
        if not any(p["kind"] == "faiss-hnsw" for p in points):
            out.append(Target(name, None, "no faiss-hnsw points on a 100,000-vector set"))
            continue
        best = _best_qps(points, "faiss-hnsw", recall)
        out.append(Target(name, best is not None and best["qps"] >= qps,
                          _fmt(best) if best else f"no point reaches recall {recall}"))
    name = f"{where}: annoy recall@10 >= 0.95 at its best setting"
    annoy = [p for p in points if p["kind"] == "annoy"]
    if annoy:
        top = max(annoy, key=lambda p: (p["recall"], p["qps"]))
        out.append(Target(name, top["recall"] >= 0.95, _fmt(top)))
    else:
        out.append(Target(name, None, "no annoy points on a 100,000-vector set"))
    name = f"{where}: faiss-ivf reaches recall@10 >= 0.95"
    if any(p["kind"] == "faiss-ivf" for p in points):
        best = _best_qps(points, "faiss-ivf", 0.95)
        top = max((p for p in points if p["kind"] == "faiss-ivf"), key=lambda p: p["recall"])
        out.append(Target(name, best is not None, ("fastest such point " + _fmt(best)) if best else "best " + _fmt(top)))
    else:
        out.append(Target(name, None, "no faiss-ivf points on a 100,000-vector set"))
    # the real store (about 5k vectors: the "10k store" targets)
    real_sets = _datasets(results, real=True)
    if not real_sets:
        out.append(Target("store-sized set: exact search median < 1 ms per query", None, "no real-store data set measured"))
    for d in real_sets:
        pts = [p for p in results["points"] if p["dataset"] == d["key"]]
        where = f"real store {d['feature']} ({d['n']:,} vectors)"
        exact = next((p for p in pts if p["kind"] == "exact"), None)
        if exact is None:
            out.append(Target(f"{where}: exact search median < 1 ms", None, "exact not measured"))
            continue
        out.append(Target(f"{where}: exact search median < 1 ms per query", exact["p50_ms"] < 1.0,
                          f"p50 {exact['p50_ms']:.3f} ms, p99 {exact['p99_ms']:.3f} ms, {exact['qps']:,.0f} q/s"))
        for kind in _approximate_kinds():
            mine = [p for p in pts if p["kind"] == kind]
            if not mine:
                continue
            name = f"{where}: {kind} beats exact on speed at recall@10 >= 0.99"
            best = _best_qps(pts, kind, 0.99)
            if best is None:
                top = max(mine, key=lambda p: p["recall"])
                out.append(Target(name, False, f"does not: it never reaches recall 0.99 (best {_fmt(top)})"))
            elif best["qps"] > exact["qps"]:
                out.append(Target(name, True, f"{_fmt(best)} vs exact {exact['qps']:,.0f} q/s "
                                              f"({best['qps'] / exact['qps']:.1f}x)"))
            else:
                out.append(Target(name, False, f"does not: its fastest point at recall >= 0.99 is {_fmt(best)}, "
                                               f"exact does {exact['qps']:,.0f} q/s"))
    # 1M x 512 (only when run)
    big = _datasets(results, real=False, n=1_000_000)
    name = "1M x 512: faiss-hnsw build <= 15 min and <= 6 GB, recall@10 >= 0.95"
    pts = [p for d in big[:1] for p in results["points"] if p["dataset"] == d["key"] and p["kind"] == "faiss-hnsw"]
    if not pts:
        out.append(Target(name, None, "not run (benchmarks/bench_search.py --scale 1000000 --no-real --kinds faiss-hnsw --sweeps coversearch/bench/sweeps/1m)"))
    else:
        best = _best_qps(pts, "faiss-hnsw", 0.95) or max(pts, key=lambda p: p["recall"])
        ok = best["build_s"] <= 900 and best["rss_delta_bytes"] <= 6 * 2**30 and best["recall"] >= 0.95
        out.append(Target(name, ok, f"build {best['build_s']:.0f} s, RSS added {_mib(best['rss_delta_bytes'])} MiB, "
                                    f"memory_bytes {_mib(best['memory_bytes'])} MiB; {_fmt(best)}"))
    return out


def targets_markdown(results: dict[str, Any]) -> str:
    return "\n".join(t.line() for t in targets(results))


def markdown_report(results: dict[str, Any], dataset_keys: Sequence[str] | None = None, image_prefix: str = "",
                    notes: dict[str, str] | None = None) -> str:
    """One section per data set (how it was made, any note, its plot and its table), then the targets."""
    keys = [k for k in (dataset_keys or list(results["datasets"])) if points_of(results, k)]
    parts = []
    for key in keys:
        info = results["datasets"][key]
        own = info.get("own_copies_in_true_top_k")
        own_text = (f" {own:.1%} of the queries' true 10 nearest neighbours are noisy copies of their own cover."
                    if own is not None else "")
        parts.append(
            f"#### {info['title']}\n\n{info['description']}{own_text} Data set key `{key}`. "
            f"{(notes or {}).get(key, '')}\n\n"
            f"![recall versus queries/s]({image_prefix}{plot_name(key)})\n\n{markdown_table(results, key)}"
        )
    parts.append("#### Targets\n\n" + targets_markdown(results))
    return "\n\n".join(parts)


def write_outputs(results: dict[str, Any], out_dir: Path, dataset_keys: Sequence[str] | None = None) -> dict[str, Path]:
    """results.md and one PNG per data set in ``out_dir``; returns {"markdown": path, <key>: png}."""
    out_dir = Path(out_dir)
    keys = [k for k in (dataset_keys or list(results["datasets"])) if points_of(results, k)]
    written: dict[str, Path] = {}
    for key in keys:
        written[key] = plot_dataset(results, key, out_dir / plot_name(key))
    md = out_dir / "results.md"
    md.write_text(
        "# coversearch bench search\n\n"
        "Recall@10 as in ann-benchmarks (a hit when the true distance <= the true 10th-nearest distance + 1e-3); "
        "q/s and p50/p99 latency: one query at a time through `VectorIndex.search` on one thread; batch q/s: "
        "`batch_search` over all queries on every core; disk: the saved index; RSS added: resident memory "
        "before and after the build (near 0 when the allocator reuses memory freed by an earlier build); "
        "genre accuracy: the k=10 vote of coversearch.classify.knn on the store's "
        "`default` split (test side) through the same kind and parameters (real-store sets only); duckdb scans the "
        "store's table restricted to the indexed albums by a SQL WHERE (the held-out queries are in that table). "
        "`*` marks the Pareto front of recall and q/s.\n\n" + markdown_report(results, keys) + "\n",
        encoding="utf-8",
    )
    written["markdown"] = md
    return written
