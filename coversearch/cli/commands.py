"""Every top-level command: its name, the module that registers it, and its line in `coversearch --help`.

A command module is imported only when its command runs (or its own `--help` is asked for), so that
`coversearch --help` loads no DuckDB, numpy, TensorFlow or requests. To add a command: write
``coversearch/cli/<name>_cmd.py`` registering it with ``@app.command("<name>")`` (or
``app.add_typer(make_app(...), name="<name>")`` for a group), and add its line here.
``tests/test_cli_polish.py`` fails when a registered command is missing from this table, when a line
here names a module that registers no such command, or when README.md's command table lacks it.
"""

from __future__ import annotations

# name -> (module, one line for `coversearch --help`), in the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("coversearch.cli.ingest_cmd", "Ingest a folder, manifest or links file of covers into the store."),
    "stats": ("coversearch.cli.stats_cmd", "What the store holds: albums, genres, feature sets, ingest errors."),
    "similar": ("coversearch.cli.similar_cmd", "The stored covers that look most like an image, an album or a palette."),
    "index": ("coversearch.cli.index_cmd", "Build, list and refresh nearest-neighbour indexes."),
    "search": ("coversearch.cli.text_cmd", "Covers whose printed words match a text, typos and lost spaces allowed."),
    "check-metadata": ("coversearch.cli.text_cmd", "Covers whose printed words contradict their artist / title metadata."),
    "dedupe": ("coversearch.cli.dedupe_cmd", "Groups of near-duplicate covers in the store."),
    "check": ("coversearch.cli.dedupe_cmd", "Is this cover already stored (same bytes or a near-duplicate)?"),
    "train": ("coversearch.cli.classify_cmd", "Train a genre model on the stored split."),
    "classify": ("coversearch.cli.classify_cmd", "Rank genres for images with a trained model."),
    "evaluate": ("coversearch.cli.classify_cmd", "A model's test accuracy, per-genre recall, confusion and calibration."),
    "models": ("coversearch.cli.classify_cmd", "List the trained genre models."),
    "split": ("coversearch.cli.classify_cmd", "Make or show the stored train / validation / test split."),
    "remove": ("coversearch.cli.curate_cmd", "Remove albums with everything stored about them."),
    "label": ("coversearch.cli.curate_cmd", "Add or remove genres of stored albums."),
    "map": ("coversearch.cli.map_cmd", "A pan-and-zoom map page of the whole catalogue."),
    "report": ("coversearch.cli.report_cmd", "One self-contained HTML report of the store, searches and models."),
    "serve": ("coversearch.cli.serve_cmd", "The web page and JSON API: drop a cover, see its genres and look-alikes."),
    "download": ("coversearch.cli.download_cmd", "Download the covers a links file lists, safely and resumably."),
    "export": ("coversearch.cli.parquet_cmd", "Write a feature set's vectors to Parquet."),
    "import": ("coversearch.cli.parquet_cmd", "Make vectors computed elsewhere (Parquet) a feature set."),
    "bench": ("coversearch.cli.bench_cmd", "Benchmark the index kinds: recall, speed, size, memory."),
    "db": ("coversearch.cli.db_cmd", "Show or upgrade the store's schema revision."),
}
