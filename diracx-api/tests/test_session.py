"""Sessions end to end: a real DiracX, real builds, the sync and async APIs.

One DiracX serves the whole module (``module_service``): the embedded engine, then
the distributed service (PostgreSQL, Redis, S3, an API server and three worker
processes), so every test here runs on both. Every test gives its stages a config
of its own (a fresh ``salt``), so that what one test built is never a cache hit
for another.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from diracx.api import (
    PipelineFailedError,
    PipelineResult,
    Progress,
    Stage,
    aconnect,
    command,
    connect,
    host_dir,
)
from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineFactory, EngineProcess, read_engine_file

pytestmark = pytest.mark.timeout(180)
Service = EngineProcess | DistributedService
# For the tests of the embedded engine itself (engine.json, starting on demand).
embedded_only = pytest.mark.parametrize("module_service", ["embedded"], indirect=True)

SECRET_NAME = "MY_CLOUD_SECRET_TOKEN"
SECRET_VALUE = f"hunter2-{uuid.uuid4().hex}"

# The python stages, in a module of their own: the worker imports it from its source.
DEFS = '''
"""Python stages of test_session.py (shipped to the worker as their source)."""

import json
import os
from pathlib import Path

from diracx.api import stage


@stage
def words(text, out, salt="", upper=False):
    """Split the text of the input into one word per line."""
    found = (Path(text) / "text.txt").read_text().split()
    if upper:
        found = [w.upper() for w in found]
    (Path(out) / "words.txt").write_text("\\n".join(found) + "\\n")
    (Path(out) / "sub").mkdir()
    (Path(out) / "sub" / "count.txt").write_text(str(len(found)))
    return {"count": len(found), "salt": salt}


@stage
def explode(out, salt=""):
    print("about to fail")
    raise ValueError(f"no luck with {salt}")


@stage
def environment(out, salt=""):
    """What a python build sees of its environment."""
    (Path(out) / "env.json").write_text(json.dumps(dict(os.environ)))
    return sorted(os.environ)
'''


@pytest.fixture(scope="module")
def engine_env() -> dict[str, str]:
    """The engine and its worker hold a secret; builds must not see it."""
    return {SECRET_NAME: SECRET_VALUE}


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    path = tmp_path_factory.mktemp("defs") / "session_stages.py"
    path.write_text(textwrap.dedent(DEFS))
    spec = importlib.util.spec_from_file_location("session_stages", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["session_stages"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("session_stages", None)


@pytest.fixture
def engine(module_service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    """The module's DiracX, with the secret also in this process's environment."""
    monkeypatch.setenv(SECRET_NAME, SECRET_VALUE)
    return module_service


@pytest.fixture
def salt() -> str:
    return uuid.uuid4().hex


def sh(name: str, script: str, salt: str, **kwargs: Any) -> Stage:
    """A command stage running *script* with sh, made unique to the test by *salt*."""
    return command(name, ["sh", "-c", script], config={"salt": salt}, **kwargs)


def db_counts(engine: Service) -> dict[str, int]:
    """Rows of the service's database, read directly (SQLite file or PostgreSQL)."""
    tables = ("pipelines", "jobs", "realizations", "derivations")
    if isinstance(engine, DistributedService):
        return engine.row_counts(tables)
    with sqlite3.connect(engine.data_dir / "diracx.db") as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def names(stages: Any) -> set[str]:
    return {s.name for s in stages}


class Recorder(Progress):
    """Keeps what a session reports."""

    def __init__(self) -> None:
        self.uploads: list[tuple[int, int]] = []
        self.events: list[Any] = []

    def uploading(self, blobs: int, size: int) -> None:
        self.uploads.append((blobs, size))

    def event(self, event: Any) -> None:
        self.events.append(event)


def diamond(defs: ModuleType, salt: str, *, upper: bool = False) -> dict[str, Stage]:
    """text -> words (python) -> report <- side; and an unrelated stage."""
    text = sh("text", "printf 'hello brave new world\\n' > $OUT/text.txt", salt)
    words = defs.words(text=text, salt=salt, upper=upper)
    side = sh("side", "echo side > $OUT/side.txt", salt)
    report = sh(
        "report",
        'set -e; cat "$IN_WORDS/words.txt" "$IN_SIDE/side.txt" > $OUT/report.txt; '
        'wc -l < "$IN_WORDS/words.txt" > $OUT/lines',
        salt,
        inputs={"words": words, "side": side},
    )
    lonely = sh("lonely", "echo alone > $OUT/x", salt)
    return {"text": text, "words": words, "side": side, "report": report, "lonely": lonely}


