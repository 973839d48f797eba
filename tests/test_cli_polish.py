"""The command line itself: flags shown as flags, one `error:` line with the closest name for a command
line that does not parse, `--version`, commands loaded on first use, and a command table that is complete."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib

import typer

from conftest import REPO, one_line_error, run_cli

HEAVY = ("duckdb", "numpy", "requests", "rich", "sqlalchemy", "alembic", "faiss", "annoy", "tensorflow", "keras", "xgboost", "cv2", "ray")


def _every_command():
    """(path, click command) for every command and subcommand, with every command module loaded."""
    from coversearch.cli.commands import COMMANDS
    from coversearch.cli.main import app

    for module in {m for m, _ in COMMANDS.values()}:
        importlib.import_module(module)
    found, todo = [], [("coversearch", typer.main.get_command(app))]
    while todo:
        path, command = todo.pop()
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            todo.append((f"{path} {name}", sub))
    return found


def test_flags_are_shown_as_flags_in_every_commands_help():
    commands = _every_command()
    assert len(commands) > 25
    for path, _ in commands:
        result = run_cli(*path.split()[1:], "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
    remove_help = run_cli("remove", "--help").output
    # `--dry-run` takes no value: its help follows the flag directly, with no type in between.
    assert re.search(r"^\s+--dry-run\s+Say what would be removed", remove_help, re.M), remove_help
    assert re.search(r"^\s+--watch / --no-watch\s", run_cli("serve", "--help").output, re.M)


def test_an_unknown_command_is_one_error_line_naming_the_closest_command():
    result = run_cli("simlar", "cover.jpg")
    line = one_line_error(result, "simlar", "coversearch similar")
    assert result.exit_code == 2 and "Usage" not in result.output, line
    one_line_error(run_cli("index", "buildd"), "buildd", "coversearch index build")
    # However far off the word is, a closest command is named.
    assert re.search(r"did you mean 'coversearch \w+'", one_line_error(run_cli("frobnicate")))


def test_an_unknown_option_is_one_error_line_naming_the_closest_option():
    one_line_error(run_cli("similar", "cover.jpg", "--topp", "3"), "--topp", "coversearch similar", "--top?")
    one_line_error(run_cli("index", "build", "--feture", "hsv"), "--feture", "--feature?")
    one_line_error(run_cli("--bogus", "stats"), "--bogus", "'coversearch --help'")
    # Values that do not parse are one line too, naming the command whose help to read.
    one_line_error(run_cli("similar", "-k", "many", "cover.jpg"), "'-k'", "coversearch similar --help")
    one_line_error(run_cli("stats", "--json=yes"), "--json", "coversearch stats --help")


def test_no_arguments_still_shows_the_help():
    result = run_cli()
    assert "Usage:" in result.output and "similar" in result.output


def test_version_is_the_packages_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"coversearch {project['version']}"


def test_help_and_version_load_no_heavy_library():
    """`coversearch --help` imports only typer and the CLI's own table: command modules load on first use."""
    code = ("import sys; from coversearch.cli.main import app\n"
            "for argv in (['--help'], ['--version']):\n"
            "    try: app(argv, prog_name='coversearch')\n"
            "    except SystemExit as e: assert e.code == 0, e.code\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
            "print(sorted(m for m in sys.modules if m.startswith('coversearch.cli.') and m.endswith('_cmd')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    heavy, modules = done.stdout.strip().splitlines()[-2:]
    assert heavy == "[]", heavy
    assert modules == "[]", modules
    assert "similar" in done.stdout and "db" in done.stdout


def test_a_command_loads_its_module_and_runs():
    result = run_cli("--db", "/nonexistent/store.duckdb", "stats")
    one_line_error(result, "no store at")


def test_every_registered_command_is_in_the_table_and_every_line_names_its_module():
    from coversearch.cli.commands import COMMANDS
    from coversearch.cli.main import app

    # Every command module of the package, imported: whatever registers on `app` must be listed.
    for path in sorted((REPO / "coversearch" / "cli").glob("*_cmd.py")):
        importlib.import_module(f"coversearch.cli.{path.stem}")
    registered = {}
    for info in app.registered_commands:
        registered[info.name] = info.callback.__module__
    for info in app.registered_groups:
        first = info.typer_instance.registered_commands[0]
        registered[info.name] = first.callback.__module__
    assert set(registered) == set(COMMANDS), set(registered) ^ set(COMMANDS)
    for name, (module, summary) in COMMANDS.items():
        assert registered[name] == module, name
        assert summary.endswith((".", "?")) and len(summary) <= 75, summary


def test_the_readme_lists_every_command():
    from coversearch.cli.commands import COMMANDS

    readme = (REPO / "README.md").read_text()
    rows = set(re.findall(r"^\| `coversearch ([\w-]+)", readme, re.M))
    assert rows == set(COMMANDS), rows ^ set(COMMANDS)
