"""Builders: how a derivation is built, as data.

The builder of a derivation names an executor (``process``, ``python``, or one
added by an extension) and carries that executor's settings. The spec models
live here, in core, so that the service can validate a pipeline without
importing the workers' code; the workers register the executors themselves
under the ``diracx.executors`` entry point group with the same names.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from diracx.core.canonical import check_is_digest
from diracx.core.exceptions import InvalidPipelineError, UnknownExecutorError

# \Z, not $: "$" also matches before a trailing newline
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")
# Variables the executors set themselves; a stage may not override them.
RESERVED_ENV = frozenset({"OUT", "INPUTS", "DIRACX_CONFIG", "HOME", "TMPDIR", "PATH"})


class BuilderSpec(BaseModel):
    """Common fields of every builder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executor: str
    timeout: Annotated[
        float | None, Field(gt=0, description="seconds before the build is killed")
    ] = None


class ProcessBuilder(BuilderSpec):
    """Run a command (no shell) in a scratch directory; outputs go to ``$OUT``."""

    executor: Literal["process"] = "process"
    argv: Annotated[list[str], Field(min_length=1)]
    env: dict[str, str] = {}
    workdir: str | None = None  # relative to the scratch directory, for example "inputs/src"

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME_RE.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
            if name in RESERVED_ENV or name.startswith("IN_"):
                raise ValueError(
                    f"environment variable {name!r} is set by DiracX and cannot be given"
                )
        return env

    @field_validator("workdir")
    @classmethod
    def _check_workdir(cls, workdir: str | None) -> str | None:
        if workdir is not None and (workdir.startswith("/") or ".." in workdir.split("/")):
            raise ValueError(f"workdir must be relative to the scratch directory: {workdir!r}")
        return workdir


class PythonBuilder(BuilderSpec):
    """Call ``module:function`` in a subprocess; the module's source is the tree ``source``."""

    executor: Literal["python"] = "python"
    function: str
    source: str  # digest of the tree that holds the module's source file

    @field_validator("function")
    @classmethod
    def _check_function(cls, function: str) -> str:
        if not FUNCTION_RE.match(function):
            raise ValueError(f"function must look like 'module:function', not {function!r}")
        return function

    @field_validator("source")
    @classmethod
    def _check_source(cls, source: str) -> str:
        return check_is_digest(source, what="python source tree")


BUILTIN_BUILDERS: dict[str, type[BuilderSpec]] = {
    "process": ProcessBuilder,
    "python": PythonBuilder,
}


@cache
def builder_specs() -> dict[str, type[BuilderSpec]]:
    """Builder spec models by executor name; extensions add theirs under ``diracx.builders``."""
    specs = dict(BUILTIN_BUILDERS)
    for ep in entry_points(group="diracx.builders"):
        specs[ep.name] = ep.load()
    return specs


def parse_builder(data: Any, specs: dict[str, type[BuilderSpec]] | None = None) -> BuilderSpec:
    """Validate a builder document against its executor's spec; errors name what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("executor"), str):
        raise InvalidPipelineError("a builder must be an object with an 'executor' field")
    specs = builder_specs() if specs is None else specs
    name = data["executor"]
    if name not in specs:
        known = ", ".join(sorted(specs))
        raise UnknownExecutorError(f"unknown executor {name!r}; this installation knows: {known}")
    try:
        return specs[name].model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'builder'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidPipelineError(f"invalid {name} builder: {problems}") from None