# --------------------------------------------------------------------------- realize and read


def test_python_and_command_stages_realize_and_read(
    engine: Service, defs: ModuleType, salt: str, tmp_path: Path
) -> None:
    stages = diamond(defs, salt)
    with connect() as s:
        got = s.realize({"words": stages["words"], "report": stages["report"]})
        words, report = got["words"], got["report"]
        assert words.name == "words" and report.name == "report"
        assert words.files() == ["result.json", "sub/count.txt", "words.txt"]
        assert words.read_text("words.txt") == "hello\nbrave\nnew\nworld\n"
        assert words.read_bytes("sub/count.txt") == b"4"
        assert words.result() == {"count": 4, "salt": salt}
        assert report.read_text("lines").strip() == "4"
        assert report.read_text("report.txt") == "hello\nbrave\nnew\nworld\nside\n"
        with pytest.raises(FileNotFoundError, match=r"no file 'nope\.txt'"):
            words.read_text("nope.txt")

        dest = words.download(tmp_path / "download")
        assert (dest / "words.txt").read_text() == "hello\nbrave\nnew\nworld\n"
        assert (dest / "sub" / "count.txt").read_text() == "4"
        (dest / "words.txt").write_text("mine now")  # downloads are writable copies

        again = s.realization(words.rref)
        assert (again.rref, again.dref, again.output) == (words.rref, words.dref, words.output)
        assert again.result() == {"count": 4, "salt": salt}

        # A realization feeds a new pipeline.
        shout = sh(
            "shout",
            'tr a-z A-Z < "$IN_PREV/words.txt" > $OUT/shout.txt',
            salt,
            inputs={"prev": words},
        )
        assert shout.inputs["prev"] == words.as_input()
        loud = s.realize(shout)
        assert loud.read_text("shout.txt") == "HELLO\nBRAVE\nNEW\nWORLD\n"
        # ... and its context names what it was built from: a tree, not a derivation.
        assert loud.dref != words.dref


def test_second_realize_builds_nothing(engine: Service, defs: ModuleType, salt: str) -> None:
    stages = diamond(defs, salt)
    with connect() as s:
        _, first = s.run(stages)
        assert first.ok
        assert names(first.built()) == set(stages) and first.cached() == []
        before = db_counts(engine)

        _, second = s.run(stages)
        assert second.ok
        assert second.built() == [] and second.failed() == []
        assert names(second.cached()) == set(stages)
        assert all(st.job_id is None for st in second.stages)
        assert {st.rref for st in second.stages} == {st.rref for st in first.stages}
        after = db_counts(engine)
        assert after["jobs"] == before["jobs"]  # no job was created
        assert after["realizations"] == before["realizations"]
        assert after["pipelines"] == before["pipelines"] + 1
        assert second.summary()["cached"] == sorted(stages)

        # realize() hands back the same results without building.
        realized = s.realize(stages)
        assert {k: r.rref for k, r in realized.items()} == {st.name: st.rref for st in first.stages}
        assert db_counts(engine)["jobs"] == before["jobs"]


def test_changing_one_config_rebuilds_that_stage_and_its_dependents_only(
    engine: Service, defs: ModuleType, salt: str
) -> None:
    """Must show 2."""
    with connect() as s:
        _, first = s.run(diamond(defs, salt))
        assert names(first.built()) == {"text", "words", "side", "report", "lonely"}

        _, second = s.run(diamond(defs, salt, upper=True))  # only `words` changed
        assert second.ok
        assert names(second.built()) == {"words", "report"}
        assert names(second.cached()) == {"text", "side", "lonely"}
        rrefs = {st.name: st.rref for st in second.stages}
        old = {st.name: st.rref for st in first.stages}
        assert {n for n in rrefs if rrefs[n] != old[n]} == {"words", "report"}
        report = s.realization(rrefs["report"] or "")
        assert report.read_text("report.txt") == "HELLO\nBRAVE\nNEW\nWORLD\nside\n"

        # A leaf: only itself.
        stages = diamond(defs, salt, upper=True)
        stages["lonely"] = sh("lonely", "echo alone > $OUT/x", salt + "-changed")
        _, third = s.run(stages)
        assert names(third.built()) == {"lonely"}
        assert names(third.cached()) == {"text", "words", "side", "report"}

        # Back to the first configuration: everything is still there.
        _, fourth = s.run(diamond(defs, salt))
        assert fourth.built() == []
        assert {st.name: st.rref for st in fourth.stages} == old


