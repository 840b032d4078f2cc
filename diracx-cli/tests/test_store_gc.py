"""``dirac store pin | unpin | pins | gc`` on a real engine, with real jobs running."""

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

pytestmark = pytest.mark.timeout(300)

STAGES = """
from diracx.api import command

salt = "{salt}"
junk = command("junk", ["sh", "-c", f"echo junk {{salt}} > $OUT/j.txt"])
prep = command("prep", ["sh", "-c", f"echo prep {{salt}} > $OUT/p.txt"])
prep2 = command("prep2", ["sh", "-c", f"echo prep2 {{salt}} > $OUT/q.txt"])
slow = command(
    "slow", ["sh", "-c", "sleep {seconds}; cp -r $IN_PREP/. $OUT/"], inputs={{"prep": prep}}
)
after = command(
    "after",
    ["sh", "-c", "cat $IN_SLOW/p.txt $IN_PREP2/q.txt > $OUT/all.txt"],
    inputs={{"slow": slow, "prep2": prep2}},
)
targets = [{targets}]
"""


@pytest.fixture
def engine(module_engine: EngineProcess) -> EngineProcess:
    return module_engine


def pipeline(tmp_path: Path, salt: str, targets: str, seconds: float = 20) -> Path:
    path = tmp_path / f"p-{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(STAGES.format(salt=salt, targets=targets, seconds=seconds)))
    return path


def run(path: Path) -> dict[str, Any]:
    """``dirac run --json``: the targets' rrefs and outputs by stage name."""
    summary = as_json(dirac("run", str(path), "--json"))
    return summary["targets"]


def gc(*args: str) -> dict[str, Any]:
    return as_json(dirac("store", "gc", "--keep-days", "0", "--grace", "0", "--json", *args))


def blob_exists(engine: EngineProcess, digest: str) -> bool:
    return (engine.data_dir / "store" / "blobs" / digest[:2] / digest[2:]).is_file()


def removed(report: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [r["rref"] for r in report["realizations"]], report["blobs"]


def test_pin_unpin_and_errors(engine: EngineProcess, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    built = run(pipeline(tmp_path, salt, "junk"))
    rref = built["junk"]["rref"]
    proc = dirac("store", "pin", "mine", rref[:10])  # a unique prefix will do
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"pinned mine -> junk {rref}"
    pins = as_json(dirac("store", "pins", "--json"))
    assert [(p["name"], p["rref"], p["stage"]) for p in pins] == [("mine", rref, "junk")]

    # pinned: a collection with no retention at all keeps it and its output
    report = gc()
    assert rref not in removed(report)[0]
    assert blob_exists(engine, built["junk"]["output"])

    for args, message in [
        (("pin", "x", "f" * 64), f"error: realization {'f' * 64} does not exist"),
        (("pin", "bad name", rref), "error: pin name 'bad name' must be"),
        (("unpin", "nope"), "error: there is no pin named 'nope'"),
        (("gc", "--target-size", "lots"), "'lots' is not a size"),
    ]:
        bad = dirac("store", *args)
        assert bad.returncode != 0
        assert message in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        no_traceback(bad)

    proc = dirac("store", "unpin", "mine")
    assert proc.returncode == 0 and f"unpinned mine (was junk {rref})" in proc.stdout
    dry = gc("--dry-run")
    real = gc()
    assert rref in removed(dry)[0] and removed(real) == removed(dry)
    assert not blob_exists(engine, built["junk"]["output"])


class Background:
    """``dirac run`` of a pipeline in the background, until its ``slow`` stage runs."""

    def __init__(self, path: Path) -> None:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diracx.cli", "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "pipeline N: ..."
        assert first.startswith("pipeline "), first + (self.proc.stderr.read() or "")  # type: ignore[union-attr]
        self.pipeline_id = int(first.split()[1].rstrip(":"))

    def stages(self) -> dict[str, Any]:
        doc = as_json(dirac("pipelines", "show", str(self.pipeline_id), "--json"))
        return {s["name"]: s for s in doc["stages"]}

    def wait_running(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stages = self.stages()
            if stages[name]["status"] == "Running":
                return stages
            time.sleep(0.1)
        raise AssertionError(f"{name} never ran")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_gc_while_jobs_run_keeps_what_they_need(engine: EngineProcess, tmp_path: Path) -> None:
    salt = uuid.uuid4().hex
    junk = run(pipeline(tmp_path, salt, "junk"))["junk"]
    inputs = run(pipeline(tmp_path, salt, "prep, prep2"))
    running = Background(pipeline(tmp_path, salt, "after"))
    try:
        stages = running.wait_running("slow")
        # prep is cached and slow's input; prep2 is cached and the input of after, which
        # waits (Checking) for slow. No pin and no retention window protects them.
        assert stages["prep"]["cached"] and stages["prep2"]["cached"]
        assert stages["after"]["status"] == "Checking"
        dry = gc("--dry-run")
        real = gc()
        assert running.stages()["slow"]["status"] == "Running"  # still running meanwhile
        assert removed(real) == removed(dry)
        assert real["freed"] == dry["freed"] > 0
        gone, blobs = removed(real)
        assert junk["rref"] in gone and junk["output"] in blobs
        for needed in (inputs["prep"], inputs["prep2"]):
            assert needed["rref"] not in gone
            assert needed["output"] not in blobs and blob_exists(engine, needed["output"])
        out, err = running.proc.communicate(timeout=120)
        assert running.proc.returncode == 0, out + err
    finally:
        running.close()
    after = running.stages()["after"]
    assert after["status"] == "Done"
    from diracx.api import connect

    with connect() as s:
        text = s.realization(after["rref"]).read_text("all.txt")
    assert text == f"prep {salt}\nprep2 {salt}\n"


def test_gc_target_size_and_human_report(engine: EngineProcess, tmp_path: Path) -> None:
    gc()  # what earlier tests left
    salt = uuid.uuid4().hex
    run(pipeline(tmp_path, salt, "junk"))
    dry = dirac("store", "gc", "--keep-days", "0", "--grace", "0", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would remove realization" in dry.stdout and "(junk, " in dry.stdout
    # a target the store already meets removes nothing
    met = gc("--target-size", "10G")
    assert removed(met) == ([], []) and met["target_met"]
    proc = dirac("store", "gc", "--keep-days", "0", "--grace", "0", "--target-size", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed 1 realizations" in proc.stdout
