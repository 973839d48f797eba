"""`coversearch index build|list`: nearest-neighbour indexes over the store's embeddings."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from coversearch.cli.app import app, err_console, make_app, print_json, state
from coversearch.errors import CoverSearchError
from coversearch.features.registry import FEATURE_NAMES
from coversearch.fsutil import format_bytes, leftovers
from coversearch import metrics
from coversearch.index.catalog import build_index, check_current, list_manifests, load_manifest, refresh_index
from coversearch.index.params import parse_param_pairs
from coversearch.index.registry import INDEX_KINDS, index_class
from coversearch.store import Store
from coversearch.store.parquet import check_known_feature

index_app = make_app("Build and list nearest-neighbour indexes over the store's embeddings.")
app.add_typer(index_app, name="index")


@index_app.command("build")
def build_command(
    ctx: typer.Context,
    feature: str = typer.Option(..., "--feature", "-f", help=f"Feature set to index: {', '.join(FEATURE_NAMES)}, or an imported one."),
    kind: str = typer.Option(..., "--kind", help=f"Index kind: {', '.join(INDEX_KINDS)}."),
    name: str = typer.Option(None, "--name", help="Index name (default <feature>-<kind>); an existing one is replaced."),
    metric: str = typer.Option(None, "--metric", help="cosine or euclidean (default: cosine for vgg16, euclidean for hsv)."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Build or query parameter key=value (repeatable), e.g. M=48."),
    factory: str = typer.Option(
        None, "--factory", help="faiss-ivf / faiss-ivfpq: a FAISS index_factory string, e.g. OPQ64_256,IVF65536_HNSW32,PQ64."
    ),
    shards: int = typer.Option(
        None, "--shards", help="faiss-ivf / faiss-ivfpq: train on a sample, add the store in N shards, merge (default 4)."
    ),
    engine: str = typer.Option(None, "--engine", help="Sharded build: local (shards in this process) or ray (a Ray task per shard)."),
    on_disk: bool = typer.Option(
        False, "--on-disk", help="Sharded build: merge into on-disk inverted lists (index.ivfdata), memory-mapped when searching."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Build an index over one feature set and write it under the index folder."""
    index_class(kind)
    if metric is not None:
        metrics.check_metric(metric)
    build_params, query_params = parse_param_pairs(kind, param or [])  # bad params fail before the store opens
    if factory is not None:
        build_params.update(parse_param_pairs(kind, [f"factory={factory}"])[0])
    sharding = None
    if shards is not None or engine is not None or on_disk:
        from coversearch.index.sharded import ShardOptions

        sharding = ShardOptions(shards=4 if shards is None else shards, engine=engine or "local", on_disk=on_disk).check()
    index_dir = state(ctx).index_dir
    with Store.open(state(ctx).db, read_only=True) as store:
        check_known_feature(store, feature, FEATURE_NAMES)
        manifest = build_index(
            store,
            feature=feature,
            kind=kind,
            index_dir=index_dir,
            name=name,
            metric=metric,
            build_params=build_params,
            query_params=query_params,
            sharding=sharding,
            progress=(lambda message: err_console.print(message, highlight=False)) if sharding else None,
        )
    if json_out:
        print_json(manifest.to_dict() | {"folder": str(manifest.folder)})
        return
    table = Table(title=f"index {manifest.name}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("folder", str(manifest.folder))
    table.add_row("feature", f"{manifest.feature_label} ({manifest.dim}-d)")
    table.add_row("kind / metric", f"{manifest.kind} / {manifest.metric}")
    table.add_row("vectors", str(manifest.vectors))
    table.add_row("build params", _params(manifest.build_params))
    table.add_row("query params", _params(manifest.query_params))
    table.add_row("build seconds", f"{manifest.build_seconds:.2f}")
    if manifest.sharding:
        sh = manifest.sharding
        table.add_row("sharded build", (
            f"{sh['shards']} shards ({sh['engine']}{', on disk' if sh['on_disk'] else ''}): train {sh['train_seconds']:.1f} s "
            f"on {sh['train_vectors']:,} vectors, add {sh['add_seconds']:.1f} s, merge {sh['merge_seconds']:.1f} s"
        ))
    table.add_row("size", _size(manifest.size_bytes))
    Console().print(table)


@index_app.command("refresh")
def refresh_command(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Indexes to refresh (default: every stale one)."),
    json_out: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Bring stale indexes up to date after ingest or remove: in place where the kind can, else rebuilt."""
    index_dir = state(ctx).index_dir
    manifests = [load_manifest(index_dir, n) for n in names] if names else list_manifests(index_dir)[0]
    done = []
    with Store.open(state(ctx).db, read_only=True) as store:
        for manifest in manifests:
            freshness = check_current(store, manifest)
            if freshness.current:
                done.append({"name": manifest.name, "refreshed_by": None, "vectors": manifest.vectors, "reason": None})
                continue
            updated = refresh_index(store, Path(index_dir), manifest, freshness)
            done.append({"name": updated.name, "refreshed_by": updated.refreshed_by, "vectors": updated.vectors,
                         "reason": freshness.reason})
    if json_out:
        print_json({"index_dir": str(index_dir), "indexes": done})
        return
    if not done:
        err_console.print(f"no indexes in {index_dir}")
    for row in done:
        what = "current" if row["refreshed_by"] is None else f"refreshed by {row['refreshed_by']} ({row['reason']})"
        typer.echo(f"{row['name']}: {what}; {row['vectors']} vectors")


@index_app.command("list")
def list_command(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The indexes in the index folder, and whether each still matches the store."""
    index_dir = state(ctx).index_dir
    manifests, problems = list_manifests(index_dir)
    stale: dict[str, str | None] = {}  # name -> reason ("" = current), None = unknown
    db = state(ctx).db
    if manifests and Path(db).is_file():
        try:
            with Store.open(db, read_only=True) as store:
                for manifest in manifests:
                    freshness = check_current(store, manifest)
                    stale[manifest.name] = "" if freshness.current else freshness.reason
        except CoverSearchError as exc:
            err_console.print(f"[yellow]cannot check indexes against the store: {exc}[/]")
    rows = []
    for m in manifests:
        reason = stale.get(m.name)
        rows.append(
            {
                "name": m.name,
                "feature": m.feature_label,
                "kind": m.kind,
                "metric": m.metric,
                "vectors": m.vectors,
                "size_bytes": m.size_bytes,
                "built_at": m.built_at,
                "refreshed_by": m.refreshed_by,
                "stale": None if reason is None else bool(reason),
                "stale_reason": reason or None,
                "folder": str(m.folder),
            }
        )
    left = leftovers(index_dir)
    if json_out:
        print_json({
            "index_dir": str(index_dir),
            "indexes": rows,
            "unreadable": [{"name": n, "problem": p} for n, p in problems],
            "leftovers": [{"folder": lo.path.name, "index": lo.name, "stage": lo.stage, "held": lo.held} for lo in left],
        })
        return
    for lo in left:
        err_console.print(f"[yellow]leftover {lo.describe()}[/]", soft_wrap=True)
    if not rows and not problems:
        err_console.print(f"no indexes in {index_dir}; build one with `coversearch index build --feature vgg16 --kind faiss-hnsw`")
        return
    table = Table(title=f"indexes in {index_dir}")
    for column in ("name", "feature", "kind", "metric", "vectors", "size", "built", "stale?"):
        table.add_column(column, justify="right" if column in ("vectors", "size") else "left")
    for row in rows:
        stale_text = "?" if row["stale"] is None else ("yes: " + row["stale_reason"] if row["stale"] else "no")
        built = row["built_at"].replace("T", " ")[:16] + (f" ({row['refreshed_by']})" if row["refreshed_by"] else "")
        table.add_row(
            row["name"], row["feature"], row["kind"], row["metric"], str(row["vectors"]), _size(row["size_bytes"]), built, stale_text
        )
    wide_console().print(table)
    for name, problem in problems:
        err_console.print(f"[red]{name}: {problem}[/]")


def wide_console() -> Console:
    """Stdout console; when piped (no terminal to fit), wide enough that tables do not wrap."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def _size(n: int) -> str:
    return format_bytes(n)
