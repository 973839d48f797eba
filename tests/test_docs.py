"""Docs that cannot go stale: every `coversearch ...` example in README.md and docs/ parses, the quick
start the README shows is docs/quickstart.sh and runs, and no doc names a path of one machine."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO, link_covers, run_cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
QUICKSTART = REPO / "docs" / "quickstart.sh"
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "<"}


def _code_lines(text: str, inline: bool = True) -> list[str]:
    """Lines of fenced code blocks (continuations joined) and, with ``inline``, inline code spans."""
    lines, fenced = [], False
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + raw.strip()
            else:
                lines.append(raw.strip())
    if not inline:
        return lines
    # A code span may run over a line break (Markdown joins the lines with a space).
    spans = re.findall(r"(?<!`)`([^`]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
    return lines + [" ".join(span.split()) for span in spans]


def _examples() -> list[tuple[str, list[str]]]:
    """(where, argv after `coversearch`) for every command example in the docs."""
    found = []
    sources = [(doc.relative_to(REPO).as_posix(), _code_lines(doc.read_text())) for doc in DOCS]
    sources.append(("docs/quickstart.sh", QUICKSTART.read_text().splitlines()))
    for where, lines in sources:
        for line in lines:
            line = line.removeprefix("$ ").strip()
            if not re.match(r"^(\w+=\S+ )*coversearch( |$)", line):
                continue
            words = shlex.split(line, comments=True)
            words = words[words.index("coversearch") + 1:]
            cut = next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))
            found.append((where, words[:cut]))
    return found


def test_the_docs_hold_many_examples_and_every_page_is_linked_from_the_readme():
    examples = _examples()
    assert len(examples) > 80, len(examples)
    readme = (REPO / "README.md").read_text()
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, page.name


def test_every_command_example_in_the_docs_parses():
    failures = []
    for where, argv in _examples():
        # `--version` answers before any help would: run it as written.
        result = run_cli(*argv) if argv == ["--version"] else run_cli(*argv, "--help")
        if result.exit_code != 0 or ("Usage:" not in result.output and argv != ["--version"]):
            failures.append(f"{where}: coversearch {shlex.join(argv)}\n    {(result.stderr or result.output).strip()}")
    assert not failures, "\n".join(failures)


def test_the_readme_shows_the_quick_start_script_as_it_is():
    script = QUICKSTART.read_text()
    body = script.split("set -euo pipefail\n", 1)[1].strip()
    assert body in (REPO / "README.md").read_text()
    assert len(body.splitlines()) <= 15


def test_no_doc_names_a_path_of_one_machine():
    for doc in [*DOCS, REPO / "benchmarks" / "README.md"]:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            assert not re.search(r"(?<![\w.])/(tmp|work|home|root|Users)/", line), f"{doc.name}:{n}: {line}"


def test_the_quick_start_runs_on_fifty_covers(tmp_path, covers5_dir, vgg16_weights):
    """docs/quickstart.sh, exactly as the README shows it, on 10 covers of each genre, up to the page answering."""
    covers = link_covers(covers5_dir, tmp_path / "covers", per_genre=10)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "COVERSEARCH_VGG16_WEIGHTS": str(vgg16_weights), "PORT": "0"}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        # Ctrl-C must reach the page as a user's would: a test run started in the background (nohup,
        # `cmd &` in a script) inherits SIGINT ignored, which bash and Python keep, so the page would
        # never stop and the test would wait for its SIGKILL.
        proc = subprocess.Popen(["bash", str(QUICKSTART), str(covers)], cwd=tmp_path, env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline, url = time.monotonic() + 1800, None
        while url is None:
            assert proc.poll() is None, f"the quick start stopped ({proc.returncode}):\n{err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", err.read_text())
            url = found.group(1) if found else None
            time.sleep(1)
        health = json.load(urllib.request.urlopen(url + "api/health", timeout=60))
        page = urllib.request.urlopen(url, timeout=60).read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    printed = out.read_text()
    distinct = {hashlib.sha256(path.read_bytes()).hexdigest() for path in covers.rglob("*.jpg")}
    assert health["albums"] == len(distinct) and health["default_model"] == "default", health
    assert "vgg16" in health["features"], health
    assert "<html" in page.lower()
    assert "nearest to" in printed, printed[-3000:]
    assert "test accuracy" in printed.lower(), printed[-3000:]


def test_ci_sets_up_and_tests_as_the_readme_says():
    readme = (REPO / "README.md").read_text()
    tests_section = readme.split("## Tests", 1)[1].split("\n## ", 1)[0]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    for line in _code_lines(tests_section, inline=False):
        command = line.split("#", 1)[0].strip()
        if command.startswith("sudo apt-get"):
            assert "chromium chromium-driver" in command and any("chromium chromium-driver" in c for c in ci)
        elif command != '.venv/bin/pytest -m "not slow and not browser"':
            assert command in ci, command


def _benchmark_commands() -> list[tuple[str, list[str]]]:
    """(script, arguments) for every `benchmarks/<script>.py ...` command in the docs and benchmarks/README.md."""
    found = []
    lines = [line for doc in [*DOCS, REPO / "benchmarks" / "README.md"] for line in _code_lines(doc.read_text())]
    for line in lines:
        for match in re.finditer(r"benchmarks/(\w+)\.py((?: +[^`#|;>]+)?)", line):
            found.append((match.group(1), shlex.split(match.group(2), comments=True)))
    return found


def test_every_benchmark_command_names_options_its_script_takes():
    """Each benchmark command in the docs runs as written: its script exists and takes every option given."""
    commands = _benchmark_commands()
    assert len({script for script, _ in commands}) >= 12, commands
    failures = []
    for script, args in commands:
        path = REPO / "benchmarks" / f"{script}.py"
        if not path.exists():
            failures.append(f"no script benchmarks/{script}.py")
            continue
        source = path.read_text()
        accepted = set(re.findall(r"""add_argument\(\s*(?:"[^"]*",\s*)*"(--?[\w-]+)\"""", source))
        accepted |= set(re.findall(r"""add_argument\(\s*"(--?[\w-]+)\"""", source))
        accepted |= {"--help", "-h"}
        for arg in args:
            option = arg.split("=", 1)[0]
            if option.startswith("-") and option not in accepted and not re.fullmatch(r"-\d.*", option):
                failures.append(f"benchmarks/{script}.py does not take {option}: {shlex.join(args)}")
    assert not failures, "\n".join(failures)


def test_every_coversearch_command_in_the_benchmarks_readme_parses():
    text = (REPO / "benchmarks" / "README.md").read_text()
    failures = []
    for line in _code_lines(text):
        line = line.removeprefix("$ ").strip()
        if not line.startswith("coversearch "):
            continue
        words = shlex.split(line, comments=True)[1:]
        words = words[:next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))]
        result = run_cli(*words, "--help")
        if result.exit_code != 0:
            failures.append(f"coversearch {shlex.join(words)}: {result.stderr.strip()}")
    assert not failures, "\n".join(failures)
