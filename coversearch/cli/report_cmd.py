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
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Write one HTML file (images embedded) with the store, random covers, similar covers, models and benchmarks."""
    from coversearch.report import build_report

    st = state(ctx)
    summary = build_report(st.db, out, model_dir=st.model_dir, index_dir=st.index_dir, seed=seed,
                           covers_per_genre=per_genre, queries=queries, bench_dir=bench_dir)
    if json_out:
        print_json(summary.to_dict())
        return
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {summary.out} ({summary.images} images) in {summary.seconds:.1f} s")
