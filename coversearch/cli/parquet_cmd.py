"""`coversearch export` and `coversearch import`: a feature set's vectors as Parquet, both ways."""

from __future__ import annotations

from pathlib import Path

import typer

from coversearch.cli.app import app, print_json, state
from coversearch.errors import CoverSearchError
from coversearch.features.registry import FEATURE_NAMES
from coversearch.fsutil import check_output
from coversearch import metrics
from coversearch.features.registry import metric_for
from coversearch.store import Store
from coversearch.store.parquet import check_feature_name, check_import_file, export_feature, import_vectors


@app.command("export")
def export_command(
    ctx: typer.Context,
    feature: str = typer.Option(..., "--feature", "-f", help="Feature set to export (see `coversearch stats`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (replaced whole, never half-written)."),
    json_out: bool = typer.Option(False, "--json", help="Print a summary as JSON."),
) -> None:
    """Write album_id, sha256, path, genres and vector of every album with FEATURE vectors as Parquet."""
    check_output(out, "--out")
    with Store.open(state(ctx).db, read_only=True) as store:
        fs = store.feature_set(feature)
        metric = metric_for(fs)
        rows = export_feature(store, fs, out, metric)
    summary = {"feature": fs.name, "version": fs.version, "dim": fs.dim, "metric": metric,
               "model_fingerprint": fs.model_fingerprint, "rows": rows, "out": str(out)}
    if json_out:
        print_json(summary)
    else:
        typer.echo(f"wrote {rows} {fs.label} vectors ({fs.dim}-d) to {out}")


@app.command("import")
def import_command(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="Parquet file: a 'vector' column and a 'sha256' (or 'path') column."),
    feature: str = typer.Option(..., "--feature", "-f", help="Name of the feature set to create (or extend)."),
    metric: str = typer.Option(None, "--metric", help="cosine or euclidean (default: the file's own, else the existing set's, else cosine)."),
    model_fingerprint: str = typer.Option(None, "--model-fingerprint", help="Identity of the model that made the vectors (default: the file's own, else the existing set's)."),
    match: str = typer.Option(None, "--match", help="Match albums by 'sha256' or 'path' (default: sha256 when present)."),
    json_out: bool = typer.Option(False, "--json", help="Print a summary as JSON."),
) -> None:
    """Make vectors computed elsewhere a feature set of the store, matched to albums by sha256 or path."""
    check_feature_name(feature, FEATURE_NAMES)
    check_import_file(path)
    if metric is not None:
        metrics.check_metric(metric)
    with Store.open(state(ctx).db, create=False) as store:
        summary = import_vectors(store, path, feature, metric=metric, model_fingerprint=model_fingerprint, match=match)
    if json_out:
        print_json(summary.to_dict())
    else:
        typer.echo(
            f"{summary.feature}: {summary.added} vectors added, {summary.unchanged} already there "
            f"({summary.rows} rows matched to {summary.albums} albums by {summary.matched_by}; "
            f"{summary.dim}-d, {summary.metric})"
        )
