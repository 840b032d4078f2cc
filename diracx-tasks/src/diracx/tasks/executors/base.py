"""The executor interface, and what every executor shares: the scratch layout and the environment.

An executor runs one build in a scratch directory prepared by the worker::

    scratch/
      inputs/<name>/   each input's output tree, materialized read-only (by the worker);
                       inputs/<name>/<k>/ for each realization a matcher such as some(n)
                       chose (one stacked tree, see ``runtime.stacked_tree``)
      source/          python executor: the module's source tree (by the worker)
      out/             empty; the build writes its outputs here ($OUT)
      work/            the working directory and $HOME
      tmp/             $TMPDIR
      config.json      the derivation's config, canonical JSON ($DIRACX_CONFIG)
      log              stdout and stderr of the build, interleaved (by the executor)

``build`` never raises for a failing build: the failure is a ``BuildResult`` with
``ok=False`` and a short reason, also appended to the log as ``diracx: <reason>``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import ClassVar

from diracx.core.builders import ProcessBuilder
from diracx.core.canonical import canonical_json
from diracx.core.derivation import Derivation
from diracx.core.exceptions import UnknownExecutorError
from diracx.core.extensions import load_entry_point, select_entry_points
from diracx.core.store import BlobStore
from diracx.core.tree import remove_tree

ENTRY_POINT_GROUP = "diracx.executors"
# The built-in executors, also when an install's entry points predate one of them
# (an editable install made before it was added); entry points override these.
BUILTIN_EXECUTORS = {
    "process": "diracx.tasks.executors.process:ProcessExecutor",
    "python": "diracx.tasks.executors.python:PythonExecutor",
    "oci": "diracx.tasks.executors.oci:OciExecutor",
}

# The only PATH a build sees: nothing of the worker's environment leaks in.
BUILD_PATH = "/usr/local/bin:/usr/bin:/bin"
LOG_NAME = "log"
CONFIG_NAME = "config.json"
SCRATCH_DIRS = ("inputs", "out", "work", "tmp")


@dataclass(frozen=True)
class BuildRequest:
    """One build of one derivation, in a scratch directory the worker has prepared.

    ``store``, ``inputs`` (input name -> tree digest), ``data_dir`` (worker-local state
    that outlives builds) and ``secrets`` (secret name -> value: never log or store
    them) are for executors that need more than the scratch directory (``oci``).
    """

    job_id: int
    dref: str
    derivation: Derivation
    scratch: Path
    store: BlobStore | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class BuildResult:
    """How a build ended.

    ``returncode`` is the exit status; negative (``-N``) when the build was killed
    by signal N; None when it never started or was killed for its timeout.
    ``reason`` is "" when ``ok``, else short and meant for a human.
    """

    ok: bool
    returncode: int | None
    reason: str
    duration: float


class Executor(ABC):
    """Runs one kind of builder. One instance serves every build of a worker process."""

    name: ClassVar[str]
    # True: the worker leaves inputs/ empty; the executor reads what it needs from the store
    materializes_inputs: ClassVar[bool] = False

    @abstractmethod
    async def build(self, request: BuildRequest) -> BuildResult:
        """Run the build; write its log to ``scratch/log``; never raise for a failing build."""


@cache
def load_executors() -> dict[str, Executor]:
    """Executors by name, from the ``diracx.executors`` entry points, instantiated once.

    An extension's executor overrides a built-in one of the same name.
    """
    classes: dict[str, type[Executor]] = {}
    for name, ep in select_entry_points(ENTRY_POINT_GROUP).items():
        cls = load_entry_point(ep)
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise TypeError(
                f"entry point {ENTRY_POINT_GROUP}:{name} = {ep.value} is not an Executor class"
            )
        classes[name] = cls
    for name, target in BUILTIN_EXECUTORS.items():
        if name not in classes:
            module, _, attr = target.partition(":")
            classes[name] = getattr(importlib.import_module(module), attr)
    return {name: cls() for name, cls in classes.items()}


def get_executor(name: str) -> Executor:
    """The executor called *name*, or UnknownExecutorError naming the ones installed."""
    executors = load_executors()
    try:
        return executors[name]
    except KeyError:
        known = ", ".join(sorted(executors))
        raise UnknownExecutorError(
            f"unknown executor {name!r}; this worker knows: {known}"
        ) from None


def prepare_scratch(scratch: Path, derivation: Derivation) -> None:
    """Create the directory *scratch* (its parent exists) with ``inputs/ out/ work/ tmp/``,
    and write ``config.json``. A scratch directory is always new: an existing one is an error.

    The worker materializes the inputs (and a python stage's ``source/``) itself.
    Plain system calls: this runs for every build.
    """
    os.mkdir(scratch)
    for sub in SCRATCH_DIRS:
        os.mkdir(os.path.join(scratch, sub))
    fd = os.open(os.path.join(scratch, CONFIG_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, canonical_json(derivation.config))
    finally:
        os.close(fd)


def remove_scratch(scratch: Path) -> None:
    """Remove a scratch directory: an emptied skeleton (the usual case once the outputs
    and the log are in the store) in a few system calls, anything else as a tree."""
    try:
        for name in (CONFIG_NAME, LOG_NAME):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(scratch, name))
        for sub in SCRATCH_DIRS:
            os.rmdir(os.path.join(scratch, sub))
        os.rmdir(scratch)
    except FileNotFoundError:
        if os.path.exists(scratch):
            remove_tree(scratch)
    except OSError:  # not empty: inputs, outputs in subdirectories, files left in work/
        remove_tree(scratch)


def build_env(request: BuildRequest) -> dict[str, str]:
    """The whole environment of a build: nothing of the worker's own leaks in.

    ``PATH``, ``HOME`` (= work/), ``TMPDIR``, ``LANG``, ``OUT``, ``INPUTS``,
    ``IN_<NAME>`` for each input (the name upper-cased), ``DIRACX_CONFIG``, then
    the stage's own ``env`` (process builders), and ``DIRACX_IN_BUILDER=1``.
    """
    spec = request.derivation.builder_spec()
    extra = spec.env if isinstance(spec, ProcessBuilder) else {}
    return make_env(os.path.abspath(request.scratch), request.derivation, extra)


def make_env(scratch: str, derivation: Derivation, extra: Mapping[str, str]) -> dict[str, str]:
    """``build_env`` for an absolute scratch path and a builder already parsed."""
    inputs = os.path.join(scratch, "inputs")
    env = {
        "PATH": BUILD_PATH,
        "HOME": os.path.join(scratch, "work"),
        "TMPDIR": os.path.join(scratch, "tmp"),
        "LANG": "C.UTF-8",
        "OUT": os.path.join(scratch, "out"),
        "INPUTS": inputs,
        "DIRACX_CONFIG": os.path.join(scratch, CONFIG_NAME),
    }
    for name in sorted(derivation.inputs):
        env["IN_" + name.upper()] = os.path.join(inputs, name)
    env.update(extra)
    # diracx.api refuses to start a pipeline from inside a build.
    env["DIRACX_IN_BUILDER"] = "1"
    return env