def test_host_files_only_missing_blobs_are_uploaded(
    engine: Service, salt: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.txt").write_text(f"a {salt}\n")
    (src / "pkg" / "b.txt").write_text(f"b {salt}\n")
    (src / "pkg" / "c.sh").write_text(f"echo c {salt}\n")
    (src / "pkg" / "c.sh").chmod(0o755)

    def count() -> Stage:
        return sh(
            "count",
            'find "$IN_SRC" -type f | sort | sed "s|$IN_SRC/||" > $OUT/files; '
            'test -x "$IN_SRC/pkg/c.sh" && echo exec >> $OUT/files',
            salt,
            inputs={"src": host_dir(src)},
        )

    with connect() as s:
        progress = Recorder()
        _, first = s.run(count(), progress)
        assert first.ok
        # three files and the tree's manifest
        assert [blobs for blobs, _ in progress.uploads] == [4]
        (result,) = first.stages
        realized = s.realization(result.rref or "")
        assert realized.read_text("files") == "a.txt\npkg/b.txt\npkg/c.sh\nexec\n"

        # Nothing changed: nothing to upload, nothing to build.
        progress = Recorder()
        _, second = s.run(count(), progress)
        assert progress.uploads == [] and second.built() == []

        # One new file: that file and the new manifest only.
        (src / "pkg" / "d.txt").write_text(f"d {salt}\n")
        progress = Recorder()
        _, third = s.run(count(), progress)
        assert [blobs for blobs, _ in progress.uploads] == [2]
        assert names(third.built()) == {"count"}

        # A file whose content the engine already has (a.txt's): only the manifest.
        (src / "copy.txt").write_text(f"a {salt}\n")
        progress = Recorder()
        _, fourth = s.run(count(), progress)
        assert [blobs for blobs, _ in progress.uploads] == [1]
        assert names(fourth.built()) == {"count"}


# --------------------------------------------------------------------------- failures


def test_a_failing_builder_fails_its_job_and_its_dependents(engine: Service, salt: str) -> None:
    bad = sh("bad", "echo first words; echo 'it broke here' >&2; exit 3", salt)
    mid = sh("mid", 'cp -r "$IN_BAD" $OUT/copy', salt, inputs={"bad": bad})
    top = sh("top", 'cp -r "$IN_MID" $OUT/copy', salt, inputs={"mid": mid})
    fine = sh("fine", "echo fine > $OUT/ok", salt)

    with connect() as s:
        with pytest.raises(PipelineFailedError) as caught:
            s.realize([top, fine])
        message = str(caught.value)
        assert "stage bad" in message
        assert "exit code 3" in message
        assert "first words" in message and "it broke here" in message  # the log's tail

        result: PipelineResult = caught.value.result
        assert result.pipeline.status == "Failed"
        assert names(result.failed()) == {"bad", "mid", "top"}
        assert names(result.built()) == {"fine"}
        by_name = {st.name: st for st in result.stages}

        bad_job = s.job(by_name["bad"].job_id or 0)
        assert bad_job.status == "Failed"
        assert "exit code 3" in bad_job.minor_status
        assert bad_job.log is not None
        log = s.job_log(bad_job.id)
        assert "first words\n" in log and "it broke here\n" in log
        assert log.rstrip().endswith("diracx: exit code 3")
        assert [h.status for h in bad_job.history][-1] == "Failed"

        mid_job = s.job(by_name["mid"].job_id or 0)
        assert mid_job.status == "Failed"
        assert mid_job.minor_status == "Input 'bad' failed"
        assert "Running" not in [h.status for h in mid_job.history]  # it never ran
        top_job = s.job(by_name["top"].job_id or 0)
        assert top_job.status == "Failed"
        assert top_job.minor_status == "Input 'mid' failed"
        assert result.failures["mid"].startswith("Input 'bad' failed")


def test_a_failing_python_stage_reports_its_exception(
    engine: Service, defs: ModuleType, salt: str
) -> None:
    with connect() as s:
        with pytest.raises(PipelineFailedError) as caught:
            s.realize(defs.explode(salt=salt))
        message = str(caught.value)
        assert "stage explode" in message
        assert f"ValueError: no luck with {salt}" in message
        (stage_,) = caught.value.result.stages
        log = s.job_log(stage_.job_id or 0)
        assert "about to fail" in log
        assert "Traceback" in log and f"ValueError: no luck with {salt}" in log


def test_builds_do_not_see_the_worker_environment(
    engine: Service, defs: ModuleType, salt: str
) -> None:
    # The secret is really there, in the worker that runs the builds...
    worker = engine.worker_pids()[0]
    worker_env = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    assert f"{SECRET_NAME}={SECRET_VALUE}".encode() in worker_env
    assert os.environ[SECRET_NAME] == SECRET_VALUE  # ... and in this process

    dump = sh("dump-env", "env > $OUT/env.txt", salt, env={"MINE": "given"})
    with connect() as s:
        got = s.realize({"command": dump, "python": defs.environment(salt=salt)})
        command_env = dict(
            line.split("=", 1)
            for line in got["command"].read_text("env.txt").splitlines()
            if "=" in line
        )
        python_env = json.loads(got["python"].read_text("env.json"))
    for env in (command_env, python_env):
        assert SECRET_NAME not in env
        assert not any(SECRET_VALUE in v for v in env.values())
        assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert env["DIRACX_IN_BUILDER"] == "1"
        assert not any(k.startswith("DIRACX_") and k not in ALLOWED for k in env)
    assert command_env["MINE"] == "given"


ALLOWED = {"DIRACX_IN_BUILDER", "DIRACX_CONFIG"}


# --------------------------------------------------------------------------- the engine


@embedded_only
def test_second_connect_reuses_the_engine(engine: EngineProcess) -> None:
    doc = read_engine_file(engine.data_dir)
    assert doc is not None and doc["pid"] == engine.pid
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with connect() as s:
            metadata = s.server_metadata()
        times.append(time.perf_counter() - started)
        assert metadata.version
        doc = read_engine_file(engine.data_dir)
        assert doc is not None and doc["pid"] == engine.pid
    assert engine.alive()
    print(f"connect() to a running engine: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")


LAUNCHER = """
import json, sys
from diracx.api import connect
with connect() as s:
    version = s.server_metadata().version
print(json.dumps({"version": version}))
"""


@pytest.mark.timeout(120)
@embedded_only
def test_concurrent_first_connects_start_one_engine(
    engine_factory: EngineFactory, data_dir: Path, engine: EngineProcess
) -> None:
    """Three programs connect at once to a data directory with no engine: one starts.

    (``engine_factory`` stops the engine they started, after the test.)"""
    assert read_engine_file(data_dir) is None
    env = {k: v for k, v in os.environ.items() if k not in ("DIRACX_URL", "DIRACX_TOKEN")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
        assert json.loads(out)["version"]
    doc = read_engine_file(data_dir)
    assert doc is not None and doc["pid"] != engine.pid
    engines = [
        p for p in _processes() if "diracx.routers" in _cmdline(p) and str(data_dir) in _env(p)
    ]
    assert engines == [doc["pid"]]


def _processes() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _env(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --------------------------------------------------------------------------- async


async def test_async_session(engine: Service, defs: ModuleType, salt: str, tmp_path: Path) -> None:
    stages = diamond(defs, salt)
    async with await aconnect() as s:
        got = await s.realize([stages["words"], stages["lonely"]])
        words, lonely = got
        assert await words.files() == ["result.json", "sub/count.txt", "words.txt"]
        assert await words.read_text("words.txt") == "hello\nbrave\nnew\nworld\n"
        assert await words.result() == {"count": 4, "salt": salt}
        assert await lonely.read_text("x") == "alone\n"
        dest = await words.download(tmp_path / "out")
        assert (dest / "sub" / "count.txt").read_text() == "4"

        follow = sh("follow", 'wc -w < "$IN_PREV/words.txt" > $OUT/n', salt, inputs={"prev": words})
        assert (await (await s.realize(follow)).read_text("n")).strip() == "4"

        jobs_before = db_counts(engine)["jobs"]
        _, again = await s.run([stages["words"], stages["lonely"]])
        assert again.built() == [] and names(again.cached()) == {"text", "words", "lonely"}
        assert db_counts(engine)["jobs"] == jobs_before

        with pytest.raises(PipelineFailedError, match="exit code 7"):
            await s.realize(sh("async-bad", "echo nope; exit 7", salt))
