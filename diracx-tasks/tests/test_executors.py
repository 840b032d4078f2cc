"""The process and python executors, with real subprocesses and real files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from diracx.core.canonical import canonical_json
from diracx.core.derivation import Derivation
from diracx.tasks.executors import pyrunner
from diracx.tasks.executors.base import (
    BuildRequest,
    BuildResult,
    Executor,
    build_env,
    get_executor,
    load_executors,
    prepare_scratch,
    remove_scratch,
)
from diracx.tasks.executors.process import ProcessExecutor
from diracx.tasks.executors.python import PythonExecutor

# Any valid digests: the executors never look at them, only at the materialized dirs.
TREE = hashlib.sha256(b"a tree").hexdigest()
DRV = hashlib.sha256(b"a derivation").hexdigest()
SOURCE = hashlib.sha256(b"a source tree").hexdigest()

SECRET_NAME = "DIRACX_TEST_SECRET_TOKEN"
SECRET_VALUE = "hunter2-do-not-leak"


def process_drv(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    workdir: str | None = None,
    inputs: tuple[str, ...] = (),
    config: dict[str, Any] | None = None,
) -> Derivation:
    builder: dict[str, Any] = {"executor": "process", "argv": argv}
    if env is not None:
        builder["env"] = env
    if timeout is not None:
        builder["timeout"] = timeout
    if workdir is not None:
        builder["workdir"] = workdir
    return Derivation(
        name="test-stage",
        builder=builder,
        config=config or {},
        inputs={name: {"tree": TREE} if i % 2 else {"drv": DRV} for i, name in enumerate(inputs)},
    )


def python_drv(
    function: str,
    *,
    config: dict[str, Any] | None = None,
    inputs: tuple[str, ...] = (),
    timeout: float | None = None,
) -> Derivation:
    builder: dict[str, Any] = {"executor": "python", "function": function, "source": SOURCE}
    if timeout is not None:
        builder["timeout"] = timeout
    return Derivation(
        name="py-stage",
        builder=builder,
        config=config or {},
        inputs={name: {"tree": TREE} for name in inputs},
    )


def make_request(
    tmp_path: Path,
    drv: Derivation,
    *,
    inputs: dict[str, dict[str, str]] | None = None,
    source: dict[str, str] | None = None,
) -> BuildRequest:
    """Do what the worker does: prepare the scratch, materialize inputs and source."""
    scratch = tmp_path / "scratch"
    tmp_path.mkdir(parents=True, exist_ok=True)
    prepare_scratch(scratch, drv)
    for name, files in (inputs or {}).items():
        root = scratch / "inputs" / name
        root.mkdir()
        for rel, text in files.items():
            (root / rel).write_text(text)
            os.chmod(root / rel, 0o444)
        os.chmod(root, 0o555)
    if source is not None:
        (scratch / "source").mkdir()
        for rel, text in source.items():
            (scratch / "source" / rel).write_text(textwrap.dedent(text))
    return BuildRequest(job_id=1, dref=drv.dref, derivation=drv, scratch=scratch)


def log_of(request: BuildRequest) -> str:
    return (request.scratch / "log").read_text()


def process_gone(pid: int, within: float = 3.0) -> bool:
    """True once *pid* no longer runs (absent, or a zombie waiting for its reaper)."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# -- registry and scratch --------------------------------------------------------------


def test_load_executors_from_entry_points() -> None:
    executors = load_executors()
    assert isinstance(executors["process"], ProcessExecutor)
    assert isinstance(executors["python"], PythonExecutor)
    assert all(isinstance(e, Executor) and e.name == name for name, e in executors.items())
    assert load_executors() is executors  # instantiated once
    assert get_executor("process") is executors["process"]


def test_unknown_executor_names_the_known_ones() -> None:
    from diracx.core.exceptions import UnknownExecutorError

    with pytest.raises(UnknownExecutorError, match=r"'sandbox'.*oci, process, python"):
        get_executor("sandbox")


def test_prepare_scratch(tmp_path: Path) -> None:
    drv = process_drv(["true"], config={"b": [1, 2], "a": "é"})
    prepare_scratch(tmp_path / "s", drv)
    for sub in ("inputs", "out", "work", "tmp"):
        assert (tmp_path / "s" / sub).is_dir()
    assert not any((tmp_path / "s" / "out").iterdir())
    assert (tmp_path / "s" / "config.json").read_bytes() == canonical_json(drv.config)
    with pytest.raises(FileExistsError):  # a scratch directory is always new
        prepare_scratch(tmp_path / "s", drv)


