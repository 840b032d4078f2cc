"""``dirac auth hash-password | rotate-key | keys`` as an administrator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diracx.core.passwords import verify_password
from diracx.db.migrate import upgrade
from diracx.testing.auth import TEST_SECRET_KEY


def dirac(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")}
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )


def test_hash_password_from_stdin() -> None:
    proc = dirac("auth", "hash-password", "--stdin", stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    hashed = proc.stdout.strip()
    assert hashed.startswith("$argon2id$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horse ", hashed)
    empty = dirac("auth", "hash-password", "--stdin", stdin="\n")
    assert empty.returncode == 1 and "no password" in empty.stderr


@pytest.fixture
def db_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"
    upgrade(url)
    return {"DIRACX_DB_URL": url, "DIRACX_DATA_DIR": str(tmp_path)}


def test_rotate_key_then_list(db_env: dict[str, str]) -> None:
    env = {**db_env, "DIRACX_SECRET_KEY": TEST_SECRET_KEY}
    first = dirac("auth", "rotate-key", env=env)
    assert first.returncode == 0, first.stderr
    assert "new signing key:" in first.stdout and "published keys:  1" in first.stdout
    second = dirac("auth", "rotate-key", env=env)
    assert "published keys:  2" in second.stdout  # the first one still verifies
    listing = dirac("auth", "keys", env=db_env)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("verifies") and lines[1].endswith("signs")


def test_rotate_key_needs_the_secret_key_and_a_database(
    db_env: dict[str, str], tmp_path: Path
) -> None:
    proc = dirac("auth", "rotate-key", env=db_env)
    assert proc.returncode == 1 and "DIRACX_SECRET_KEY is not set" in proc.stderr
    empty = {
        "DIRACX_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        "DIRACX_SECRET_KEY": TEST_SECRET_KEY,
    }
    proc = dirac("auth", "rotate-key", env=empty)
    assert proc.returncode == 1 and "dirac db upgrade" in proc.stderr
    assert "Traceback" not in proc.stderr
