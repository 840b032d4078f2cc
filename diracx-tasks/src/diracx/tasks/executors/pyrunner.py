"""Run a python stage's function, as the build process of a python stage.

Usage: ``python -m diracx.tasks.executors.pyrunner SCRATCH MODULE:FUNCTION [INPUT...]``.

It puts ``SCRATCH/source`` first on ``sys.path``, imports the module, takes the
function (unwrapping a ``@stage`` object through its ``__wrapped__``) and calls it
with keyword arguments: the config from ``config.json``, each input as
``Path(SCRATCH/inputs/<name>)``, and ``out=Path(SCRATCH/out)`` if it has an
``out`` parameter. A non-None return value is written as canonical JSON to
``out/result.json``.

On failure the traceback goes to stderr (the log), the reason to
``SCRATCH/failure.json`` for the executor, and the exit code is 1.

It starts once per build, so it imports only what it needs of the standard
library, lazily (json, pathlib, traceback, inspect), and nothing of diracx: in
particular not ``diracx.api``, whose ``@stage`` objects it only unwraps.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

FAILURE_NAME = "failure.json"
RESULT_NAME = "result.json"
CONFIG_NAME = "config.json"


class StageFailure(Exception):
    """The build fails with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_json(obj: Any) -> bytes:
    """As ``diracx.core.canonical.canonical_json`` (not imported: it would pull in diracx.core)."""
    import json

    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def summary(exc: BaseException) -> str:
    """``ValueError: first line of the message`` (shortened)."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > 200:
        first = first[:197] + "..."
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def print_user_traceback(exc: BaseException) -> None:
    """The traceback, without the runner's own frames."""
    import traceback

    sys.stdout.flush()
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.flush()


def parameter_names(func: Callable[..., Any]) -> Iterable[str]:
    if isinstance(func, types.FunctionType) and not hasattr(func, "__wrapped__"):
        code = func.__code__  # fast path: no need to import inspect
        return code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    import inspect

    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return ()


def call_problem(func: Callable[..., Any], kwargs: dict[str, Any]) -> str | None:
    """Why *func* cannot be called with *kwargs*, if it cannot."""
    import inspect

    try:
        inspect.signature(func).bind(**kwargs)
    except TypeError as exc:
        return str(exc)
    except ValueError:
        return None
    return None


def load_function(function: str) -> Callable[..., Any]:
    module_name, _, attr = function.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        print_user_traceback(exc)
        raise StageFailure(f"cannot import module {module_name}: {summary(exc)}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise StageFailure(f"module {module_name} has no attribute {attr!r}") from None
    func = getattr(obj, "__wrapped__", obj)
    if not callable(func):
        raise StageFailure(f"{function} is not a function but a {type(func).__name__}")
    return func


def read_config(scratch: str) -> dict[str, Any]:
    try:
        with open(os.path.join(scratch, CONFIG_NAME), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    if data.strip() == b"{}":
        return {}  # no need to import json
    import json

    try:
        config = json.loads(data)
    except ValueError as exc:
        raise StageFailure(f"{CONFIG_NAME} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise StageFailure(f"{CONFIG_NAME} does not hold a JSON object")
    return config


def arguments(func: Callable[..., Any], scratch: str, input_names: list[str]) -> dict[str, Any]:
    kwargs = read_config(scratch)
    wants_out = "out" in parameter_names(func)
    if input_names or wants_out:
        from pathlib import Path

        for name in input_names:
            if name in kwargs:
                raise StageFailure(f"{name!r} is both a config key and an input")
            kwargs[name] = Path(scratch, "inputs", name)
        if wants_out:
            if "out" in kwargs:
                raise StageFailure(
                    "'out' is the output directory: it cannot be a config key or input"
                )
            kwargs["out"] = Path(scratch, "out")
    return kwargs


def call(func: Callable[..., Any], function: str, kwargs: dict[str, Any]) -> Any:
    try:
        result = func(**kwargs)
        if isinstance(result, types.CoroutineType):
            import asyncio

            result = asyncio.run(result)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return None
        raise StageFailure(f"python function called sys.exit({exc.code!r})") from None
    except Exception as exc:
        print_user_traceback(exc)
        if isinstance(exc, TypeError):
            problem = call_problem(func, kwargs)
            if problem is not None:
                raise StageFailure(f"cannot call {function}: {problem}") from None
        raise StageFailure(f"python function raised {summary(exc)}") from None
    return result


def write_result(result: Any, out: str) -> None:
    try:
        data = canonical_json(result)
    except (TypeError, ValueError) as exc:
        raise StageFailure(f"the return value cannot be stored as JSON: {exc}") from None
    try:
        with open(os.path.join(out, RESULT_NAME), "xb") as f:
            f.write(data)
    except FileExistsError:
        raise StageFailure(
            f"the function returned a value but also wrote out/{RESULT_NAME} itself"
        ) from None


def run(scratch: str, function: str, input_names: list[str]) -> None:
    # diracx.api refuses to start pipelines inside a builder; set before user code runs.
    os.environ["DIRACX_IN_BUILDER"] = "1"
    sys.path.insert(0, os.path.join(scratch, "source"))
    func = load_function(function)
    kwargs = arguments(func, scratch, input_names)
    result = call(func, function, kwargs)
    if result is not None:
        write_result(result, os.path.join(scratch, "out"))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(
            "usage: python -m diracx.tasks.executors.pyrunner SCRATCH MODULE:FUNCTION [INPUT...]",
            file=sys.stderr,
        )
        return 2
    scratch = argv[0]
    try:
        run(scratch, argv[1], argv[2:])
    except StageFailure as failure:
        sys.stdout.flush()
        with open(os.path.join(scratch, FAILURE_NAME), "wb") as f:
            f.write(canonical_json({"reason": failure.reason}))
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
