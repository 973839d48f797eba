"""`coversearch train`, `classify`, `evaluate`, `models` and `split`: genre models from the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from coversearch.cli.app import app, err_console, make_app, print_json, state
from coversearch.cli.index_cmd import wide_console
from coversearch.cli.progress import StageBars, progress_bar
from coversearch.classify.calibration import CALIBRATION_METHODS, UNKNOWN, check_calibration_method, parse_min_confidence
from coversearch.classify.model import TrainedModel, latest_default_model, list_models
from coversearch.classify.recipes import RECIPES
from coversearch.classify.registry import METHODS
from coversearch.classify.split import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    groups_across_sides,
    load_split,
    make_split,
)
from coversearch.dedupe.rules import default_rules
from coversearch.dedupe.stored import current_groups
from coversearch.classify.apply import classify_images, expand_image_paths
from coversearch.classify.evaluate import evaluate_model
from coversearch.classify.train import DEFAULT_CALIBRATION, check_training, resolve_recipe, train_model
from coversearch.cli.params import parse_params
from coversearch.config import VGG16_WEIGHTS_ENV
from coversearch.errors import CoverSearchError
from coversearch.features.registry import parse_feature_list
from coversearch.fsutil import check_output, leftovers
from coversearch.store import Store


@app.command("train")
def train_command(
    ctx: typer.Context,
    method: str = typer.Option(None, "--method", "-m", help=f"One of: {', '.join(METHODS)}."),
    feature: str = typer.Option(None, "--feature", "-f", help="Feature set(s), comma-separated and concatenated: vgg16,hsv."),
    recipe: str = typer.Option(None, "--recipe", help=f"A named recipe: {', '.join(RECIPES)}."),
    name: str = typer.Option(None, "--name", help="Model name (default: the recipe's, or METHOD-FEATURES)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Estimator parameter key=value (repeatable), e.g. -p k=15."),
    split: str = typer.Option(DEFAULT_SPLIT, "--split", help="Stored split to train on (made on first use)."),
    refit: bool = typer.Option(
        None, "--refit/--no-refit",
        help="Refit on train + validation once validation has chosen epochs/rounds (default: the recipe's; on for the default recipe).",
    ),
    calibration: str = typer.Option(
        DEFAULT_CALIBRATION, "--calibration",
        help=f"How probabilities are calibrated on the validation split: {', '.join(CALIBRATION_METHODS)}.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print how long each stage took (the card records it too)."),
    json_out: bool = typer.Option(False, "--json", help="Print the model card and test evaluation as JSON."),
) -> None:
    """Train a genre model on the store's train split and evaluate it on the test split.

    With no --method/--feature/--recipe, trains the default (best) recipe.  Probabilities are
    calibrated on the validation split (temperature scaling unless --calibration says otherwise).
    Each stage (split, loading features, each fit, calibration, evaluation) has its own progress bar.
    """
    # Imported feature sets have names of their own: the store says whether each one exists.
    features = parse_feature_list(feature, known=None) if feature else None
    chosen = resolve_recipe(recipe, method, features, parse_params(param), refit)
    check_training(chosen, name)  # method, parameters and name before the store is opened
    check_calibration_method(calibration)
    bars = StageBars(quiet)
    started = time.perf_counter()
    with Store.open(state(ctx).db, create=False) as store:
        try:
            model = train_model(store, state(ctx).model_dir, chosen, name=name, split_name=split, display=bars,
                                calibration=calibration)
        finally:
            bars.close()
    wall = time.perf_counter() - started
    evaluation = model.evaluation
    if model.card.notes.get("text") and not quiet:
        err_console.print(f"note: {model.card.notes['text']}", markup=False)
    if json_out:
        print_json({"card": model.card.to_json(), "evaluation": evaluation})
        return
    if verbose:
        Console().print(stage_table(model.card.name, bars, wall))
    if not quiet:
        # Two durations, named: the whole command's wall time, and the part of it spent fitting.
        Console().print(
            f"trained [bold]{model.card.name}[/] ({model.card.method} on {'+'.join(model.card.feature_names)}) in "
            f"{wall:.1f} s wall time, {model.card.train_seconds:.1f} s of it fitting; test accuracy "
            f"[bold]{evaluation['accuracy']:.1%}[/] on {evaluation['albums']} albums -> {state(ctx).model_dir / model.card.name}"
        )
        Console().print(_calibration_line(evaluation, model.card))


def stage_table(name: str, bars: StageBars, wall: float) -> Table:
    """Each stage's seconds and share of the wall time, then what makes them add up to it: minus the
    time fits ran side by side (counted in both), plus the time outside every stage."""
    table = Table(title=f"train {name}: {wall:.1f} s wall time, by stage")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    share = lambda seconds: f"{seconds / wall:.0%}" if wall else "-"  # noqa: E731
    for stage, seconds in bars.times:
        table.add_row(stage, f"{seconds:.1f}", share(seconds))
    covered = bars.covered_seconds()
    overlap = sum(seconds for _, seconds in bars.times) - covered
    if overlap >= 0.05:
        table.add_row("fits run side by side (counted twice above)", f"-{overlap:.1f}", share(-overlap))
    table.add_row("outside the stages", f"+{max(0.0, wall - covered):.1f}", share(max(0.0, wall - covered)))
    table.add_section()
    table.add_row("wall time", f"{wall:.1f}", share(wall))
    return table


def _calibration_line(result: dict, card) -> str:
    cal = result["calibration"]
    if card.calibration is None:
        return f"probabilities not calibrated ({card.notes.get('calibration', '--calibration none')})"
    return (f"calibration {cal['method']}: test ECE {cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}, "
            f"Brier {cal['before']['brier']:.3f} -> {cal['after']['brier']:.3f}; \"unknown\" below {result['min_confidence']:.2f} "
            f"({result['abstained_share']:.1%} of test albums, accuracy on the rest "
            f"{'-' if result['answered_accuracy'] is None else format(result['answered_accuracy'], '.1%')})")


def _note_unverified(model: TrainedModel) -> None:
    if not model.verified:
        typer.echo(f"note: model {model.card.name!r} was saved before coversearch recorded file checksums: its files are "
                   "not verified (retrain it to add them)", err=True)


def _model_name(ctx: typer.Context, name: str | None) -> str:
    return name or latest_default_model(state(ctx).model_dir)


@app.command("classify")
def classify_command(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    model: str = typer.Option(None, "--model", help="Model name (default: the latest default model)."),
    top: int = typer.Option(5, "--top", min=1, help="Genres to show per image."),
    min_confidence: str = typer.Option(
        None, "--min-confidence", metavar="P",
        help="Answer 'unknown' when the top calibrated probability is below P (0 to 1; default: the model's, chosen on validation).",
    ),
    vgg16_weights: Path = typer.Option(None, "--vgg16-weights", help=f"VGG16 weights (or env {VGG16_WEIGHTS_ENV})."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json"),
    explain: Path = typer.Option(
        None, "--explain", metavar="OUT.png",
        help="Also write a heat map over the (one) IMAGE of the regions that drove its top genre (occlusion sensitivity).",
    ),
) -> None:
    """Rank genres for each image with one loaded model (images are classified in batches).

    Each image gets an answer: its top genre, or "unknown" when that genre's calibrated
    probability is below --min-confidence; the ranked genres are shown either way.
    """
    threshold = parse_min_confidence(min_confidence)
    paths = expand_image_paths(images)
    if explain is not None:
        from coversearch.cli.explain_cmd import check_explain_target

        check_explain_target(paths, explain)
    trained = TrainedModel.load(state(ctx).model_dir, _model_name(ctx, model))
    _note_unverified(trained)
    with Store.open(state(ctx).db, read_only=True) as store, progress_bar("classify", len(paths), "img", quiet=quiet or len(paths) < 2) as advance:
        results = classify_images(store, trained, paths, vgg16_weights=vgg16_weights, on_batch=advance, min_confidence=threshold)
    threshold = trained.card.min_confidence if threshold is None else threshold
    failed = [r for r in results if r.error]
    if json_out:
        print_json({
            "model": trained.card.name,
            "calibration": (trained.card.calibration or {}).get("method", "none"),
            "min_confidence": threshold,
            "results": [
                {"path": str(r.path), "answer": r.answer.genre if r.answer else None,
                 "confidence": round(r.answer.confidence, 4) if r.answer else None,
                 "genres": [{"genre": g, "probability": round(p, 4)} for g, p in (r.genres or [])[:top]],
                 "error": r.error}
                for r in results
            ],
        })
    else:
        table = Table(title=f"genres by model {trained.card.name} (\"{UNKNOWN}\" below {threshold:.2f})")
        table.add_column("image")
        table.add_column("answer")
        table.add_column("genres (probability)")
        for r in results:
            if r.error:
                table.add_row(str(r.path), "-", f"[red]error: {r.error}[/]")
            else:
                table.add_row(str(r.path), f"[dim]{UNKNOWN}[/]" if r.answer.abstained else r.answer.genre,
                              ", ".join(f"{g} {p:.0%}" for g, p in r.genres[:top]))
        Console().print(table)
    if failed:
        raise CoverSearchError(f"{len(failed)} of {len(results)} images could not be classified (first: {failed[0].path}: {failed[0].error})")
    if explain is not None:
        from coversearch.cli.explain_cmd import write_explanation

        write_explanation(trained, paths[0], explain, vgg16_weights)


@app.command("evaluate")
def evaluate_command(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Model name (default: the latest default model)."),
    png: Path = typer.Option(None, "--png", help="Also write the confusion heat map here."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Test accuracy, per-genre recall, the confusion matrix (also saved as a PNG heat map), calibration
    (ECE and Brier before/after, reliability diagram PNG) and the risk-coverage table of "unknown"."""
    if png is not None:
        check_output(png, "--png")
    name = _model_name(ctx, model)
    trained = TrainedModel.load(state(ctx).model_dir, name)
    _note_unverified(trained)
    folder = state(ctx).model_dir / name
    with Store.open(state(ctx).db, read_only=True) as store:
        evaluation = evaluate_model(store, trained, folder)
    if png is not None:
        from coversearch.classify.evaluate import plot_confusion

        plot_confusion(evaluation.result, name, png, option="--png")
    result = evaluation.result
    if json_out:
        print_json({**result, "confusion_png": str(png or evaluation.confusion_png), "reliability_png": str(evaluation.reliability_png)})
        return
    console = Console()
    console.print(f"model [bold]{name}[/]: test accuracy [bold]{result['accuracy']:.1%}[/] on {result['albums']} albums "
                  f"({result['predict_ms_per_image']:.2f} ms per image)")
    recall = Table(title="per-genre recall")
    recall.add_column("genre")
    recall.add_column("recall", justify="right")
    for genre, value in result["per_genre_recall"].items():
        recall.add_row(genre, "-" if value is None else f"{value:.1%}")
    console.print(recall)
    confusion = Table(title="confusion (rows: true, columns: predicted)")
    confusion.add_column("")
    for c in result["classes"]:
        confusion.add_column(c, justify="right")
    for c, row in zip(result["classes"], result["confusion"]):
        confusion.add_row(c, *map(str, row))
    console.print(confusion)
    console.print(f"heat map: {png or evaluation.confusion_png}")
    console.print(_calibration_line(result, trained.card))
    risk = Table(title="answer or \"unknown\": test albums abstained and accuracy on the answered, by threshold")
    for col in ("min confidence", "abstained", "answered", "accuracy answered"):
        risk.add_column(col, justify="right")
    for row in result["risk_coverage"]:
        mark = " (default)" if row["min_confidence"] == result["min_confidence"] else ""
        risk.add_row(f"{row['min_confidence']:.2f}{mark}", f"{row['abstained_share']:.1%}", str(row["answered"]),
                     "-" if row["answered_accuracy"] is None else f"{row['answered_accuracy']:.1%}")
    console.print(risk)
    console.print(f"reliability diagram: {evaluation.reliability_png}")


