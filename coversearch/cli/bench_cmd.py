"""`coversearch bench search`: recall, speed, size and memory of every index kind over a parameter sweep."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, err_console, make_app, print_json, state
from coversearch.cli.progress import progress_bar
from coversearch.store import Store

bench_app = make_app("Benchmarks of the index kinds.")
app.add_typer(bench_app, name="bench")


@bench_app.command("search")
def search_command(
    ctx: typer.Context,
    feature: list[str] = typer.Option(None, "--feature", "-f", help="Feature set(s) to use (default: hsv and vgg16 where present)."),
    scale: int = typer.Option(100_000, "--scale", help="Synthetic vectors made from the store's (tiled + noise); 0 for none."),
    kinds: list[str] = typer.Option(None, "--kinds", help="Index kinds, comma-separated or repeated (default: all)."),
    queries: int = typer.Option(1_000, "--queries", help="Held-out queries per data set (at most 10% of a real store)."),
    out: Path = typer.Option(Path("benchmarks/results/search"), "--out", help="Folder for results.json, results.md and plots."),
    resume: bool = typer.Option(True, "--resume/--fresh", help="Keep points already in results.json (default) or measure again."),
    real: bool = typer.Option(True, "--real/--no-real", help="Also the store's own vectors (genre accuracy, duckdb kind)."),
    sweeps: Path = typer.Option(None, "--sweeps", help="Folder of <kind>.toml sweep files (default: the ones coversearch ships, coversearch/bench/sweeps)."),
    noise: float = typer.Option(1.0, "--noise", help="Synthetic noise norm, in median nearest-neighbour distances."),
    seed: int = typer.Option(0, "--seed", help="Seed for held-out queries and synthetic noise."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json", help="Print paths, counts and targets as JSON."),
) -> None:
    """Sweep index kinds and parameters: recall@10, q/s, latency, build time, size, memory, genre accuracy."""
    from coversearch.bench import tables
    from coversearch.bench.run import DEFAULT_KINDS, DEFAULT_SWEEPS, SearchBench, prepare, run, write

    chosen = [k.strip() for item in (kinds or []) for k in item.split(",") if k.strip()] or list(DEFAULT_KINDS)
    features = [f.strip() for item in (feature or []) for f in item.split(",") if f.strip()]
    bench = SearchBench(features=features, scale=scale, kinds=chosen, queries=queries, out_dir=out, fresh=not resume,
                        real=real, sweeps_dir=sweeps or DEFAULT_SWEEPS, seed=seed, noise_scale=noise)

    def log(message: str) -> None:
        if not quiet:
            err_console.log(message)

    db = state(ctx).db
    with Store.open(db, read_only=True) as store:
        prepared = prepare(bench, store, Path(db).stem, log=log)
        done_before = prepared.total_points
        with progress_bar("sweep", prepared.total_points, "points", quiet=quiet) as advance:
            measured = run(bench, prepared, advance=advance, log=log)
    written = write(bench, prepared)
    found = tables.targets(prepared.results.data)
    if json_out:
        print_json({
            "results": str(prepared.results.path), "markdown": str(written["markdown"]),
            "plots": [str(p) for k, p in written.items() if k != "markdown"], "measured": measured,
            "skipped": done_before - measured, "datasets": [d.info() for d in prepared.datasets],
            "targets": [{"name": t.name, "met": t.met, "detail": t.detail} for t in found],
        })
        return
    for d in prepared.datasets:
        typer.echo(f"data set {d.key}: {d.description}")
    typer.echo(f"measured {measured} point(s), kept {done_before - measured} already in {prepared.results.path}")
    typer.echo(f"wrote {written['markdown']} and {len(written) - 1} plot(s)")
    typer.echo("targets:")
    for t in found:
        typer.echo(t.line())
