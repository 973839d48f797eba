"""The typer application object, its global options, and the one place errors become exits.

Command modules import ``app`` (or add sub-apps to it) and register themselves; ``commands.py``
says which module registers which command, and a module is imported only when its command is
used. Keeping the app here avoids import cycles between command modules.

Importing this module must stay cheap (``coversearch --help`` runs nothing else): no DuckDB,
numpy, rich or requests at module level.
"""

from __future__ import annotations

import difflib
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from coversearch import __version__
from coversearch.cli.commands import COMMANDS
from coversearch.config import DB_ENV, INDEX_DIR_ENV, LOCK_TIMEOUT_ENV, MODEL_DIR_ENV, default_db_path, default_index_dir, default_model_dir
from coversearch.errors import CoverSearchError

# Typer's own click (vendored as typer._click in recent releases, the click package in older ones).
_click_exceptions = sys.modules[typer.BadParameter.__module__]
UsageError = _click_exceptions.UsageError
NoSuchOption = _click_exceptions.NoSuchOption
NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", None)


class OneLineUsageError(UsageError):
    """A command line that does not parse, shown as the one ``error: ...`` line every error gets."""

    def show(self, file=None) -> None:  # noqa: D401 - click API
        typer.echo(f"error: {self.format_message()}", err=True)


def _closest(word: str, candidates, cutoff: float) -> str | None:
    # Compared without leading dashes, so that every option is not "close" to every other by its "--".
    names = {c.lstrip("-"): c for c in candidates}
    matches = difflib.get_close_matches(word.lstrip("-"), list(names), n=1, cutoff=cutoff)
    return names[matches[0]] if matches else None


def _one_line(exc: Exception, command, path: str) -> Exception:
    """The same usage error as one line: what was wrong, the closest name, where the help is.
    ``command`` and ``path``: the command being parsed, for errors that carry no context of their own."""
    if isinstance(exc, OneLineUsageError) or (NoArgsIsHelpError is not None and isinstance(exc, NoArgsIsHelpError)):
        return exc
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        command, path = ctx.command, ctx.command_path
    if isinstance(exc, NoSuchOption):
        options = [o for p in (command.params if command is not None else ()) for o in (*p.opts, *p.secondary_opts)]
        closest = _closest(exc.option_name, [o for o in [*options, "--help"] if o.startswith("-")], cutoff=0.6)
        hint = f": did you mean {closest}?" if closest else ""
        message = f"no such option {exc.option_name} for '{path}'{hint} ('{path} --help' lists its options)"
    else:
        text = exc.format_message().rstrip(".")
        message = f"{path}: {text[:1].lower()}{text[1:]} ('{path} --help' lists its options)"
    return OneLineUsageError(message, ctx)


class _UserErrorGroup(TyperGroup):
    """Every group of the CLI: a ``CoverSearchError`` or a command line that does not parse becomes
    one ``error: ...`` line on stderr and a non-zero exit."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            path = f"{parent.command_path} {info_name}" if parent is not None else (info_name or "coversearch")
            raise _one_line(exc, self, path) from None

    def invoke(self, ctx):  # noqa: D401 - click API
        try:
            return super().invoke(ctx)
        except CoverSearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:
            # Raised while parsing the subcommand's arguments: name that command, not this group.
            sub = ctx.invoked_subcommand
            command = self.get_command(ctx, sub) if sub else self
            raise _one_line(exc, command, f"{ctx.command_path} {sub}" if sub else ctx.command_path) from None

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            closest = _closest(name, self.list_commands(ctx), cutoff=0.0)
            path = ctx.command_path
            raise OneLineUsageError(f"no such command '{name}': did you mean '{path} {closest}'? ('{path} --help' lists them all)", ctx)
        return super().resolve_command(ctx, args)


class _RootGroup(_UserErrorGroup):
    """`coversearch`: lists every command from ``COMMANDS`` and imports a command's module on first use."""

    def list_commands(self, ctx) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx, name: str):
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(COMMANDS[name][0])
            # The module registered itself on `app`; build its click command the way typer builds all.
            built = typer.main.get_command(app)
            for loaded, command in built.commands.items():
                self.commands.setdefault(loaded, command)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter) -> None:
        """One line per command from ``COMMANDS``, without importing a single command module."""
        rows = [(name, COMMANDS[name][1] if name in COMMANDS else self.commands[name].get_short_help_str(80))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def make_app(help: str, cls: type[TyperGroup] = _UserErrorGroup, name: str | None = None) -> typer.Typer:
    return typer.Typer(
        name=name,
        cls=cls,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        # Plain click help: loads no rich, and shows a flag as a flag (rich help shows `--dry-run <bool>`).
        rich_markup_mode=None,
    )


app = make_app(
    "Search and classify album covers by how they look.\n\n"
    "Run 'coversearch COMMAND --help' for a command's options. Guide: README.md and docs/ in the repository.",
    cls=_RootGroup,
    name="coversearch",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"coversearch {__version__}")
        raise typer.Exit()


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
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
    ),
) -> None:
    from coversearch.store.db import set_process_lock_timeout

    set_process_lock_timeout(lock_timeout)
    ctx.obj = CliState(
        db=db or default_db_path(), index_dir=index_dir or default_index_dir(), model_dir=model_dir or default_model_dir()
    )


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def __getattr__(name: str):
    # `err_console` is made on first use: rich costs tens of milliseconds that `--help` need not pay.
    if name == "err_console":
        from rich.console import Console

        # Progress and tables go to stderr so that stdout stays clean for --json consumers.
        globals()["err_console"] = console = Console(stderr=True)
        return console
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
