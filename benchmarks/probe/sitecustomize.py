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
        "PipelineDB.start",
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
        "_remove_scratch",
    ],
    "diracx.tasks.executors.base": ["prepare_scratch", "load_executors"],
    "diracx.tasks.executors.process": ["ProcessExecutor.build"],
    "diracx.tasks.executors._spawn": ["run_logged", "_exited"],
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


def _wrap(name: str, fn: Any) -> Any:
    if getattr(fn, "__diracx_probe__", False):
        return fn
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time()
            p0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _emit({"f": name, "t0": t0, "dt": time.perf_counter() - p0, "n": _batch(args[1:])})

        timed: Any = async_timed
    else:

        @functools.wraps(fn)
        def sync_timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time()
            p0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _emit({"f": name, "t0": t0, "dt": time.perf_counter() - p0, "n": _batch(args[1:])})

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