def test_remove_scratch_empty_skeleton_and_full_tree(tmp_path: Path) -> None:
    drv = process_drv(["true"])
    empty = tmp_path / "empty"
    prepare_scratch(empty, drv)
    (empty / "log").write_text("")
    remove_scratch(empty)
    assert not empty.exists()
    full = tmp_path / "full"
    prepare_scratch(full, drv)
    (full / "out" / "sub").mkdir()
    (full / "work" / "left.txt").write_text("x")
    (full / "inputs" / "src").mkdir()
    (full / "inputs" / "src" / "f").write_text("y")
    os.chmod(full / "inputs" / "src" / "f", 0o444)
    os.chmod(full / "inputs" / "src", 0o555)
    remove_scratch(full)
    assert not full.exists()
    remove_scratch(full)  # already gone: nothing to do


# -- process executor ------------------------------------------------------------------


async def test_process_writes_outputs_from_inputs(tmp_path: Path) -> None:
    script = 'cat "$IN_SRC/hello.txt" > "$OUT/copy.txt"; pwd > "$OUT/cwd"; echo built'
    drv = process_drv(["sh", "-c", script], inputs=("src",))
    req = make_request(tmp_path, drv, inputs={"src": {"hello.txt": "hello\n"}})
    result = await ProcessExecutor().build(req)
    assert result == BuildResult(True, 0, "", result.duration)
    assert 0 < result.duration < 10
    assert (req.scratch / "out" / "copy.txt").read_text() == "hello\n"
    assert (req.scratch / "out" / "cwd").read_text().strip() == str(req.scratch / "work")
    assert log_of(req) == "built\n"


async def test_process_environment_is_scrubbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET_VALUE)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/secret")
    drv = process_drv(["env"], env={"GREETING": "bonjour"}, inputs=("src", "data_set"))
    req = make_request(tmp_path, drv, inputs={"src": {}, "data_set": {}})
    result = await ProcessExecutor().build(req)
    assert result.ok, log_of(req)
    log = log_of(req)
    assert SECRET_VALUE not in log and SECRET_NAME not in log
    env = dict(line.split("=", 1) for line in log.splitlines())
    s = req.scratch
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(s / "work"),
        "TMPDIR": str(s / "tmp"),
        "LANG": "C.UTF-8",
        "OUT": str(s / "out"),
        "INPUTS": str(s / "inputs"),
        "IN_SRC": str(s / "inputs" / "src"),
        "IN_DATA_SET": str(s / "inputs" / "data_set"),
        "DIRACX_CONFIG": str(s / "config.json"),
        "DIRACX_IN_BUILDER": "1",
        "GREETING": "bonjour",
    }
    assert build_env(req) == env


async def test_process_workdir(tmp_path: Path) -> None:
    drv = process_drv(["sh", "-c", 'ls > "$OUT/listing"'], workdir="inputs/src", inputs=("src",))
    req = make_request(tmp_path, drv, inputs={"src": {"a.txt": "", "b.txt": ""}})
    result = await ProcessExecutor().build(req)
    assert result.ok, log_of(req)
    assert (req.scratch / "out" / "listing").read_text().split() == ["a.txt", "b.txt"]


async def test_process_missing_workdir(tmp_path: Path) -> None:
    drv = process_drv(["true"], workdir="inputs/nowhere")
    req = make_request(tmp_path, drv)
    result = await ProcessExecutor().build(req)
    assert not result.ok and result.returncode is None
    assert result.reason == f"working directory not found: {req.scratch / 'inputs' / 'nowhere'}"


async def test_process_exit_code(tmp_path: Path) -> None:
    drv = process_drv(["sh", "-c", "echo working; echo oops >&2; exit 3"])
    req = make_request(tmp_path, drv)
    result = await ProcessExecutor().build(req)
    assert (result.ok, result.returncode, result.reason) == (False, 3, "exit code 3")
    assert log_of(req) == "working\noops\ndiracx: exit code 3\n"


