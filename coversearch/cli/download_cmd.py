"""``coversearch download``: parse options, call ``coversearch.download``, report.

Progress and the human summary go to stderr; ``--json`` puts the plan or summary on stdout.
Exit code: 0 when every line is present after the run, 1 when any line failed or was malformed
(``failures.tsv`` says which), as for any user error.
"""

from __future__ import annotations

import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from coversearch.cli.app import app, err_console, print_json, state
from coversearch.cli.ingest_cmd import print_ingest_result
from coversearch.cli.progress import progress_bar
from coversearch.config import VGG16_WEIGHTS_ENV
from coversearch.fsutil import format_bytes
from coversearch.features.registry import DEFAULT_FEATURES, parse_feature_list
from coversearch.ingest.readers import listing_from_links
from coversearch.ingest.run import run_ingest
from coversearch.download import (
    DEFAULT_MAX_BYTES,
    DEFAULT_WORKERS,
    DownloadPlan,
    DownloadSummary,
    FetchConfig,
    ProgressHook,
    download,
    parse_size,
    plan_download,
)

_SHOW = 20  # problems/duplicates listed in text output; --json lists all


def _human_bytes(n: float) -> str:
    return format_bytes(n, si=True)


class _BytesColumn(ProgressColumn):
    """Bytes received so far and the average rate (files drive the bar, so rich's speed would be files/s)."""

    def render(self, task) -> Text:
        done = task.fields.get("bytes", 0)
        elapsed = task.elapsed or 0.0
        rate = done / elapsed if elapsed > 0 else 0.0
        return Text(f"{_human_bytes(done)} {_human_bytes(rate)}/s", style="progress.data.speed")


class _RichProgress(ProgressHook):
    def __init__(self, console: Console):
        self._progress = Progress(
            TextColumn("download"),
            BarColumn(),
            MofNCompleteColumn(),
            _BytesColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = None
        self._bytes = 0
        self._failed = 0
        self._lock = threading.Lock()

    def start(self, total_files: int) -> None:
        self._task = self._progress.add_task("download", total=total_files, bytes=0, failed=0)
        self._progress.start()

    def add_bytes(self, n: int) -> None:
        with self._lock:  # called from worker threads
            self._bytes += n
            self._progress.update(self._task, bytes=self._bytes)

    def file_done(self, outcome: str) -> None:  # called from the main thread
        if outcome == "failed":
            self._failed += 1
        self._progress.update(self._task, advance=1, failed=self._failed)

    def finish(self) -> None:
        self._progress.stop()


def _print_plan(plan: DownloadPlan, out: Path) -> None:
    console = Console()  # the plan is the command's output: stdout
    console.print(f"plan for {plan.links_path} -> {out} (dry run, no network access)", markup=False, highlight=False)
    table = Table()
    table.add_column("genre")
    table.add_column("files", justify="right")
    for genre, count in plan.genres.items():
        table.add_row(genre, str(count))
    table.add_row("[bold]total", f"[bold]{len(plan.entries)}")
    console.print(table)
    for title, dups in (("duplicate URLs", plan.duplicate_urls), ("duplicate paths", plan.duplicate_paths)):
        console.print(f"{title}: {len(dups)}")
        for d in dups[:_SHOW]:
            console.print(f"  lines {', '.join(map(str, d.lines))}: {d.key}", markup=False, highlight=False)
        if len(dups) > _SHOW:
            console.print(f"  ... and {len(dups) - _SHOW} more (--json lists all)")
    console.print(f"malformed lines: {len(plan.problems)}")
    for p in plan.problems[:_SHOW]:
        console.print(f"  line {p.line_no}: {p.reason}", markup=False, highlight=False)
    if len(plan.problems) > _SHOW:
        console.print(f"  ... and {len(plan.problems) - _SHOW} more (--json lists all)")


def _print_summary(summary: DownloadSummary) -> None:
    c = err_console
    c.print(
        f"downloaded {summary.downloaded} ({_human_bytes(summary.bytes_downloaded)}), "
        f"already present {summary.present}, failed {summary.failed} "
        f"in {summary.elapsed_s:.1f}s",
        highlight=False,
    )
    if summary.stale_removed:
        c.print(f"removed {summary.stale_removed} temporary file(s) left by an interrupted run")
    for reason, count in summary.failures_by_reason.items():
        c.print(f"  {reason}: {count}", markup=False, highlight=False)
    if summary.failures:
        c.print(f"failures listed in {summary.failures_path}", markup=False, highlight=False)


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("download")
def download_command(
    ctx: typer.Context,
    links: Path = typer.Argument(..., help="Links file: one 'URL<TAB>genre/file.jpg' per line."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder; files go to OUT/<genre>/<file>."),
    workers: int = typer.Option(DEFAULT_WORKERS, "--workers", min=1, max=256, help="Parallel downloads."),
    retries: int = typer.Option(3, "--retries", min=0, max=20, help="Retries after connection errors, timeouts, 429 and 5xx."),
    timeout: float = typer.Option(20.0, "--timeout", min=0.001, help="Seconds to connect, and to wait for each read."),
    max_bytes: str = typer.Option(
        f"{DEFAULT_MAX_BYTES // 1_000_000}MB", "--max-bytes", help="Largest accepted file (e.g. 20MB, 512KiB)."
    ),
    backoff: float = typer.Option(1.0, "--backoff", min=0.0, help="First retry delay in seconds; doubles each retry."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the plan (per-genre counts, duplicates, bad lines)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan or summary as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary on stderr."),
    then_ingest: bool = typer.Option(False, "--ingest", help="Then ingest the files now present, with the links' genres and URLs."),
    features: str = typer.Option(DEFAULT_FEATURES, "--features", "-f", help="With --ingest: features to compute."),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"With --ingest: VGG16 weights (or env {VGG16_WEIGHTS_ENV})."),
) -> None:
    """Download a cover dataset from a links file, safely and resumably (reruns skip valid files)."""
    limit = _size(max_bytes)
    if dry_run:
        plan = plan_download(links, out)
        if as_json:
            print_json({"dry_run": True, "out": str(out), **plan.to_json()})
        else:
            _print_plan(plan, out)
        return

    if then_ingest:
        parse_feature_list(features)  # a bad feature list fails before any download
    config = FetchConfig(timeout=timeout, retries=retries, max_bytes=limit, backoff=backoff)
    progress = None if quiet else _RichProgress(err_console)
    summary = download(links, out, config, workers=workers, progress=progress)
    if as_json:
        print_json({"dry_run": False, **summary.to_json()})
    if not quiet:
        _print_summary(summary)
    if then_ingest:
        # Only what is on disk and valid now; failed lines stay in failures.tsv, not the store.
        result = run_ingest(state(ctx).db, listing_from_links(out, summary.files), features, vgg16_weights,
                            progress=lambda total: progress_bar("ingest", total, "img", quiet=quiet))
        print_ingest_result(result, quiet=quiet, json_out=as_json)
    if not summary.ok:
        raise typer.Exit(1)
