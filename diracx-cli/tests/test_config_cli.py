"""``dirac config validate FILE`` and ``dirac config show``, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diracx.testing.engine import EngineProcess

pytestmark = pytest.mark.timeout(180)
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "config.example.yaml"


def dirac(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_validate_the_example() -> None:
    done = dirac("config", "validate", str(EXAMPLE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == (
        "valid: 2 VOs, 4 groups, 3 users, 1 identity provider, 1 built-in account, "
        "1 service account"
    )


def test_validate_prints_every_error_with_its_location(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["vos"]["lhcb"]["default_group"] = "nobody"
    doc["vos"]["dteam"]["quotas"]["running_jobs"] = -5
    doc["accounts"]["carol"]["password_hash"] = "plain-text-password"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    lines = path.read_text().splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if text in line)

    done = dirac("config", "validate", str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert "plain-text-password" not in done.stdout + done.stderr
    err = done.stderr
    assert err.splitlines()[0] == f"invalid: {path}"
    assert f"vos.dteam.quotas.running_jobs (line {line_of('running_jobs: -5')}):" in err
    assert f"accounts.carol.password_hash (line {line_of('password_hash')}): not an argon2id" in err
    # the VO-level check of lhcb is reported too (its own fields are valid)
    assert f"vos.lhcb (line {line_of('  lhcb:')}): default_group 'nobody'" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the configuration"),
        ("vos: {lhcb: [\n", "line 2, column 1: not valid YAML"),
        ("", "the document is empty"),
    ],
)
def test_validate_files_that_are_no_configuration(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "site.yaml"
    if content is not None:
        path.write_text(content)
    done = dirac("config", "validate", str(path))
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_show_what_the_service_serves(embedded_engine: EngineProcess) -> None:
    done = dirac("config", "show", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    served = json.loads(done.stdout)
    assert set(served["vos"]) == {"local"}
    assert served["vos"]["local"]["default_group"] == "local_user"
    assert len(served["revision"]) == 64
    as_yaml = dirac("config", "show")
    assert yaml.safe_load(as_yaml.stdout) == served