async def test_failure_line_starts_on_its_own_line(tmp_path: Path) -> None:
    drv = process_drv(["sh", "-c", "printf partial; exit 1"])
    req = make_request(tmp_path, drv)
    result = await ProcessExecutor().build(req)
    assert result.reason == "exit code 1"
    assert log_of(req) == "partial\ndiracx: exit code 1\n"


async def test_process_command_not_found(tmp_path: Path) -> None:
    drv = process_drv(["no-such-command-diracx", "arg"])
    req = make_request(tmp_path, drv)
    result = await ProcessExecutor().build(req)
    assert (result.ok, result.returncode) == (False, None)
    assert result.reason == "command not found: no-such-command-diracx"
    assert log_of(req) == "diracx: command not found: no-such-command-diracx\n"


async def test_command_is_looked_up_on_the_scrubbed_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "worker-only-tool"
    tool.write_text("#!/bin/sh\necho should not run\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    req = make_request(tmp_path, process_drv(["worker-only-tool"]))
    result = await ProcessExecutor().build(req)
    assert result.reason == "command not found: worker-only-tool"


async def test_process_command_not_executable(tmp_path: Path) -> None:
    drv = process_drv(["./run.sh"], workdir="inputs/src", inputs=("src",))
    req = make_request(tmp_path, drv, inputs={"src": {"run.sh": "#!/bin/sh\necho ran\n"}})
    result = await ProcessExecutor().build(req)
    assert result.reason == "permission denied: ./run.sh"  # not executable


async def test_timeout_kills_grandchildren_quickly(tmp_path: Path) -> None:
    # The background sleep keeps the log open and outlives its parent shell.
    script = 'sleep 100 & echo $! > "$OUT/pid"; sleep 100'
    drv = process_drv(["sh", "-c", script], timeout=1)
    req = make_request(tmp_path, drv)
    start = time.monotonic()
    result = await ProcessExecutor().build(req)
    elapsed = time.monotonic() - start
    assert (result.ok, result.returncode, result.reason) == (False, None, "timed out after 1 s")
    assert 0.9 < elapsed < 4, elapsed
    assert 0.9 < result.duration < 4
    grandchild = int((req.scratch / "out" / "pid").read_text())
    assert process_gone(grandchild)
    assert log_of(req).endswith("diracx: timed out after 1 s\n")


async def test_background_processes_do_not_outlive_the_build(tmp_path: Path) -> None:
    drv = process_drv(["sh", "-c", 'sleep 100 & echo $! > "$OUT/pid"'])
    req = make_request(tmp_path, drv)
    result = await ProcessExecutor().build(req)
    assert result.ok, log_of(req)
    assert result.duration < 4
    assert process_gone(int((req.scratch / "out" / "pid").read_text()))


async def test_killed_by_signal(tmp_path: Path) -> None:
    drv = process_drv(["sh", "-c", "echo before; kill -TERM $$; echo after"])
    req = make_request(tmp_path, drv)
    result = await ProcessExecutor().build(req)
    assert (result.ok, result.returncode, result.reason) == (False, -15, "killed by signal SIGTERM")
    assert log_of(req) == "before\ndiracx: killed by signal SIGTERM\n"


async def test_stdout_and_stderr_interleaved_in_order(tmp_path: Path) -> None:
    script = "echo 1; echo 2 >&2; echo 3; echo 4 >&2; echo 5"
    req = make_request(tmp_path, process_drv(["sh", "-c", script]))
    result = await ProcessExecutor().build(req)
    assert result.ok
    assert log_of(req) == "1\n2\n3\n4\n5\n"


async def test_stdin_is_empty(tmp_path: Path) -> None:
    req = make_request(tmp_path, process_drv(["sh", "-c", 'cat > "$OUT/stdin"'], timeout=5))
    result = await ProcessExecutor().build(req)
    assert result.ok and result.duration < 4
    assert (req.scratch / "out" / "stdin").read_bytes() == b""


async def test_cancelling_a_build_kills_it(tmp_path: Path) -> None:
    drv = process_drv(["sh", "-c", 'sleep 100 & echo $! > "$OUT/pid"; sleep 100'])
    req = make_request(tmp_path, drv)
    task = asyncio.create_task(ProcessExecutor().build(req))
    pid_file = req.scratch / "out" / "pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert process_gone(int(pid_file.read_text()))
    assert log_of(req).endswith("diracx: build cancelled\n")


async def test_unstartable_argv(tmp_path: Path) -> None:
    req = make_request(tmp_path, process_drv(["echo", "a\0b"]))
    result = await ProcessExecutor().build(req)
    assert (result.ok, result.returncode) == (False, None)
    assert result.reason == "cannot start 'echo': embedded null byte"


async def test_concurrent_builds(tmp_path: Path) -> None:
    executor = load_executors()["process"]
    requests = []
    for i in range(30):
        drv = process_drv(["sh", "-c", f'echo {i} > "$OUT/n"; exit $(({i} % 3))'])
        requests.append(make_request(tmp_path / str(i), drv))
    results = await asyncio.gather(*(executor.build(r) for r in requests))
    for i, (req, result) in enumerate(zip(requests, results, strict=True)):
        assert (req.scratch / "out" / "n").read_text() == f"{i}\n"
        assert result.returncode == i % 3
        assert result.ok == (i % 3 == 0)


async def test_process_executor_refuses_other_builders(tmp_path: Path) -> None:
    req = make_request(tmp_path, python_drv("m:f"))
    result = await ProcessExecutor().build(req)
    assert not result.ok and "cannot run a 'python' builder" in result.reason


# -- python executor -------------------------------------------------------------------

STAGE_MODULE = """
    import os
    import sys
    from pathlib import Path

    AT_IMPORT = os.environ.get("DIRACX_IN_BUILDER")


    def build(data: Path, *, n: int = 2, word: str = "x", out: Path):
        text = (data / "f.txt").read_text()
        (out / "copy.txt").write_text(text * n)
        print("building", word)
        print("to stderr", file=sys.stderr)
        print("back to stdout")
        return {
            "n": n,
            "word": word,
            "pid": os.getpid(),
            "types": [type(data).__name__, type(out).__name__],
            "cwd": os.getcwd(),
            "in_builder_at_import": AT_IMPORT,
            "secret": os.environ.get("DIRACX_TEST_SECRET_TOKEN"),
            "sys_path_0": sys.path[0],
            "diracx_modules": sorted(m for m in sys.modules if m.startswith("diracx")),
            "pydantic": "pydantic" in sys.modules,
        }


    def no_out(n: int = 1):
        print("n is", n)


    def fails(n: int = 1):
        print("about to fail")
        raise ValueError(f"bad value {n}\\nsecond line")


    def returns_path(out: Path):
        return out


    def too_few(n: int = 1):
        return n


    async def coro(n: int = 1):
        return n * 10


    def sleeps(n: int = 1):
        import time

        time.sleep(100)


    def exits(n: int = 1):
        raise SystemExit(4)


    class FakeStage:
        \"\"\"Like diracx.api's @stage: not callable in a builder, exposes __wrapped__.\"\"\"

        def __init__(self, fn):
            self.__wrapped__ = fn

        def __call__(self, *args, **kwargs):
            raise RuntimeError("a stage object was called instead of its function")


    def _decorated(out: Path, greeting: str = "hi"):
        (out / "greeting").write_text(greeting)
        return greeting.upper()


    decorated = FakeStage(_decorated)
"""


async def test_python_stage_with_config_inputs_out_and_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET_VALUE)
    drv = python_drv("stages:build", config={"n": 3, "word": "héllo"}, inputs=("data",))
    req = make_request(
        tmp_path, drv, inputs={"data": {"f.txt": "ab"}}, source={"stages.py": STAGE_MODULE}
    )
    result = await PythonExecutor().build(req)
    assert result == BuildResult(True, 0, "", result.duration), log_of(req)
    out = req.scratch / "out"
    assert (out / "copy.txt").read_text() == "ababab"
    raw = (out / "result.json").read_bytes()
    value = json.loads(raw)
    assert raw == canonical_json(value)
    assert value["n"] == 3 and value["word"] == "héllo"
    assert value["types"] == ["PosixPath", "PosixPath"]
    assert value["pid"] != os.getpid()  # it ran in another process
    assert value["cwd"] == str(req.scratch / "work")
    assert value["in_builder_at_import"] == "1"
    assert value["secret"] is None
    assert value["sys_path_0"] == str(req.scratch / "source")
    assert "diracx.api" not in value["diracx_modules"]
    assert "diracx.core" not in value["diracx_modules"]
    assert value["pydantic"] is False
    assert log_of(req) == "building héllo\nto stderr\nback to stdout\n"


