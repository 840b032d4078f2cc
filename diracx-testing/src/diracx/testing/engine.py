"""Real embedded engines for tests: start one on a data directory, stop it without leftovers.

An engine is ``python -m diracx.routers serve --embedded`` with ``DIRACX_DATA_DIR``
set: it writes ``<data_dir>/engine.json`` (URL, token, pid) once it listens and
starts a worker child (``python -m diracx.tasks worker``), which gets SIGKILL
when the engine dies (PDEATHSIG). This module only starts processes and reads
files: it imports nothing of diracx but ``diracx.core`` (the layering rules), so
``diracx.api.connect()`` finds the engine through ``engine.json`` like it would
find one it started itself.

``EngineProcess.stop()`` sends SIGTERM (the engine stops its worker), then
SIGKILL if it does not exit in time, and makes sure that every process of the
engine is gone: the worker, and any builds still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINE_FILE = "engine.json"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
# Settings the test process may have that would point the engine elsewhere.
_OWN_PREFIX = "DIRACX_"


class EngineStartError(RuntimeError):
    """The engine did not come up; the message ends with its log."""


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of *pid*, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # fields[0] is field 3 (state); field 4 is the ppid; field 22 the start time
    return fields[0], int(fields[1]), int(fields[19])


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether *pid* runs (a zombie does not count); with *started*, only that same process."""
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, _, start = stat
    if state in ("Z", "X"):
        return False
    return started is None or start == started


def children_of(pid: int) -> list[int]:
    """The live child processes of *pid*."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
            found.append(int(entry))
    return sorted(found)


def descendants_of(pid: int) -> list[int]:
    """Every live process below *pid* (children first)."""
    result: list[int] = []
    frontier = [pid]
    while frontier:
        nxt: list[int] = []
        for p in frontier:
            nxt.extend(children_of(p))
        result.extend(nxt)
        frontier = nxt
    return result


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def wait_gone(processes: Iterable[tuple[int, int]], timeout: float) -> list[int]:
    """Wait until every (pid, start time) has exited; return the pids still alive."""
    pending = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        pending = [(p, s) for p, s in pending if process_alive(p, s)]
        if not pending or time.monotonic() >= deadline:
            return [p for p, _ in pending]
        time.sleep(0.02)


def identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time) of a running process: tells it from a later one with its pid."""
    stat = _proc_stat(pid)
    return None if stat is None else (pid, stat[2])


def _signal(pid: int, started: int, sig: signal.Signals) -> None:
    """Send *sig* to *pid* only if it is still the process that started at *started*."""
    if process_alive(pid, started):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# --------------------------------------------------------------------------- engine


