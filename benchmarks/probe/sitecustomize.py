"""Benchmark probe: wall-clock timers around a few functions of the engine, client and worker.

``bench_embedded.py --profile`` puts this directory on ``PYTHONPATH`` so that the
engine and its worker (which inherit the environment) import it at start-up, and
imports it in its own process too. Nothing happens unless ``DIRACX_BENCH_PROBE``
names a directory: then each function listed in ``TARGETS`` is wrapped, when its
module is first imported, by a timer that appends one JSON line per call to
``$DIRACX_BENCH_PROBE/<pid>.jsonl``::

    {"f": "PipelineDB.finish", "t0": <time.time() at the call>, "dt": <seconds>, "n": <batch>}

``n`` is the length of the first list or tuple argument (the batch size of
claim/start/finish), when there is one. Product code is not changed; a target
that no longer exists is skipped (listed in a ``{"f": "probe:missing"}`` line).
Builds never see this file: the workers give them a scrubbed environment.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import threading
import time
from typing import Any

PROBE_ENV = "DIRACX_BENCH_PROBE"

# module -> functions ("name" or "Class.name") to time
TARGETS: dict[str, list[str]] = {
    # the embedded engine's start
    "diracx.routers.engine": [
        "serve_embedded",
        "EmbeddedEngine.prepare",
        "EmbeddedEngine.start_worker",
        "EmbeddedEngine.recover",
        "write_private_json",
    ],
    "diracx.db.migrate": ["upgrade"],
    "diracx.routers.factory": ["create_app"],
    "uvicorn.server": ["Server.startup"],
    "celery.apps.worker": ["Worker.on_consumer_ready"],  # the worker takes messages from now
    # the service's side of a submission and of following it
    "diracx.routers.logic": [
        "submit",
        "instantiate",
        "check_trees_present",
        "wait_for_events",
        "receive_blob",
    ],
    "diracx.core.derivation": ["plan_order"],
    "diracx.routers.queue": ["CeleryJobQueue.send", "CeleryJobQueue.enqueue"],
    "diracx.db.pipelines": [
        "PipelineDB.submit",
        "PipelineDB.claim",
        "PipelineDB.finish",
        "PipelineDB._claimed_jobs",
        "PipelineDB._release_dependents",
        "PipelineDB._chosen_realizations",
        "PipelineDB._pipeline_info",
        "PipelineDB.pipeline_events",
        "PipelineDB.get_pipeline",
        "PipelineDB.heartbeat",
    ],
    # the worker
    "diracx.tasks.celery_app": ["send_realize", "RuntimeThread.__init__"],
    "diracx.tasks.runtime": [
        "WorkerRuntime.start",
        "WorkerRuntime.realize",
        "WorkerRuntime._build",
        "WorkerRuntime._prepare",
        "WorkerRuntime._ingest",
        "WorkerRuntime._store_results",
        "remove_scratch",
    ],
    "diracx.tasks.executors.base": ["prepare_scratch", "load_executors"],
    "diracx.tasks.executors.process": ["ProcessExecutor.build"],
    "diracx.tasks.executors._spawn": ["run_logged", "_exited", "_kill_group"],
    "subprocess": ["Popen._execute_child", "Popen.wait"],  # on the worker's event loop thread
    "diracx.core.tree": ["ingest_directory", "materialize_tree"],
    # the client
    "diracx.api.engine": ["ensure_engine", "running_engine", "_start"],
    "diracx.api.instantiate": ["instantiate"],
    "diracx.api.session": [
        "AsyncSession.open",
        "AsyncSession.run",
        "AsyncSession._upload",
        "AsyncSession._follow",
    ],
    "diracx.client.client": [
        "AsyncDiracxClient.submit_pipeline",
        "AsyncDiracxClient.pipeline_events",
        "AsyncDiracxClient.get_pipeline",
        "AsyncDiracxClient.missing_blobs",
    ],
}

_fd: int | None = None
_lock = threading.Lock()


def _emit(record: dict[str, Any]) -> None:
    if _fd is None:
        return
    line = (json.dumps(record) + "\n").encode()
    os.write(_fd, line)  # O_APPEND: one write per line, whole lines even across threads


def mark(name: str, **extra: Any) -> None:
    """An instant event (for example the moment this interpreter reached sitecustomize)."""
    _emit({"f": name, "t0": time.time(), "dt": 0.0, **extra})


def _batch(args: tuple[Any, ...]) -> int | None:
    for a in args:
        if isinstance(a, list | tuple):
            return len(a)
    return None


def _job_of(value: Any) -> int | None:
    """The job id a value stands for: a ClaimedJob, a BuildRequest/BuildSuccess, a scratch dir."""
    for attr in ("job_id", "id"):
        v = getattr(value, attr, None)
        if isinstance(v, int) and (attr == "job_id" or hasattr(value, "dref")):
            return v
    if isinstance(value, os.PathLike):
        head = os.path.basename(os.fspath(value)).split("-")[0]
        if head.isdigit():
            return int(head)
    return None


def _jobs(args: tuple[Any, ...]) -> list[int] | int | None:
    """Job ids in the arguments: one (a job, a scratch dir) or a list (a batch of jobs)."""
    for a in args:
        if isinstance(a, list | tuple) and a and len(a) <= 256:
            ids = [_job_of(x) if not isinstance(x, int) else x for x in a]
            if all(isinstance(i, int) for i in ids):
                return ids  # type: ignore[return-value]
        elif (j := _job_of(a)) is not None:
            return j
    return None


def _record(name: str, t0: float, dt: float, args: tuple[Any, ...]) -> None:
    rec: dict[str, Any] = {"f": name, "t0": t0, "dt": dt, "n": _batch(args)}
    jobs = _jobs(args)
    if jobs is not None:
        rec["job"] = jobs
    _emit(rec)


def _wrap(name: str, fn: Any) -> Any:
    if getattr(fn, "__diracx_probe__", False):
        return fn
    is_method = "." in name  # Class.method: skip self
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time()
            p0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _record(name, t0, time.perf_counter() - p0, args[1:] if is_method else args)

        timed: Any = async_timed
    else:

        @functools.wraps(fn)
        def sync_timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time()
            p0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _record(name, t0, time.perf_counter() - p0, args[1:] if is_method else args)

        timed = sync_timed
    timed.__diracx_probe__ = True
    return timed


def _patch(module: Any, names: list[str]) -> None:
    missing = []
    for dotted in names:
        owner: Any = module
        parts = dotted.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part, None)
        attr = parts[-1]
        if owner is None:
            missing.append(dotted)
            continue
        raw = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if raw is None or isinstance(raw, staticmethod | classmethod | property):
            if isinstance(raw, staticmethod | classmethod):
                setattr(owner, attr, type(raw)(_wrap(dotted, raw.__func__)))
            else:
                missing.append(dotted)
            continue
        if not callable(raw):
            missing.append(dotted)
            continue
        setattr(owner, attr, _wrap(dotted, raw))
    if missing:
        _emit({"f": "probe:missing", "t0": time.time(), "dt": 0.0, "names": missing})


class _Finder(importlib.abc.MetaPathFinder):
    """Finds target modules with the other finders, then patches them once executed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _patch(module, TARGETS[fullname])

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(directory: str) -> None:
    """Start recording into *directory* (idempotent). Modules already imported are patched now."""
    global _fd
    with _lock:
        if _fd is not None:
            return
        os.makedirs(directory, exist_ok=True)
        _fd = os.open(
            os.path.join(directory, f"{os.getpid()}.jsonl"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
    try:
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        argv = sys.argv
    mark("probe:start", argv=argv, pid=os.getpid(), ppid=os.getppid())
    for name, names in TARGETS.items():
        if name in sys.modules:
            _patch(sys.modules[name], names)
    sys.meta_path.insert(0, _Finder())


if os.environ.get(PROBE_ENV):
    install(os.environ[PROBE_ENV])
