"""``dirac lollygag`` as a user runs it: a real ``dirac`` subprocess and a real embedded
engine, which serves gubbins's router because gubbins is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diracx.testing.engine import EngineProcess

pytestmark = pytest.mark.timeout(180)


def dirac(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_dirac_has_the_lollygag_command() -> None:
    help_text = dirac("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "lollygag" in help_text.stdout
    sub = dirac("lollygag", "--help")
    assert "list" in sub.stdout and "add" in sub.stdout


def test_add_and_list_on_the_embedded_engine(embedded_engine: EngineProcess) -> None:
    added = dirac("lollygag", "add", "teapot")
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.strip() == "teapot: added (by local)"
    again = dirac("lollygag", "add", "teapot")
    assert again.stdout.strip() == "teapot: already there (by local)"

    listed = dirac("lollygag", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert found["vo"] == "local" and found["default_group"] == "local_user"
    assert [g["name"] for g in found["lollygags"]] == ["teapot"]
    table = dirac("lollygag", "list")
    assert "teapot  by local" in table.stdout

    bad = dirac("lollygag", "add", "no spaces")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.stdout + bad.stderr
