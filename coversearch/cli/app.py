"""The typer application object, its global options, and the one place user errors become exits.

Command modules import ``app`` (or add sub-apps to it) and register themselves; ``main.py``
imports them all.  Keeping the app here avoids import cycles between command modules.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from coversearch.config import DB_ENV, INDEX_DIR_ENV, MODEL_DIR_ENV, default_db_path, default_index_dir, default_model_dir
from coversearch.errors import CoverSearchError
from coversearch.store.db import LOCK_TIMEOUT_ENV, set_process_lock_timeout


class _UserErrorGroup(TyperGroup):
    """Turns ``CoverSearchError`` into one line on stderr and a non-zero exit, for every command."""

    def invoke(self, ctx):  # noqa: D401 - click API
        try:
            return super().invoke(ctx)
        except CoverSearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


def make_app(help: str) -> typer.Typer:
    return typer.Typer(
        cls=_UserErrorGroup,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )


app = make_app("Search and classify album covers by how they look.")


@dataclass
class CliState:
    db: Path
    index_dir: Path
    model_dir: Path


@app.callback()
def _global_options(
    ctx: typer.Context,
    db: Path = typer.Option(None, "--db", help=f"Store file (default ./coversearch.duckdb, env {DB_ENV})."),
    index_dir: Path = typer.Option(
        None, "--index-dir", help=f"Where indexes live (default ./indexes, env {INDEX_DIR_ENV})."
    ),
    model_dir: Path = typer.Option(
        None, "--model-dir", help=f"Where trained models live (default ./models, env {MODEL_DIR_ENV})."
    ),
    lock_timeout: float = typer.Option(
        None, "--lock-timeout", min=0,
        help=f"Seconds to wait for a store another process is writing (default 30 to read, 0 to write; env {LOCK_TIMEOUT_ENV}).",
    ),
) -> None:
    set_process_lock_timeout(lock_timeout)
    ctx.obj = CliState(
        db=db or default_db_path(), index_dir=index_dir or default_index_dir(), model_dir=model_dir or default_model_dir()
    )


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


# Progress and tables go to stderr so that stdout stays clean for --json consumers.
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
