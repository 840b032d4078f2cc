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

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

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

    def check_inputs(self, inputs: set[str]) -> None:
        """Raise ValueError if the builder names inputs the derivation does not have."""

    def secret_names(self) -> set[str]:
        """The secrets whose values a build needs (they travel apart, sealed)."""
        return set()


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


# -- oci: one step of a container pipeline ------------------------------------------

CACHE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SECRET_NAME_RE = CACHE_NAME_RE
MAX_OCI_LAYERS = 500  # overlayfs stacks at most 500 lower directories
# What an ``oci`` step's output holds (see OciBuilder): the layer it added, and its stack
# (``[{"digest", "size"}]``: every layer of the filesystem after it, bottom first)
LAYER_FILE = "layer.tar"
STACK_FILE = "stack.json"


def check_container_path(path: str, what: str = "path") -> str:
    """An absolute path in the container, normalized (no '.', '..' or repeated '/')."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise ValueError(f"{what} must be an absolute path in the container, not {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{what} must not contain '..': {path!r}")
    return "/" + "/".join(parts)


def check_tree_subpath(sub: str) -> str:
    """A relative path inside an input's tree ("" for all of it)."""
    parts = [p for p in sub.split("/") if p not in ("", ".")]
    if ".." in parts or "\0" in sub:
        raise ValueError(f"a path inside an input must not contain '..': {sub!r}")
    return "/".join(parts)


ContainerPath = Annotated[str, AfterValidator(check_container_path)]
TreeSubpath = Annotated[str, AfterValidator(check_tree_subpath)]


class _OciPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OciCopy(_OciPart):
    """Put (a part of) an input into the container's filesystem: part of the new layer."""

    path: ContainerPath  # where: the directory to merge into, or the file to write
    input: str  # the input holding it
    sub: TreeSubpath = ""  # a path inside the input's tree ("" for all of it)
    kind: Literal["directory", "file"] = "directory"
    exclude: list[str] = []  # glob patterns, as host_dir's
    permissions: Annotated[int | None, Field(ge=0, le=0o7777)] = None  # a file's mode


class OciMount(_OciPart):
    """Mount (a part of) an input at a path for the exec: not part of the new layer."""

    path: ContainerPath
    input: str
    sub: TreeSubpath = ""
    kind: Literal["directory", "file"] = "directory"


class OciCache(_OciPart):
    """A cache volume: a directory of the worker that outlives the builds (never hashed)."""

    path: ContainerPath
    name: str
    sharing: Literal["shared", "private", "locked"] = "shared"

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not CACHE_NAME_RE.match(name):
            raise ValueError(
                f"cache volume name {name!r} must be 1-128 letters, digits, '.', '_' or '-'"
            )
        return name


class OciSecretVariable(_OciPart):
    """An environment variable whose value is a secret (the name only; never hashed)."""

    env: str
    secret: str

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: str) -> str:
        if not ENV_NAME_RE.match(env):
            raise ValueError(f"invalid environment variable name {env!r}")
        return env

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: str) -> str:
        if not SECRET_NAME_RE.match(secret):
            raise ValueError(f"secret name {secret!r} must be 1-128 letters, digits, '.', '_', '-'")
        return secret


class OciExtract(_OciPart):
    """Instead of a layer, the output is this path of the container's filesystem."""

    path: ContainerPath
    kind: Literal["directory", "file"] = "directory"


