"""`coversearch ingest`: add covers and their embeddings to the store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from coversearch.cli.app import app, print_json, state
from coversearch.cli.index_cmd import wide_console
from coversearch.cli.progress import progress_bar
from coversearch.config import VGG16_WEIGHTS_ENV, vgg16_weights_from_env
from coversearch.errors import CoverSearchError
from coversearch.imaging.images import MAX_FILE_BYTES
from coversearch.features.registry import DEFAULT_FEATURES, FEATURE_NAMES
from coversearch.ingest.pipeline import DEFAULT_BATCH_SIZE, ENGINES
from coversearch.ingest.ray_engine import RayOptions
from coversearch.ingest.readers import SourceListing, limit_items, read_source
from coversearch.ingest.run import run_ingest as ingest_listing


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    root: Path = typer.Argument(..., help="Folder ROOT/<genre>/<image>, a manifest .csv, or a links .tsv."),
    features: str = typer.Option(DEFAULT_FEATURES, "--features", "-f", help=f"Comma-separated, from: {', '.join(FEATURE_NAMES)}."),
    manifest: Path = typer.Option(None, "--manifest", help="CSV: path, genre|genres[, artist, title, url]; paths under ROOT."),
    links: Path = typer.Option(None, "--links", help="Links file url<TAB>genre/file.jpg; files looked up under ROOT."),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N files of the listing."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Images per transaction (with Ray: per task, forward batch and shard)."),
    max_file_bytes: int = typer.Option(
        MAX_FILE_BYTES, "--max-file-bytes", min=1, help="Larger files are not read: an error row (too-large) each."
    ),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"VGG16 notop weights file (or env {VGG16_WEIGHTS_ENV})."),
    engine: str = typer.Option("local", "--engine", help=f"{' or '.join(ENGINES)}: this process, or Ray read tasks + an actor pool."),
    address: str = typer.Option(None, "--address", help="Ray: join a cluster (auto, or ray://HOST:PORT); default a local instance."),
    workers: int = typer.Option(1, "--workers", min=1, help="Ray: actors, each with one backbone."),
    cpus_per_worker: int = typer.Option(1, "--cpus-per-worker", min=1, help="Ray: CPUs per actor (its TensorFlow threads)."),
    shards: Path = typer.Option(None, "--shards", help="Ray: Parquet shard folder (default <store>.shards/)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    report_duplicates: bool = typer.Option(
        False, "--report-duplicates", help="List new covers that nearly duplicate stored ones or an earlier cover of the same run (they are still ingested)."
    ),
) -> None:
    """Ingest covers: hash, dedupe, decode, embed, and store them."""
    if engine == "local" and (address or shards or workers != 1 or cpus_per_worker != 1):
        raise CoverSearchError("--address, --workers, --cpus-per-worker and --shards need --engine ray")
    # Checked before the listing or the store is touched.
    ray = RayOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker, shards=shards).check() \
        if engine == "ray" else None
    listing = read_source(root, manifest=manifest, links=links)
    listing.items = limit_items(listing.items, limit)
    run_ingest(ctx, listing, features, vgg16_weights, engine=engine, ray=ray, batch_size=batch_size, quiet=quiet,
               json_out=json_out, max_file_bytes=max_file_bytes, report_duplicates=report_duplicates)


def run_ingest(
    ctx: typer.Context,
    listing: SourceListing,
    features: str,
    vgg16_weights: Path | None,
    *,
    engine: str = "local",
    ray: RayOptions | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool = False,
    json_out: bool = False,
    max_file_bytes: int = MAX_FILE_BYTES,
    report_duplicates: bool = False,
) -> dict:
    """Ingest a listing (coversearch.ingest.run) and print the result."""
    result = ingest_listing(
        state(ctx).db, listing, features, vgg16_weights or vgg16_weights_from_env(), engine=engine, ray=ray,
        batch_size=batch_size, max_file_bytes=max_file_bytes,
        report_duplicates=report_duplicates,
        progress=lambda total: progress_bar(f"ingest ({engine})" if engine != "local" else "ingest", total, "img", quiet=quiet),
    )
    print_ingest_result(result, quiet=quiet, json_out=json_out)
    return result


def print_ingest_result(result: dict, *, quiet: bool = False, json_out: bool = False) -> None:
    if json_out:
        print_json(result)
    elif not quiet:
        _print_summary(result)
    if "near_duplicates" in result and not json_out:
        _print_duplicates(result["near_duplicates"])


def _print_duplicates(report: dict) -> None:
    found = report["found"]
    rules = " or ".join(report["rules"])
    if not found:
        typer.echo(f"no new cover nearly duplicates a stored one ({rules})")
        return
    table = Table(title=f"{len({d['album_id'] for d in found})} new covers nearly duplicate stored ones or each other ({rules}); they were ingested")
    for column in ("new album", "new path", "stored album", "stored path", "feature", "distance"):
        table.add_column(column, overflow="fold")
    for d in found:
        of = f"{d['duplicate_of']} (this run)" if d.get("same_run") else str(d["duplicate_of"])
        table.add_row(str(d["album_id"]), d["path"] or "", of, d["duplicate_path"] or "", d["feature"], str(d["distance"]))
    wide_console().print(table)


def _print_summary(result: dict) -> None:
    table = Table(title="ingest summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files seen", str(result["files_seen"]))
    table.add_row("albums added", str(result["albums_added"]))
    table.add_row("files added", str(result["files_added"]))
    table.add_row("genre links added", str(result["genre_links_added"]))
    for name, n in sorted(result["embeddings_added"].items()):
        table.add_row(f"{name} embeddings added", str(n))
    table.add_row("unchanged (already stored)", str(result["unchanged"]))
    table.add_row("errors", str(result["errors"]))
    for reason, n in result["errors_by_reason"].items():
        table.add_row(f"  {reason}", str(n))
    table.add_row("  of which left out (not read again)", str(result["left_out"]))
    if result["shards_resumed"] or result["shards_written"]:
        table.add_row("shards resumed / written", f"{result['shards_resumed']} / {result['shards_written']}")
    table.add_row("images/s", str(result["images_per_second"]))
    Console().print(table)
    if result["errors"]:
        Console(stderr=True).print("[yellow]see `coversearch stats` for errors by reason; paths are in the ingest_errors table[/]")