models_app = make_app("Trained genre models.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list_command(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Models in the model folder (by folder name), newest first, each one's files checked."""
    model_dir = state(ctx).model_dir
    entries = list_models(model_dir, verify=True)
    entries.sort(key=lambda e: e.card.trained_at if e.card else "", reverse=True)
    for lo in leftovers(model_dir):  # stderr, also with --json: the JSON stays a list of models
        err_console.print(f"[yellow]leftover {lo.describe()}[/]", soft_wrap=True)
    states = _store_states(state(ctx).db, model_dir, entries)
    if json_out:
        print_json([{**(e.card.to_json() if e.card else {}), "name": e.folder, "card_name": e.card.name if e.card else None,
                     "files": e.files, "store": states.get(e.folder)} for e in entries])
        return
    table = Table(title=f"models in {model_dir}")
    for col in ("name", "recipe", "method", "features", "calibration", "unknown below", "trained", "train s", "files", "store"):
        table.add_column(col)
    for e in entries:
        c = e.card
        if c is None:
            table.add_row(e.folder, "-", "-", "-", "-", "-", "-", "-", f"[red]{e.files}[/]", "-")
            continue
        name = e.folder if c.name == e.folder else f"{e.folder} (card: {c.name})"
        files = {"verified": "ok", "unverified": "unverified (no checksums)"}.get(e.files, f"[red]{e.files}[/]")
        calibration = (c.calibration or {}).get("method", "none")
        if "temperature" in (c.calibration or {}):
            calibration += f" T={c.calibration['temperature']:.2f}"
        store_state = states.get(e.folder) or {"state": "-"}
        shown = {"current": "current", "changed": "[yellow]usable; evaluation out of date[/]"}.get(
            store_state["state"], f"[red]{store_state.get('reason', store_state['state'])}[/]")
        table.add_row(name, c.recipe or "-", c.method, "+".join(c.feature_names), calibration, f"{c.min_confidence:.2f}",
                      c.trained_at, f"{c.train_seconds:.1f}", files, shown)
    wide_console().print(table)


def _store_states(db: Path, model_dir: Path, entries) -> dict[str, dict]:
    """Each readable model against the store: current, changed (usable; albums added or removed
    since training, so its evaluation is out of date) or unusable with the reason; {} without a store."""
    try:
        store = Store.open(db, read_only=True, lock_timeout=0)
    except CoverSearchError:
        return {}  # no store, or one being written: the list still shows the models
    states: dict[str, dict] = {}
    with store:
        for e in entries:
            if e.card is None or e.files not in ("verified", "unverified"):
                continue
            model = TrainedModel(e.card, estimator=None)  # the card is all the check reads
            try:
                model.check_store(store)
            except CoverSearchError as exc:
                states[e.folder] = {"state": "unusable", "reason": str(exc)}
                continue
            changed = model.store_changed(store)
            states[e.folder] = {"state": "changed", "reason": changed} if changed else {"state": "current"}
    return states


split_app = make_app("The stored train / validation / test split.")
app.add_typer(split_app, name="split")


@split_app.command("show")
def split_show_command(ctx: typer.Context, name: str = typer.Option(DEFAULT_SPLIT, "--name"),
                       json_out: bool = typer.Option(False, "--json")) -> None:
    """Albums per side of a stored split, and whether it keeps near-duplicate groups together."""
    with Store.open(state(ctx).db, read_only=True) as store:
        split = load_split(store, name)
        if split is None:
            raise CoverSearchError(f"the store has no split {name!r}; `coversearch train` or `coversearch split make` makes it")
        rules = default_rules(store)
        leaks = groups_across_sides(split, current_groups(store)) if rules else None
    data = {"name": split.name, "seed": split.seed, "fractions": split.fractions, "albums": split.counts(),
            "added_by_rule": split.added_by_rule,
            "near_duplicates": {"rules": [r.label for r in rules], **leaks} if leaks else None}
    if json_out:
        print_json(data)
        return
    typer.echo(f"split {split.name} (seed {split.seed}, fractions {split.fractions}): {split.counts()}"
               + (f"; {split.added_by_rule} albums ingested since placed by the rule" if split.added_by_rule else ""))
    if leaks:
        typer.echo(
            f"near-duplicate groups ({' or '.join(r.label for r in rules)}): {leaks['groups']}, "
            f"{leaks['groups_split']} split across sides; test albums with a near-duplicate in train: "
            f"{leaks['test_albums_with_train_duplicate']}"
        )


@split_app.command("make")
def split_make_command(
    ctx: typer.Context,
    name: str = typer.Option(DEFAULT_SPLIT, "--name"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed"),
    fractions: str = typer.Option(",".join(map(str, DEFAULT_FRACTIONS)), "--fractions", help="train,val,test"),
    replace: bool = typer.Option(False, "--replace", help="Redo an existing split (models trained on it become stale)."),
    near_duplicates: bool = typer.Option(
        True, "--near-duplicates/--ignore-near-duplicates",
        help="Keep each near-duplicate group (phash, vgg16: as `coversearch dedupe`) on one side.",
    ),
) -> None:
    """Make (or with --replace, remake) a stratified split of the store's albums."""
    try:
        parts = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise CoverSearchError(f"--fractions must be three numbers like 0.7,0.1,0.2, not {fractions!r}") from None
    with Store.open(state(ctx).db, create=False) as store:
        split = make_split(store, name, seed, parts, replace=replace, near_duplicates=near_duplicates)
    typer.echo(f"split {split.name}: {split.counts()}")