class OciBuilder(BuilderSpec):
    """One step of a container pipeline, run by the ``oci`` executor.

    The root filesystem is ``layers``: input names, bottom first. An input whose tree
    holds ``layer.tar`` (an image's layer) adds that layer; one whose tree holds
    ``stack.json`` (an earlier step's output) is that whole stack of layers, and
    replaces what is listed below it: a step on top of another needs that one input.
    The step then does one of:

    - ``argv``: run it (no shell; ``argv[0]`` looked up on the ``PATH`` of ``env``) in
      ``workdir`` as ``user``; the output holds ``layer.tar`` (what it changed, deletions
      as whiteouts), ``stack.json`` (``[{"digest", "size"}]``: every layer of the
      filesystem after it, bottom first), ``stdout``, ``stderr`` and ``exit_code``.
      ``expect`` says which exit codes make the build succeed;
    - ``copies`` only: put inputs into the filesystem; the output is ``layer.tar`` and
      ``stack.json``;
    - ``extract``: the output is that path of the filesystem (after the ``copies``).

    ``caches`` (cache volumes) and ``secrets`` (environment variables whose values are
    secrets) never enter the DRef: they do not change what is built.
    """

    executor: Literal["oci"] = "oci"
    layers: Annotated[list[str], Field(max_length=MAX_OCI_LAYERS)] = []
    argv: Annotated[list[str] | None, Field(min_length=1)] = None
    stdin: str | None = None
    env: dict[str, str] = {}
    workdir: ContainerPath = "/"
    user: str = ""
    expect: Literal["success", "failure", "any"] = "success"
    copies: list[OciCopy] = []
    mounts: list[OciMount] = []
    network: bool = False
    memory_mb: Annotated[int | None, Field(ge=4, description="memory limit (MiB)")] = None
    extract: OciExtract | None = None
    caches: Annotated[list[OciCache], Field(exclude=True)] = []
    secrets: Annotated[list[OciSecretVariable], Field(exclude=True)] = []

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name or "\0" in value:
                raise ValueError(f"invalid environment variable {name!r}")
        return env

    @field_validator("user")
    @classmethod
    def _check_user(cls, user: str) -> str:
        if "\0" in user or "\n" in user or user.count(":") > 1:
            raise ValueError(f"user must be 'name', 'uid', 'name:group' or 'uid:gid', not {user!r}")
        return user

    @model_validator(mode="after")
    def _check_step(self) -> OciBuilder:
        if self.extract is not None and self.argv is not None:
            raise ValueError("a step runs a command or extracts a path, not both")
        if self.argv is None and self.extract is None and not self.copies:
            raise ValueError("a step needs argv, copies or extract")
        if self.argv is None and (self.mounts or self.caches or self.secrets or self.stdin):
            raise ValueError("mounts, caches, secrets and stdin need argv")
        mount_points = [m.path for m in self.mounts] + [c.path for c in self.caches]
        if len(set(mount_points)) != len(mount_points):
            raise ValueError("two mounts at the same path")
        names = [s.env for s in self.secrets]
        if len(set(names)) != len(names):
            raise ValueError("a secret variable is given twice")
        return self

    def secret_names(self) -> set[str]:
        return {s.secret for s in self.secrets}

    def input_names(self) -> set[str]:
        """The inputs this builder refers to."""
        return {*self.layers, *(c.input for c in self.copies), *(m.input for m in self.mounts)}

    def check_inputs(self, inputs: set[str]) -> None:
        missing = sorted(self.input_names() - inputs)
        if missing:
            raise ValueError(f"the oci builder refers to inputs that are not given: {missing}")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError("a layer is listed twice")


BUILTIN_BUILDERS: dict[str, type[BuilderSpec]] = {
    "process": ProcessBuilder,
    "python": PythonBuilder,
    "oci": OciBuilder,
}


_ANY: TypeAdapter[Any] = TypeAdapter(Any)


@cache
def _unhashed_names(spec_type: type[BuilderSpec]) -> tuple[str, ...]:
    return tuple(sorted(n for n, f in spec_type.model_fields.items() if f.exclude))


def unhashed_fields(spec: BuilderSpec) -> dict[str, Any]:
    """The fields of *spec* that are not part of its DRef (``Field(exclude=True)``), as JSON,
    when they differ from their defaults: they travel with the job, not the derivation."""
    names = _unhashed_names(type(spec))
    if not names:
        return {}
    fields = type(spec).model_fields
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(spec, name)
        if value != fields[name].get_default(call_default_factory=True):
            out[name] = _ANY.dump_python(value, mode="json")
    return out


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