def read_engine_file(data_dir: Path) -> dict[str, Any] | None:
    """``<data_dir>/engine.json`` as a dict, or None if it is missing or half-written."""
    try:
        doc = json.loads((data_dir / ENGINE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _live(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health/live", timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def engine_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test engine: ours without any ``DIRACX_*`` setting, then
    ``DIRACX_DATA_DIR`` and *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIX)}
    env["DIRACX_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


@dataclass
class EngineProcess:
    """A running embedded engine started by :func:`start_engine`."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    url: str
    token: str
    env: dict[str, str] = field(repr=False)
    started: int = 0  # the engine's start time (/proc), to tell it from a reused pid
    _known: dict[int, int] = field(default_factory=dict, repr=False)  # pid -> start time

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "engine.log"

    def alive(self) -> bool:
        return self.process.poll() is None

    def worker_pids(self) -> list[int]:
        """The engine's worker processes (``python -m diracx.tasks``) running now."""
        pids = [p for p in children_of(self.pid) if "diracx.tasks" in cmdline(p)]
        self._remember(pids)
        return pids

    def processes(self) -> list[int]:
        """The engine and every process below it (worker, builds)."""
        below = descendants_of(self.pid) if self.alive() else []
        self._remember(below)
        return ([self.pid] if self.alive() else []) + below

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no engine log)"

    def _remember(self, pids: Iterable[int]) -> None:
        for pid in pids:
            ident = identity(pid)
            if ident is not None:
                self._known.setdefault(*ident)

    def kill(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGKILL the engine (``kill -9``) and wait until its worker has died with it.

        Nothing is cleaned up: ``engine.json`` stays, naming a dead pid, as after a crash.
        """
        self.processes()  # remember the worker, to check that it died with the engine
        if self.alive():
            self.process.kill()
        self.process.wait(timeout)
        workers = [(p, s) for p, s in self._known.items() if "diracx.tasks" in " ".join(cmdline(p))]
        left = wait_gone(workers, timeout)
        if left:
            raise AssertionError(f"the worker(s) {left} outlived the killed engine {self.pid}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the engine (SIGTERM, then SIGKILL) and make sure none of its processes is left."""
        self.processes()
        grace = 0.0  # an engine that was already dead stops nothing: kill what is left
        if self.alive():
            grace = 5.0
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        else:
            self.process.wait()
        known = list(self._known.items())
        left = wait_gone(known, grace)
        for pid in left:
            _signal(pid, self._known[pid], signal.SIGKILL)
        left = wait_gone(known, timeout)
        if left:
            raise AssertionError(f"processes {left} of engine {self.pid} are still running")


def start_engine(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> EngineProcess:
    """Start ``python -m diracx.routers serve --embedded`` on *data_dir*; wait until it answers.

    *env* adds variables to the engine's environment (which has none of the test
    process's ``DIRACX_*`` settings). Its output goes to ``<data_dir>/engine.log``.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    full_env = engine_env(data_dir, env)
    with open(data_dir / "engine.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "diracx.routers", "serve", "--embedded"],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a ^C in the test run reaches the engine through stop()
        )
    ident = identity(process.pid)
    engine = EngineProcess(
        data_dir=data_dir,
        process=process,
        url="",
        token="",
        env=full_env,
        started=ident[1] if ident else 0,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineStartError(
                f"the engine exited with code {process.returncode} while starting; "
                f"its log ends with:\n{_tail(engine.log())}"
            )
        doc = read_engine_file(data_dir)
        if doc is not None and doc.get("pid") == process.pid and _live(str(doc["url"])):
            engine.url, engine.token = str(doc["url"]), str(doc["token"])
            return engine
        time.sleep(0.02)
    engine.stop()
    raise EngineStartError(
        f"the engine did not answer within {timeout:.0f} s; its log ends with:\n"
        f"{_tail(engine.log())}"
    )


def stop_engine_in(data_dir: Path, timeout: float = STOP_TIMEOUT) -> None:
    """Stop whatever engine ``<data_dir>/engine.json`` names, if it still runs.

    For engines that a test did not start itself (``diracx.api.connect()`` starts
    one when none answers): SIGTERM, then SIGKILL, and its descendants too.
    """
    doc = read_engine_file(data_dir)
    if doc is None or not isinstance(doc.get("pid"), int):
        return
    pid: int = doc["pid"]
    if not process_alive(pid) or "diracx.routers" not in cmdline(pid):
        return
    known = [i for i in (identity(p) for p in [pid, *descendants_of(pid)]) if i is not None]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    left = wait_gone(known[:1], timeout)
    for p, s in known:
        if p in left or process_alive(p, s):
            _signal(p, s, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # our own child if connect() started it here
    left = wait_gone(known, timeout)
    if left:
        raise AssertionError(f"processes {left} of engine {pid} are still running")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class EngineFactory:
    """Starts engines for a test and stops all of them (and any engine that a client
    started on one of their data directories) when :meth:`close` is called."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = dict(env or {})
        self.started: list[EngineProcess] = []
        self._dirs: set[Path] = {data_dir}  # a client may start an engine there too

    def start(
        self, data_dir: Path | None = None, *, env: Mapping[str, str] | None = None
    ) -> EngineProcess:
        """Start an engine on *data_dir* (default: the factory's own)."""
        data_dir = data_dir or self.data_dir
        self._dirs.add(data_dir)
        engine = start_engine(data_dir, env={**self.env, **(env or {})})
        self.started.append(engine)
        return engine

    def close(self) -> None:
        errors: list[str] = []
        for engine in reversed(self.started):
            try:
                engine.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(str(exc))
        for data_dir in self._dirs:
            try:
                stop_engine_in(data_dir)
            except Exception as exc:
                errors.append(str(exc))
        if errors:
            raise AssertionError("; ".join(errors))
