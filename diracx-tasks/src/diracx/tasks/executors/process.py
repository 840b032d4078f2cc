"""The ``process`` executor: run a command (no shell) in the scratch directory."""

from __future__ import annotations

import os
import time

from diracx.core.builders import ProcessBuilder
from diracx.tasks.executors._spawn import append_reason, run_logged
from diracx.tasks.executors.base import LOG_NAME, BuildRequest, BuildResult, Executor, make_env


class ProcessExecutor(Executor):
    """Runs ``argv`` in ``work/`` (or the builder's ``workdir``), in its own process group.

    The environment is exactly ``build_env``; ``argv[0]`` is looked up on its
    PATH; stdin is /dev/null; stdout and stderr go to ``scratch/log``. On timeout,
    and when the command exits, whatever is left of its process group is killed.
    """

    name = "process"

    async def build(self, request: BuildRequest) -> BuildResult:
        scratch = os.path.abspath(request.scratch)
        log_path = os.path.join(scratch, LOG_NAME)
        spec = request.derivation.builder_spec()
        if not isinstance(spec, ProcessBuilder):
            return refuse(log_path, f"the process executor cannot run a {spec.executor!r} builder")
        cwd = os.path.join(scratch, spec.workdir if spec.workdir else "work")
        outcome = await run_logged(
            spec.argv,
            cwd=cwd,
            env=make_env(scratch, request.derivation, spec.env),
            log_path=log_path,
            timeout=spec.timeout,
        )
        return BuildResult(outcome.ok, outcome.returncode, outcome.reason, outcome.duration)


def refuse(log_path: str, reason: str) -> BuildResult:
    """A build that cannot start at all: its log holds just the reason."""
    start = time.monotonic()
    fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        append_reason(fd, reason)
    finally:
        os.close(fd)
    return BuildResult(False, None, reason, time.monotonic() - start)
