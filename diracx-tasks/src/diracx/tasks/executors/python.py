"""The ``python`` executor: call ``module:function`` in a subprocess, never in the worker."""

from __future__ import annotations

import contextlib
import json
import os
import sys

from diracx.core.builders import PythonBuilder
from diracx.tasks.executors._spawn import Outcome, run_logged
from diracx.tasks.executors.base import LOG_NAME, BuildRequest, BuildResult, Executor, make_env
from diracx.tasks.executors.process import refuse

RUNNER = "diracx.tasks.executors.pyrunner"
FAILURE_NAME = "failure.json"  # written by the runner: {"reason": "..."}


class PythonExecutor(Executor):
    """Runs ``python -m diracx.tasks.executors.pyrunner SCRATCH MODULE:FUNCTION [INPUT...]``.

    The worker must have materialized the module's source tree at ``scratch/source``.
    The runner calls the function with the config as keyword arguments, each input
    as a ``Path`` and ``out``; a non-None return value lands in ``out/result.json``.
    """

    name = "python"

    async def build(self, request: BuildRequest) -> BuildResult:
        scratch = os.path.abspath(request.scratch)
        log_path = os.path.join(scratch, LOG_NAME)
        spec = request.derivation.builder_spec()
        if not isinstance(spec, PythonBuilder):
            return refuse(log_path, f"the python executor cannot run a {spec.executor!r} builder")
        failure_path = os.path.join(scratch, FAILURE_NAME)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(failure_path)  # left by an earlier attempt in the same scratch

        def explain(outcome: Outcome) -> str | None:
            try:
                with open(failure_path, "rb") as f:
                    reason = json.load(f)["reason"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            return reason if isinstance(reason, str) and reason else None

        # -u: unbuffered, so prints and tracebacks reach the log in order;
        # -P: do not put the working directory on sys.path.
        argv = [sys.executable, "-u", "-P", "-m", RUNNER, scratch, spec.function]
        argv.extend(sorted(request.derivation.inputs))
        outcome = await run_logged(
            argv,
            cwd=os.path.join(scratch, "work"),
            env=make_env(scratch, request.derivation, {}),
            log_path=log_path,
            timeout=spec.timeout,
            explain=explain,
        )
        return BuildResult(outcome.ok, outcome.returncode, outcome.reason, outcome.duration)