async def test_python_decorated_function_is_unwrapped(tmp_path: Path) -> None:
    drv = python_drv("stages:decorated", config={"greeting": "salut"})
    req = make_request(tmp_path, drv, source={"stages.py": STAGE_MODULE})
    result = await PythonExecutor().build(req)
    assert result.ok, log_of(req)
    assert (req.scratch / "out" / "greeting").read_text() == "salut"
    assert (req.scratch / "out" / "result.json").read_bytes() == b'"SALUT"'


async def test_python_without_out_and_without_result(tmp_path: Path) -> None:
    req = make_request(
        tmp_path, python_drv("stages:no_out", config={"n": 7}), source={"stages.py": STAGE_MODULE}
    )
    result = await PythonExecutor().build(req)
    assert result.ok, log_of(req)
    assert not (req.scratch / "out" / "result.json").exists()
    assert log_of(req) == "n is 7\n"


async def test_python_async_function(tmp_path: Path) -> None:
    req = make_request(
        tmp_path, python_drv("stages:coro", config={"n": 4}), source={"stages.py": STAGE_MODULE}
    )
    result = await PythonExecutor().build(req)
    assert result.ok, log_of(req)
    assert (req.scratch / "out" / "result.json").read_bytes() == b"40"


async def test_python_exception_is_reported(tmp_path: Path) -> None:
    req = make_request(
        tmp_path, python_drv("stages:fails", config={"n": 5}), source={"stages.py": STAGE_MODULE}
    )
    result = await PythonExecutor().build(req)
    assert (result.ok, result.returncode) == (False, 1)
    assert result.reason == "python function raised ValueError: bad value 5"
    log = log_of(req)
    assert log.startswith("about to fail\nTraceback (most recent call last):\n")
    assert 'stages.py", line' in log and "second line" in log
    assert "pyrunner.py" not in log  # the runner's own frames are left out
    assert log.endswith("\ndiracx: python function raised ValueError: bad value 5\n")


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("nomodule:f", "cannot import module nomodule: ModuleNotFoundError: No module named"),
        ("stages:missing", "module stages has no attribute 'missing'"),
        ("stages:AT_IMPORT", "stages:AT_IMPORT is not a function but a str"),
        ("stages:returns_path", "the return value cannot be stored as JSON: Object of type"),
        ("stages:too_few", "cannot call stages:too_few: got an unexpected keyword argument"),
        ("stages:exits", "python function called sys.exit(4)"),
    ],
)
async def test_python_failures(tmp_path: Path, function: str, reason: str) -> None:
    config = {"unexpected": 1} if function.endswith("too_few") else {}
    req = make_request(
        tmp_path, python_drv(function, config=config), source={"stages.py": STAGE_MODULE}
    )
    result = await PythonExecutor().build(req)
    assert not result.ok
    assert result.reason.startswith(reason), result.reason
    assert log_of(req).endswith(f"diracx: {result.reason}\n")


