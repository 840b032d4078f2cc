"""The engine fixtures start real engines and leave no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diracx.testing.engine import process_alive, read_engine_file

INNER_TESTS = """
import json, os, urllib.request

def record(**kw):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(kw) + "\\n")

def check(engine):
    doc = json.loads((engine.data_dir / "engine.json").read_text())
    assert doc["pid"] == engine.pid and doc["url"] == engine.url
    assert os.environ["DIRACX_DATA_DIR"] == str(engine.data_dir)
    assert "DIRACX_URL" not in os.environ
    with urllib.request.urlopen(engine.url + "/api/health/live") as r:
        assert r.status == 200
    (worker,) = engine.worker_pids()
    return worker

def test_function(embedded_engine):
    worker = check(embedded_engine)
    record(test="function", pid=embedded_engine.pid, worker=worker,
           data_dir=str(embedded_engine.data_dir))

def test_module_a(module_engine):
    record(test="module", pid=module_engine.pid, worker=check(module_engine))

def test_module_b(module_engine):
    record(test="module", pid=module_engine.pid, worker=check(module_engine))

def test_restart_after_kill(engine_factory):
    first = engine_factory.start()
    (worker,) = first.worker_pids()
    first.kill()
    assert not first.alive() and (first.data_dir / "engine.json").exists()
    second = engine_factory.start()
    record(test="restart", pid=second.pid, worker=check(second), old=[first.pid, worker])
"""


@pytest.mark.timeout(180)
def test_engines_are_started_and_stopped(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    record = tmp_path / "record.jsonl"
    env = {**os.environ, "RECORD": str(record), "DIRACX_URL": "http://elsewhere.invalid"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-o", "asyncio_default_fixture_loop_scope=function", "-q",
         str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=170,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r["test"] for r in records] == ["function", "module", "module", "restart"]
    module = [r for r in records if r["test"] == "module"]
    assert module[0]["pid"] == module[1]["pid"]  # one engine for the module
    assert records[0]["pid"] != module[0]["pid"]
    pids = {r["pid"] for r in records} | {r["worker"] for r in records}
    pids |= set(records[3]["old"])
    assert not [p for p in pids if process_alive(p)]  # engines and workers are all gone
    # Stopped properly: the engine removed its engine.json.
    assert read_engine_file(Path(records[0]["data_dir"])) is None
