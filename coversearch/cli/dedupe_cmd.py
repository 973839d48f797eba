"""`coversearch dedupe`: groups of near-duplicate covers in the store; `coversearch check`: is this one here?"""

from __future__ import annotations

import csv
import io
from contextlib import ExitStack
from pathlib import Path

import typer
from rich.table import Table

from coversearch.cli.app import app, print_json, state
from coversearch.cli.index_cmd import wide_console
from coversearch.cli.progress import progress_bar
from coversearch.config import VGG16_WEIGHTS_ENV
from coversearch.errors import CoverSearchError
from coversearch.fsutil import check_output, write_atomic
from coversearch.dedupe.check import DuplicateCheck, check_image
from coversearch.dedupe.groups import DedupeResult, find_groups
from coversearch.dedupe.rules import DEFAULT_RULE_FEATURES, calibrated_thresholds, parse_rules
from coversearch.dedupe.stored import read_result, stored_dedupe
from coversearch.store import Store

_DEFAULTS = ", ".join(f"{f}={sure:g} (up to {up_to:g} when keypoints match)" for f, (sure, up_to) in calibrated_thresholds().items())
FEATURE_HELP = f"Feature(s) to compare, comma-separated (default: {','.join(DEFAULT_RULE_FEATURES)}, those the store holds)."
THRESHOLD_HELP = (
    "Largest distance that still counts as a near-duplicate, with no keypoint verification: T for one feature, "
    f"FEATURE=T for several (calibrated defaults: {_DEFAULTS})."
)

CSV_COLUMNS = ["group", "size", "album_id", "representative", "distances", "width", "height", "genres", "path"]