async def test_python_syntax_error_in_module(tmp_path: Path) -> None:
    req = make_request(tmp_path, python_drv("broken:f"), source={"broken.py": "def f(:\n"})
    result = await PythonExecutor().build(req)
    assert result.reason.startswith("cannot import module broken: SyntaxError")
    assert "broken.py" in log_of(req)


async def test_python_timeout(tmp_path: Path) -> None:
    drv = python_drv("stages:sleeps", timeout=1)
    req = make_request(tmp_path, drv, source={"stages.py": STAGE_MODULE})
    start = time.monotonic()
    result = await PythonExecutor().build(req)
    assert (result.ok, result.returncode, result.reason) == (False, None, "timed out after 1 s")
    assert time.monotonic() - start < 4


async def test_python_stale_failure_file_is_ignored(tmp_path: Path) -> None:
    req = make_request(tmp_path, python_drv("stages:no_out"), source={"stages.py": STAGE_MODULE})
    (req.scratch / "failure.json").write_text('{"reason": "stale"}')
    result = await PythonExecutor().build(req)
    assert result.ok, log_of(req)


def test_runner_canonical_json_matches_core() -> None:
    value = {"b": [1, 2.5, None, True], "a": "é", "c": {"z": 1, "y": "\u2603"}}
    assert pyrunner.canonical_json(value) == canonical_json(value)
