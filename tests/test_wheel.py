"""An installed wheel works away from the source tree: its migrations and data files travel with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_a_wheel_installed_in_a_fresh_venv_makes_and_reads_a_store(tmp_path):
    # Build from a copy, so that the build leaves nothing in the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO / "coversearch", src / "coversearch", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True)
    wheel = next((tmp_path / "dist").glob("coversearch-*.whl"))

    # A fresh venv; the dependencies come from this interpreter's site-packages (a plain path, so that
    # an editable install of coversearch there is not picked up), nothing is downloaded.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_coversearch_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)

    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    coversearch = venv / "bin" / "coversearch"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(coversearch), "--db", str(away / "store.duckdb"), *args], cwd=away, env=env,
                              capture_output=True, text=True)

    where = subprocess.run([str(python), "-c", "import coversearch; print(coversearch.__file__)"], cwd=away, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout
    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    stats = run("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    facts = json.loads(stats.stdout)
    assert facts["albums"] == 0 and facts["schema_revision"]
    revision = run("db", "revision", "--json")
    assert revision.returncode == 0, revision.stderr
    assert json.loads(revision.stdout)["revision"] == json.loads(revision.stdout)["latest"] == facts["schema_revision"]