def _features(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@app.command("dedupe")
def dedupe_command(
    ctx: typer.Context,
    feature: str = typer.Option(None, "--feature", "-f", help=FEATURE_HELP),
    threshold: list[str] = typer.Option(None, "--threshold", "-t", help=THRESHOLD_HELP),
    genre: str = typer.Option(None, "--genre", "-g", help="Only albums of this genre."),
    json_out: bool = typer.Option(False, "--json", help="Print the groups as JSON."),
    csv_file: Path = typer.Option(None, "--csv", help="Write one row per group member to this CSV file."),
    top: int = typer.Option(20, "--top", min=0, help="Groups shown in the table (all go to --json / --csv)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Recompute the stored groups from nothing (default rule only)."),
    evidence: int = typer.Option(None, "--evidence", min=1, help="Show why group N (1 = largest) is one: a picture to --out, figures with --json."),
    out: Path = typer.Option(None, "--out", help="With --evidence: the PNG to write."),
) -> None:
    """Find groups of near-duplicate covers (resized, cropped, re-compressed, bordered... copies).

    With the default rule the groups are kept in the store (ingest and remove keep them current), so
    this answers from them; a --feature, --threshold or --genre computes its groups now."""
    if json_out and csv_file is not None:
        raise CoverSearchError("choose one of --json and --csv")
    if csv_file is not None:
        check_output(csv_file, "--csv")
    stored = not feature and not threshold and genre is None
    if evidence is not None:
        if not stored or csv_file is not None or rebuild:
            raise CoverSearchError("--evidence shows a stored group of the default rule: leave out --feature, --threshold, --genre, --csv and --rebuild")
        if out is None and not json_out:
            raise CoverSearchError("--evidence needs --out FILE.png (or --json for the figures alone)")
        if out is not None:
            check_output(out, "--out")
        show_evidence(state(ctx).db, evidence, out, json_out)
        return
    if out is not None:
        raise CoverSearchError("--out goes with --evidence")
    if rebuild and not stored:
        raise CoverSearchError("--rebuild recomputes the stored groups of the default rule: leave out --feature, --threshold and --genre")
    with ExitStack() as bars:
        progress = None if quiet or json_out else lambda what, total: bars.enter_context(progress_bar(what, total, "albums"))
        if stored:
            result = stored_dedupe(state(ctx).db, rebuild=rebuild, progress=progress)
        else:
            with Store.open(state(ctx).db, read_only=True) as store:
                rules = parse_rules(store, _features(feature), threshold)
                result = find_groups(store, rules, genre=genre, index_dir=state(ctx).index_dir, progress=progress)
    if json_out:
        print_json(result.to_dict())
        return
    if csv_file is not None:
        write_csv(result, csv_file)
    print_groups(result, top)
    if csv_file is not None:
        typer.echo(f"wrote {result.albums_in_groups} rows to {csv_file}", err=True)


def show_evidence(db: Path, group_number: int, out: Path | None, json_out: bool) -> None:
    from coversearch.dedupe.evidence import draw_evidence, group_evidence

    stored_dedupe(db)  # places what is missing (a no-op on an unchanged store)
    with Store.open(db, read_only=True) as store:
        group, evidence = group_evidence(store, read_result(store), group_number)
        if out is not None:
            write_atomic(out, draw_evidence(store, group, evidence), option="--out")
    figures = {"group": group.group, "members": [m.album_id for m in group.members], "out": str(out) if out else None,
               "pairs": [e.to_dict() for e, _ in evidence]}
    if json_out:
        print_json(figures)
        return
    for e, _ in evidence:
        how = ", ".join(f"{f} {d}" for f, d in e.distances.items())
        typer.echo(f"#{e.a} ~ #{e.b}: {how}; {e.inliers} inliers, {e.differing_cells}/{e.shared_cells} cells differ"
                   f"{' (mirrored)' if e.mirrored else ''}; {'confirmed' if e.confirmed else 'not confirmed by keypoints'}")
    if out is not None:
        typer.echo(f"wrote {out}", err=True)


def write_csv(result: DedupeResult, path: Path) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    for group in result.groups:
        for member in group.members:
            writer.writerow(
                [
                    group.group,
                    len(group.members),
                    member.album_id,
                    int(member.album_id == group.representative),
                    ";".join(f"{f}={d}" for f, d in member.distances.items()),
                    member.width,
                    member.height,
                    ";".join(member.genres),
                    member.path,
                ]
            )
    write_atomic(path, text.getvalue(), option="--csv")


def print_groups(result: DedupeResult, top: int) -> None:
    console = wide_console()
    where = f" of genre {result.genre}" if result.genre else ""
    console.print(
        f"{len(result.groups)} groups holding {result.albums_in_groups} of {result.albums} albums{where} "
        f"({' or '.join(result.rules)}; {result.pairs} pairs; {result.seconds:.1f} s)"
    )
    if not result.groups or top == 0:
        return
    table = Table(title=f"largest {min(top, len(result.groups))} groups (representative first)")
    table.add_column("group", justify="right")
    table.add_column("album id", justify="right")
    table.add_column("distance to representative")
    table.add_column("size")
    table.add_column("genres")
    table.add_column("path", overflow="fold")
    for group in result.groups[:top]:
        for i, member in enumerate(group.members):
            table.add_row(
                str(group.group) if i == 0 else "",
                str(member.album_id) + (" *" if i == 0 else ""),
                ", ".join(f"{f} {d}" for f, d in member.distances.items()) if i else "",
                f"{member.width}x{member.height}",
                ", ".join(member.genres),
                member.path or "",
            )
    console.print(table)


@app.command("check")
def check_command(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="The cover to look for (need not be in the store)."),
    feature: str = typer.Option(None, "--feature", "-f", help=FEATURE_HELP),
    threshold: list[str] = typer.Option(None, "--threshold", "-t", help=THRESHOLD_HELP),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"VGG16 notop weights file (or env {VGG16_WEIGHTS_ENV})."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Is this cover already in the store? Exact (same bytes) or near duplicate, with the matches.

    Exit code 0 either way; the verdict is the first line (or "verdict" in --json).
    """
    result = run_check(ctx, image, feature, threshold, vgg16_weights)
    if json_out:
        print_json(result.to_dict())
    else:
        print_check(result)


def run_check(ctx, image, feature, threshold, vgg16_weights) -> DuplicateCheck:
    with Store.open(state(ctx).db, read_only=True) as store:
        rules = parse_rules(store, _features(feature), threshold)
        result = check_image(store, image, rules, index_dir=state(ctx).index_dir, vgg16_weights=vgg16_weights)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    return result


def print_check(result: DuplicateCheck) -> None:
    typer.echo(result.summary)
    if not result.matches:
        return
    table = Table(title=f"stored matches for {result.query}")
    table.add_column("album id", justify="right")
    table.add_column("match")
    table.add_column("genres")
    table.add_column("path", overflow="fold")
    for match in result.matches:
        how = ", ".join(f"{f} {d}" for f, d in match.distances.items())
        table.add_row(str(match.album_id), ("same bytes; " if match.exact else "") + how, ", ".join(match.genres), match.path or "")
    wide_console().print(table)
