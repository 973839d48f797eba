"""`coversearch report`: a self-contained HTML page about the store, search and classifiers."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, print_json, state


@app.command("report")
def report_command(
    ctx: typer.Context,
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random covers and queries."),
    per_genre: int = typer.Option(5, "--per-genre", min=1, help="Random covers shown per genre."),
    queries: int = typer.Option(3, "--queries", min=1, help="Random covers queried for similar covers."),
    bench_dir: Path = typer.Option(Path("benchmarks/results/search"), "--bench-dir", help="Search benchmark results folder."),
    explain: bool = typer.Option(False, "--explain", help="Add 'why this genre' heat maps: one per genre, for the most confident test cover (a batched VGG16 pass over 49 masked copies each)."),
    model: str = typer.Option(None, "--model", help="Model to explain (default: the latest default model)."),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help="VGG16 weights for --explain (or env COVERSEARCH_VGG16_WEIGHTS)."),
    map_feature: str = typer.Option(None, "--map", metavar="FEATURE", help="Add the catalogue map of this feature (vgg16, hsv, ...)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Write one HTML file (images embedded) with the store, random covers, similar covers, models and benchmarks."""
    from coversearch.report import build_report

    st = state(ctx)
    summary = build_report(st.db, out, model_dir=st.model_dir, index_dir=st.index_dir, seed=seed,
                           covers_per_genre=per_genre, queries=queries, bench_dir=bench_dir,
                           explain=explain, explain_model=model, vgg16_weights=vgg16_weights,
                           map_feature=map_feature)
    if json_out:
        print_json(summary.to_dict())
        return
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {summary.out} ({summary.images} images) in {summary.seconds:.1f} s")
