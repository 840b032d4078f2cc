"""``dirac`` as a user runs it: a real subprocess talking to a real DiracX.

One DiracX serves the module (``module_service``): the embedded engine (found by
``dirac`` through ``$DIRACX_DATA_DIR``), then the distributed service (PostgreSQL,
Redis, S3, an API server and three workers, found through ``$DIRACX_URL``), so every
test runs on both. Each test writes its own pipeline file with a fresh salt, so
that no test finds what another one built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from diracx.core.version import __version__
from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess, read_engine_file

pytestmark = pytest.mark.timeout(180)
Service = EngineProcess | DistributedService
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "release_pipeline" / "run_demo.py"

PIPELINE = '''
"""A small pipeline: a command stage, a python stage that reads it, a command that joins."""

from pathlib import Path

from diracx.api import command, stage

SALT = {salt!r}

numbers = command(
    "numbers", ["sh", "-c", "seq 1 10 > $OUT/numbers.txt"], config={{"salt": SALT}}
)


@stage
def total(numbers, out, salt=SALT, scale=1):
    values = [int(x) for x in (Path(numbers) / "numbers.txt").read_text().split()]
    (Path(out) / "total.txt").write_text(str(scale * sum(values)))
    return {{"total": scale * sum(values)}}


report = command(
    "report",
    ["sh", "-c", 'echo "total: $(cat $IN_TOTAL/total.txt)" > $OUT/report.txt'],
    inputs={{"total": total(numbers=numbers, scale={scale})}},
    config={{"salt": SALT}},
)

targets = [report]
'''

FAILING = """
from diracx.api import command

