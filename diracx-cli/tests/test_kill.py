"""``dirac jobs kill`` and ``dirac pipelines kill`` as a user runs them, on a real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from diracx.testing.engine import EngineProcess

from .test_cli import as_json, dirac, no_traceback

pytestmark = pytest.mark.timeout(180)

SLOW = """
from diracx.api import command

slow = command("slow", ["sleep", "{seconds}"])
after = command("after", ["sh", "-c", "cp -r $IN_SLOW $OUT/"], inputs={{"slow": slow}})
targets = [after]
"""


@pytest.fixture
def engine(module_engine: EngineProcess) -> EngineProcess:
    return module_engine


class Running:
    """``dirac run`` of a pipeline whose first stage sleeps, in the background."""

    def __init__(self, tmp_path: Path) -> None:
        self.seconds = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"  # our own build's argv
        path = tmp_path / "slow_pipeline.py"
        path.write_text(textwrap.dedent(SLOW.format(seconds=self.seconds)))
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diracx.cli", "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "pipeline N: 2 stages, ..."
        assert first.startswith("pipeline "), first + self.proc.stderr.read()  # type: ignore[union-attr]
        self.pipeline_id = int(first.split()[1].rstrip(":"))
        self.jobs = self.wait_running()

    def wait_running(self) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            doc = as_json(dirac("pipelines", "show", str(self.pipeline_id), "--json"))
            stages = {s["name"]: s for s in doc["stages"]}
            if stages["slow"]["status"] == "Running":
                return {name: s["job_id"] for name, s in stages.items()}
            time.sleep(0.1)
        raise AssertionError("the slow stage never ran")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def running(engine: EngineProcess, tmp_path: Path):
    run = Running(tmp_path)
    yield run
    run.close()


def test_jobs_kill(running: Running) -> None:
    slow, after = running.jobs["slow"], running.jobs["after"]
    proc = dirac("jobs", "kill", str(slow))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"job {slow} killed; the jobs that needed it failed: {after}"

    code, _, err = running.finish()  # dirac run ends at once, and says why
    assert code == 1
    assert "Killed by local" in err and "Input 'slow' was killed" in err
    job = as_json(dirac("jobs", "show", str(slow), "--json"))
    assert job["status"] == "Killed"

    again = dirac("jobs", "kill", str(slow))
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"error: job {slow} already ended (Killed: Killed by local): nothing to kill"
    )
    no_traceback(again)


def test_pipelines_kill(running: Running) -> None:
    pid = running.pipeline_id
    proc = dirac("pipelines", "kill", str(pid))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"pipeline {pid} killed: 2 jobs killed"
    code, _, err = running.finish()
    assert code == 1 and f"Pipeline {pid} killed by local" in err
    doc = as_json(dirac("pipelines", "show", str(pid), "--json"))
    assert doc["status"] == "Failed" and doc["counts"] == {"Killed": 2}

    again = dirac("pipelines", "kill", str(pid))
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: pipeline {pid} has no live job to kill (it is Failed)"
    no_traceback(again)


def test_kill_several_jobs_reports_each(running: Running) -> None:
    slow = running.jobs["slow"]
    proc = dirac("jobs", "kill", "999999", str(slow))
    assert proc.returncode == 1  # one could not be killed
    assert "error: job 999999 does not exist" in proc.stderr
    assert f"job {slow} killed" in proc.stdout
    no_traceback(proc)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["jobs", "kill", "999999"], 1, "error: job 999999 does not exist"),
        (["pipelines", "kill", "999999"], 1, "error: pipeline 999999 does not exist"),
        (["jobs", "kill", "abc"], 2, "'abc' is not a valid int"),
        (["jobs", "kill"], 2, "Missing argument"),
        (["pipelines", "kill", "0"], 1, "greater than or equal to 1"),
    ],
)
def test_kill_bad_ids(engine: EngineProcess, args: list[str], code: int, message: str) -> None:
    proc = dirac(*args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    no_traceback(proc)