bad = command(
    "bad",
    ["sh", "-c", "echo compiling; echo 'error: widget not found' >&2; exit 4"],
    config={{"salt": {salt!r}}},
)
after = command("after", ["sh", "-c", "cp -r $IN_BAD $OUT/"], inputs={{"bad": bad}})
targets = [after]
"""


@pytest.fixture
def engine(module_service: Service) -> Service:
    return module_service


def dirac(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dirac ARGS`` (``python -m diracx.cli``) in a subprocess."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def pipeline_file(tmp_path: Path, *, scale: int = 1, salt: str | None = None) -> Path:
    path = tmp_path / "my_pipeline.py"
    path.write_text(textwrap.dedent(PIPELINE.format(salt=salt or uuid.uuid4().hex, scale=scale)))
    return path


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- dirac run


def test_run_builds_then_everything_is_cached(engine: Service, tmp_path: Path) -> None:
    path = pipeline_file(tmp_path)
    first = dirac("run", str(path))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 built, 0 cached, 0 failed" in first.stdout
    for name in ("numbers", "total", "report"):
        assert name in first.stdout
    no_traceback(first)

    second = as_json(dirac("run", "--json", str(path)))
    assert second["status"] == "Done"
    assert second["built"] == [] and second["failed"] == []
    assert second["cached"] == ["numbers", "report", "total"]
    (target,) = second["targets"].values()
    assert len(target["rref"]) == 64 and len(target["output"]) == 64

    third = dirac("run", str(path))
    assert third.returncode == 0
    assert "0 built, 3 cached, 0 failed" in third.stdout


def test_run_json_summary(engine: Service, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    path = pipeline_file(tmp_path, salt=salt)
    first = as_json(dirac("run", "--json", str(path)))
    assert first["status"] == "Done"
    assert first["built"] == ["numbers", "report", "total"]
    assert first["cached"] == [] and first["failed"] == [] and first["failures"] == {}
    assert set(first["targets"]) == {"report"}
    assert isinstance(first["pipeline_id"], int)

    # One config changed: that stage and its dependent are built again, nothing else.
    changed = as_json(dirac("run", "--json", str(pipeline_file(tmp_path, salt=salt, scale=2))))
    assert changed["built"] == ["report", "total"]
    assert changed["cached"] == ["numbers"]


def test_run_failing_pipeline(engine: Service, tmp_path: Path) -> None:
    path = tmp_path / "broken_pipeline.py"
    path.write_text(textwrap.dedent(FAILING.format(salt=uuid.uuid4().hex)))
    proc = dirac("run", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 built, 0 cached, 2 failed" in proc.stdout
    assert "stage bad failed" in proc.stderr
    assert "exit code 4" in proc.stderr
    assert "compiling" in proc.stderr and "error: widget not found" in proc.stderr  # log tail
    assert "Input 'bad' failed" in proc.stderr
    no_traceback(proc)

    summary = json.loads(dirac("run", "--json", str(path)).stdout)
    assert summary["status"] == "Failed"
    assert summary["failed"] == ["after", "bad"]
    assert "error: widget not found" in summary["failures"]["bad"]


def test_run_file_without_targets(engine: Service, tmp_path: Path) -> None:
    path = tmp_path / "no_targets.py"
    path.write_text("from diracx.api import command\n\nx = command('x', ['true'])\n")
    proc = dirac("run", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())  # as one line, however the console wrapped it
    assert "sets no `targets`" in message
    assert "targets = [release]" in message  # printed as written, not eaten as markup
    no_traceback(proc)


def test_run_missing_file(engine: Service, tmp_path: Path) -> None:
    proc = dirac("run", str(tmp_path / "nowhere.py"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no such file" in proc.stderr
    assert "nowhere.py" in proc.stderr
    no_traceback(proc)


# --------------------------------------------------------------------------- inspecting


def test_pipelines_and_jobs_show(engine: Service, tmp_path: Path) -> None:
    path = pipeline_file(tmp_path)
    summary = as_json(dirac("run", "--json", str(path)))
    pipeline_id = summary["pipeline_id"]

    pipeline = as_json(dirac("pipelines", "show", str(pipeline_id), "--json"))
    assert pipeline["id"] == pipeline_id and pipeline["status"] == "Done"
    stages = {s["name"]: s for s in pipeline["stages"]}
    assert set(stages) == {"numbers", "total", "report"}
    assert all(not s["cached"] and s["status"] == "Done" for s in stages.values())

    human = dirac("pipelines", "show", str(pipeline_id))
    assert human.returncode == 0, human.stderr
    assert f"pipeline {pipeline_id}" in human.stdout and "Done" in human.stdout
    for name in stages:
        assert name in human.stdout

    job_id = stages["total"]["job_id"]
    job = as_json(dirac("jobs", "show", str(job_id), "--json"))
    assert job["id"] == job_id and job["name"] == "total" and job["status"] == "Done"
    assert job["pipeline_id"] == pipeline_id
    assert [h["status"] for h in job["history"]][-1] == "Done"
    assert "Running" in [h["status"] for h in job["history"]]
    assert job["rref"] == stages["total"]["rref"]

    human = dirac("jobs", "show", str(job_id), "--log")
    assert human.returncode == 0, human.stderr
    assert f"job {job_id}" in human.stdout and "total" in human.stdout
    for status in ("Waiting", "Running", "Done"):
        assert status in human.stdout

    # A cached re-run: every stage cached, no job.
    rerun = as_json(dirac("run", "--json", str(path)))
    cached = as_json(dirac("pipelines", "show", str(rerun["pipeline_id"]), "--json"))
    assert rerun["pipeline_id"] != pipeline_id
    assert len(cached["stages"]) == 3
    assert all(s["cached"] for s in cached["stages"])


@pytest.mark.parametrize("what", ["jobs", "pipelines"])
def test_show_unknown_id(engine: Service, what: str) -> None:
    proc = dirac(what, "show", "999999")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "999999" in proc.stderr
    assert "does not exist" in proc.stderr or "not found" in proc.stderr.lower()
    no_traceback(proc)


def test_version(engine: Service) -> None:
    proc = dirac("version")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = read_engine_file(engine.data_dir) if isinstance(engine, EngineProcess) else None
    server_version = doc["version"] if doc else __version__  # a separate server: the same install
    assert f"server {server_version}" in proc.stdout
    for part in ("diracx-api", "diracx-cli", "diracx-client", "diracx-core"):
        assert part in proc.stdout

    data = as_json(dirac("version", "--json"))
    assert data["server"]["version"] == server_version
    assert set(data["client"]) >= {"diracx-api", "diracx-cli", "diracx-client", "diracx-core"}
    assert len(set(data["client"].values())) == 1  # lockstep versions
    if doc is not None:
        assert doc["pid"] == engine.pid  # the CLI used the running engine, it did not start one


def test_ctrl_c_detaches_and_says_where_the_pipeline_goes_on(
    engine: Service, tmp_path: Path
) -> None:
    import signal
    import time

    path = tmp_path / "sleepy.py"
    path.write_text(
        "from diracx.api import command\n"
        f"targets = [command('sleepy', ['sleep', '3'], config={{'salt': {uuid.uuid4().hex!r}}})]\n"
    )
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "diracx.cli", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "pipeline N: 1 stages, ..." once submitted
    assert line.startswith("pipeline ")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    pipeline_id = line.split()[1].rstrip(":")
    assert f"dirac pipelines show {pipeline_id}" in " ".join(err.split())
    assert "Traceback" not in err


def test_a_missing_host_directory_is_a_message_not_a_traceback(
    engine: Service, tmp_path: Path
) -> None:
    path = tmp_path / "missing.py"
    path.write_text(
        "from diracx.api import command, host_dir\n"
        "targets = [command('x', ['true'], inputs={'src': host_dir('/no/such/dir')})]\n"
    )
    result = dirac("run", str(path))
    assert result.returncode == 1
    assert "no such directory: /no/such/dir" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(240)
def test_release_example_builds_then_reuses_everything(engine: Service) -> None:
    """``make demo``: examples/release_pipeline, run twice; the second run builds nothing."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLE.parent,
        timeout=200,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "second run: 0 built" in proc.stdout and "0 failed" in proc.stdout
    assert "RELEASE.txt" in proc.stdout
    no_traceback(proc)
