"""Container pipelines, in the style of Dagger: a fluent, lazy API on OCI images.

>>> from diracx.api import cache_volume, container, host
>>> src = host().directory("project", exclude=[".git", "__pycache__"])
>>> tested = (
...     container().from_("python:3.12-slim")
...     .with_directory("/src", src)
...     .with_workdir("/src")
...     .with_mounted_cache("/root/.cache/pip", cache_volume("pip"))
...     .with_exec(["python", "-m", "pytest", "-q"])
... )
>>> print(tested.stdout())                          # doctest: +SKIP

Nothing runs until a result is asked for (``stdout()``, ``sync()``, ``export()``...).
Each ``with_exec`` and each filesystem change (``with_directory``, ``with_file``,
``with_new_file``) is one derivation of the ``oci`` executor, whose output is the
layer it adds; settings (``with_env_variable``, ``with_workdir``, ``with_user``...)
only change what later steps see. A step whose base, inputs and arguments did
not change is not run again; cache volumes and secrets are not part of any hash.

Directories and files are content-addressed values that mix with command and
python stages both ways: ``with_directory(path, some_stage)`` takes a stage's
output, and ``container.directory(path)`` is an input like any other
(``command(..., inputs={"dist": ctr.directory("/dist")})``).

Results run through a session: the one the container was made with
(``container(session=s)``), the one given to the result (``stdout(session=s)``),
or else one opened with :func:`diracx.api.connect` for that call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from diracx.api.stages import HostTree, Stage, TreeRef, _abspath, host_dir, host_file
from diracx.core.builders import (
    CACHE_NAME_RE,
    LAYER_FILE,
    SECRET_NAME_RE,
    STACK_FILE,
    check_container_path,
)
from diracx.core.exceptions import DiracxError, InvalidPipelineError
from diracx.core.oci import (
    MEDIA_OCI_LAYER,
    HistoryEntry,
    Image,
    ImageConfig,
    Layer,
    Platform,
    read_docker_archive,
    read_oci_layout,
    write_docker_archive,
    write_oci_layout,
)
from diracx.core.settings import ClientSettings
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, TreeEntry

if TYPE_CHECKING:
    from diracx.api.sync import Session

__all__ = [
    "CacheVolume",
    "Container",
    "ContainerError",
    "Directory",
    "File",
    "Host",
    "Secret",
    "cache_volume",
    "container",
    "host",
    "import_image",
    "secret",
    "secret_from_env",
]

Expect = Literal["success", "failure", "any"]
Sharing = Literal["shared", "private", "locked"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ContainerError(DiracxError):
    """A container pipeline cannot be made or read as asked; the message says why."""


# --------------------------------------------------------------------------- values


class Secret:
    """A secret value: given to execs (``with_secret_variable``), never stored, logged,
    hashed or returned, and masked (``***``) in what an exec prints."""

    __slots__ = ("_env", "_name", "_value")

    def __init__(self, name: str, *, value: str | None = None, env: str | None = None) -> None:
        if not isinstance(name, str) or not SECRET_NAME_RE.match(name):
            raise ValueError(f"secret name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
        if (value is None) == (env is None):
            raise ValueError("a secret takes a value or an environment variable, not both")
        if value is not None and not isinstance(value, str):
            raise TypeError("a secret's value must be a string")
        self._name, self._value, self._env = name, value, env

    @property
    def name(self) -> str:
        return self._name

    def plaintext(self) -> str:
        """The value (read from the environment variable now, for ``secret_from_env``)."""
        if self._value is not None:
            return self._value
        assert self._env is not None
        value = os.environ.get(self._env)
        if value is None:
            raise InvalidPipelineError(
                f"secret {self._name!r} comes from the environment variable {self._env}, "
                "which is not set"
            )
        return value

    def __repr__(self) -> str:
        where = f"env {self._env}" if self._env is not None else "value ***"
        return f"<Secret {self._name!r} ({where})>"

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled: its value must not leave this process")


def secret(name: str, value: str) -> Secret:
    """A secret with this value (masked in every output; never stored)."""
    return Secret(name, value=value)


def secret_from_env(name: str, var: str) -> Secret:
    """A secret whose value is the environment variable *var* (read when the pipeline runs)."""
    return Secret(name, env=var)


@dataclass(frozen=True)
class CacheVolume:
    """A named cache directory kept by each worker across builds (never part of a hash)."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not CACHE_NAME_RE.match(self.name):
            raise ValueError(
                f"cache volume name {self.name!r} must be 1-128 letters, digits, '.', '_' or '-'"
            )


def cache_volume(name: str) -> CacheVolume:
    return CacheVolume(name)


Source = Stage | TreeRef | HostTree


@dataclass(frozen=True)
class Directory:
    """A directory: (a part of) a tree in the store, a stage's output or a host directory.

    Content-addressed and lazy; an input of ``command``/``@stage`` like a stage, and
    of ``with_directory``.
    """

    source: Source
    sub: str = ""  # a directory inside the source's tree
    exclude: tuple[str, ...] = ()
    _session: Session | None = field(default=None, repr=False, compare=False)

    def directory(self, path: str) -> Directory:
        """The subdirectory *path* (relative) of this directory."""
        sub = _join_rel(self.sub, path)
        if isinstance(self.source, HostTree):
            return replace(self, source=host_dir(self.source.path / path, exclude=self.exclude))
        return replace(self, sub=sub)

    def file(self, path: str) -> File:
        """The file *path* (relative) in this directory."""
        rel = _join_rel(self.sub, path)
        if isinstance(self.source, HostTree):
            return File(host_file(self.source.path / rel), PurePosixPath(rel).name, self._session)
        return File(self.source, rel, self._session)

    def without(self, *patterns: str) -> Directory:
        """This directory without what the glob patterns match (as ``host_dir``'s exclude)."""
        if isinstance(self.source, HostTree):
            return replace(
                self,
                source=host_dir(self.source.path, exclude=(*self.exclude, *patterns)),
                exclude=(*self.exclude, *patterns),
            )
        return replace(self, exclude=(*self.exclude, *patterns))

    def as_input(self) -> Source:
        """What a stage takes as input for this directory (a selection step if needed)."""
        if not self.sub and not (self.exclude and not isinstance(self.source, HostTree)):
            return self.source
        return _select(self.source, self.sub, "directory", list(self.exclude))

    def entries(self, *, session: Session | None = None) -> list[str]:
        """The paths of the files and links in this directory, sorted."""
        tree = _tree_of(self.as_input(), session or self._session)
        return sorted(p for p, e in tree.entries.items() if e.kind != "directory")

    def export(self, path: str | os.PathLike[str], *, session: Session | None = None) -> Path:
        """Write this directory to *path* on this machine (created; files writable)."""
        dest = Path(path)
        src = self.as_input()
        if isinstance(src, HostTree):
            _copy_host_tree(src, dest)
            return dest
        return _download(src, dest, session or self._session)


@dataclass(frozen=True)
class File:
    """A file: a path in a tree (a stage's output, a host file, a container's file)."""

    source: Source
    path: str  # the file's path inside the source's tree
    _session: Session | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    def as_input(self) -> Source:
        """A tree holding just this file, under its name."""
        if isinstance(self.source, HostTree) and self.source.kind == "file":
            return self.source
        return _select(self.source, self.path, "file", [])

    def contents(self, *, session: Session | None = None) -> str:
        return self.contents_bytes(session=session).decode()

    def contents_bytes(self, *, session: Session | None = None) -> bytes:
        src = self.as_input()
        if isinstance(src, HostTree):
            return src.path.read_bytes()
        return _read_file(src, self.name, session or self._session)

    def export(self, path: str | os.PathLike[str], *, session: Session | None = None) -> Path:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.contents_bytes(session=session))
        return dest


class Host:
    """Files and directories of this machine."""

    def directory(self, path: str | os.PathLike[str], *, exclude: Iterable[str] = ()) -> Directory:
        return Directory(host_dir(path, exclude=exclude), exclude=tuple(_as_list(exclude)))

    def file(self, path: str | os.PathLike[str]) -> File:
        tree = host_file(path)
        return File(tree, tree.path.name)


def host() -> Host:
    return Host()


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class _ImageLayer:
    """A layer of a base image: a blob in this machine's cache, sent when the engine lacks it."""

    layer: Layer
    blob: Path

    @property
    def tree(self) -> Tree:
        return Tree({LAYER_FILE: TreeEntry("file", self.layer.digest, self.layer.size)})


@dataclass(frozen=True)
class _StepLayer:
    """The layer a step (exec or copy) adds: ``layer.tar`` in its output."""

    stage: Stage


LayerRef = _ImageLayer | _StepLayer


@dataclass(frozen=True)
class _State:
    """What a container is after its operations: layers, run configuration, mounts."""

    layers: tuple[LayerRef, ...] = ()
    config: ImageConfig = field(default_factory=ImageConfig)
    platform: Platform = field(default_factory=Platform.host)
    history: tuple[HistoryEntry, ...] = ()
    mounts: tuple[tuple[str, Directory | File], ...] = ()
    caches: tuple[tuple[str, CacheVolume, Sharing], ...] = ()
    secrets: tuple[tuple[str, Secret], ...] = ()
    network: bool = False
    last_exec: Stage | None = None
    ref: str = ""  # where the base came from, for names and messages


def client_cache() -> LocalStore:
    """This machine's blob cache (shared with the sessions): pulled and fetched layers."""
    return LocalStore(ClientSettings().data_dir / "cache")


def _image_state(image: Image, blobs: Mapping[str, Path], ref: str) -> _State:
    cache = client_cache()
    layers: list[LayerRef] = []
    for layer in image.layers:
        blob = blobs.get(layer.digest)
        if not cache.has(layer.digest):
            if blob is None:
                raise ContainerError(f"{ref}: layer sha256:{layer.digest} was not provided")
            cache.put_file(Path(blob))
        layers.append(_ImageLayer(layer, cache.path(layer.digest)))
    return _State(
        layers=tuple(layers),
        config=image.config,
        platform=image.platform,
        history=tuple(image.history),
        ref=ref,
    )


def _pull(ref: str, platform: Platform | None) -> _State:
    from diracx.api.registry import RegistryClient

    cache = client_cache()
    with RegistryClient() as registry:
        resolved = registry.pull(ref, cache, platform=platform)
    blobs = {layer.digest: cache.path(layer.digest) for layer in resolved.image.layers}
    return _image_state(resolved.image, blobs, ref)


def _import(path: Path, platform: Platform | None, tag: str | None) -> _State:
    if path.is_dir():
        image, blobs = read_oci_layout(path, platform=platform, ref=tag)
        return _image_state(image, blobs, str(path))
    with tempfile.TemporaryDirectory(dir=client_cache().tmp) as tmp:
        image, blobs = read_docker_archive(path, tmp, tag=tag, platform=platform)
        return _image_state(image, blobs, str(path))


# --------------------------------------------------------------------------- the container


class _StepStage(Stage):
    """A stage of a container pipeline: it may carry blobs to send and secrets to pass."""

    __slots__ = ("_secrets",)
    _secrets: tuple[Secret, ...]

    def secret_values(self) -> dict[str, str]:
        """The values of the secrets this step names (read now)."""
        return {s.name: s.plaintext() for s in self._secrets}


Op = Callable[[_State], _State]


class Container:
    """A lazy container: a base image and operations. Every method returns a new Container."""

    __slots__ = ("_op", "_parent", "_session", "_state")
    _session: Session | None

    def __init__(
        self,
        parent: Container | None = None,
        op: Op | None = None,
        session: Session | None = None,
    ) -> None:
        self._parent = parent
        self._op = op
        self._session = session if session is not None else (parent._session if parent else None)
        self._state: _State | None = None

    def _then(self, op: Op) -> Container:
        return Container(self, op)

    def _resolve(self) -> _State:
        """Apply the operations (pulling the base image first): memoized, iterative."""
        chain: list[Container] = []
        node: Container | None = self
        while node is not None and node._state is None:
            chain.append(node)
            node = node._parent
        state = node._state if node is not None else _State()
        assert state is not None
        for c in reversed(chain):
            state = c._op(state) if c._op is not None else state
            c._state = state
        return state

    def __repr__(self) -> str:
        if self._state is None:
            return "<Container (not evaluated)>"
        s = self._state
        return f"<Container {s.ref or 'scratch'} +{len(s.layers)} layers>"

    # -- bases ---------------------------------------------------------------------

    def from_(self, address: str, *, platform: str | Platform | None = None) -> Container:
        """Start from an image of a registry (``alpine:3.20``, ``ghcr.io/o/i@sha256:...``).

        Pulled when a result is first asked for; only the layers this machine lacks are
        downloaded, and only those the engine lacks are sent to it.
        """
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        return self._then(lambda s: _pull(address, wanted or s.platform))

    def import_(self, path: str | os.PathLike[str], *, tag: str | None = None) -> Container:
        """Start from an image on disk: an OCI layout directory or a ``docker save`` tar."""
        return import_image(path, tag=tag, session=self._session)

    # -- settings ----------------------------------------------------------------------

    def with_env_variable(self, name: str, value: str, *, expand: bool = False) -> Container:
        """Set an environment variable for later execs (``${VAR}`` expanded with *expand*)."""
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"invalid environment variable name {name!r}")

        def op(s: _State) -> _State:
            v = _expand(value, s.config.env_map()) if expand else value
            return _configured(s, s.config.with_env(name, v), f"ENV {name}={v}")

        return self._then(op)

    def without_env_variable(self, name: str) -> Container:
        def op(s: _State) -> _State:
            env = [e for e in s.config.env if e.partition("=")[0] != name]
            return _configured(s, s.config.model_copy(update={"env": env}), f"UNSET {name}")

        return self._then(op)

    def with_workdir(self, path: str) -> Container:
        """The working directory of later execs (relative: to the current one)."""

        def op(s: _State) -> _State:
            workdir = _absolute(path, s.config.working_dir or "/")
            return _configured(
                s, s.config.model_copy(update={"working_dir": workdir}), f"WORKDIR {workdir}"
            )

        return self._then(op)

    def with_user(self, user: str) -> Container:
        """The user of later execs: ``name``, ``uid``, ``name:group`` or ``uid:gid``."""

        def op(s: _State) -> _State:
            return _configured(s, s.config.model_copy(update={"user": user}), f"USER {user}")

        return self._then(op)

    def with_entrypoint(self, args: Sequence[str]) -> Container:
        argv = _argv(args, "with_entrypoint")
        return self._then(
            lambda s: _configured(
                s, s.config.model_copy(update={"entrypoint": argv}), f"ENTRYPOINT {argv}"
            )
        )

    def with_default_args(self, args: Sequence[str]) -> Container:
        argv = _argv(args, "with_default_args")
        return self._then(
            lambda s: _configured(s, s.config.model_copy(update={"cmd": argv}), f"CMD {argv}")
        )

    def with_label(self, name: str, value: str) -> Container:
        def op(s: _State) -> _State:
            labels = {**s.config.labels, name: value}
            return _configured(
                s, s.config.model_copy(update={"labels": labels}), f"LABEL {name}={value}"
            )

        return self._then(op)

    def with_network(self) -> Container:
        """Later execs may use the network (they have none by default)."""
        return self._then(lambda s: replace(s, network=True))

    def without_network(self) -> Container:
        return self._then(lambda s: replace(s, network=False))

    def with_mounted_cache(
        self, path: str, cache: CacheVolume, *, sharing: Sharing = "shared"
    ) -> Container:
        """Mount a cache volume at *path* for later execs (not part of any layer or hash).

        ``shared``: every exec sees and changes the same directory; ``private``: each
        exec gets a copy whose changes are dropped; ``locked``: one exec at a time.
        """
        if not isinstance(cache, CacheVolume):
            raise TypeError("with_mounted_cache takes a cache_volume(name)")
        if sharing not in ("shared", "private", "locked"):
            raise ValueError(f"sharing must be 'shared', 'private' or 'locked', not {sharing!r}")

        def op(s: _State) -> _State:
            where = _absolute(path, s.config.working_dir or "/")
            caches = (*(c for c in s.caches if c[0] != where), (where, cache, sharing))
            return replace(s, caches=caches)

        return self._then(op)

    def with_secret_variable(self, name: str, secret: Secret) -> Container:
        """Set an environment variable of later execs to a secret (masked in their output)."""
        if not isinstance(secret, Secret):
            raise TypeError("with_secret_variable takes a secret(...) or secret_from_env(...)")

        def op(s: _State) -> _State:
            secrets = (*(x for x in s.secrets if x[0] != name), (name, secret))
            return replace(s, secrets=secrets)

        return self._then(op)

    def with_mounted_directory(self, path: str, source: Any) -> Container:
        """Mount a directory at *path* for later execs (writes to it are dropped)."""
        directory = as_directory(source)
        return self._then(
            lambda s: replace(
                s, mounts=(*s.mounts, (_absolute(path, s.config.working_dir or "/"), directory))
            )
        )

    def with_mounted_file(self, path: str, source: File) -> Container:
        if not isinstance(source, File):
            raise TypeError("with_mounted_file takes a File")
        return self._then(
            lambda s: replace(
                s, mounts=(*s.mounts, (_absolute(path, s.config.working_dir or "/"), source))
            )
        )

    # -- filesystem steps -------------------------------------------------------------

    def with_directory(
        self, path: str, directory: Any, *, exclude: Iterable[str] = ()
    ) -> Container:
        """Copy a directory (a Directory, stage, realization or host path) into *path*."""
        d = as_directory(directory)
        patterns = _as_list(exclude)
        if patterns:
            d = d.without(*patterns)

        def op(s: _State) -> _State:
            dest = _absolute(path, s.config.working_dir or "/")
            # a host directory is scanned without its exclusions; other trees are
            # narrowed by the worker
            on_host = isinstance(d.source, HostTree)
            copy: dict[str, Any] = {"path": dest, "input": "src", "kind": "directory"}
            if not on_host and d.sub:
                copy["sub"] = d.sub
            if not on_host and d.exclude:
                copy["exclude"] = list(d.exclude)
            src = d.source
            return _copy_step(s, copy, src, f"COPY {dest}")

        return self._then(op)

    def with_file(self, path: str, file: File, *, permissions: int | None = None) -> Container:
        """Copy a file to *path* (the file's own mode, or *permissions*)."""
        if not isinstance(file, File):
            raise TypeError("with_file takes a File (host().file(...), ctr.file(...))")

        def op(s: _State) -> _State:
            dest = _absolute(path, s.config.working_dir or "/")
            src = file.as_input()
            copy: dict[str, Any] = {"path": dest, "input": "src", "kind": "file", "sub": file.name}
            if permissions is not None:
                copy["permissions"] = permissions
            return _copy_step(s, copy, src, f"COPY {dest}")

        return self._then(op)

    def with_new_file(
        self, path: str, contents: str | bytes = "", *, permissions: int = 0o644
    ) -> Container:
        """Write a new file with these contents at *path*."""
        data = contents.encode() if isinstance(contents, str) else bytes(contents)

        def op(s: _State) -> _State:
            dest = _absolute(path, s.config.working_dir or "/")
            digest = hashlib.sha256(data).hexdigest()
            tree = Tree({"file": TreeEntry("file", digest, len(data))})
            manifest = tree.manifest_bytes()
            ref = TreeRef(hashlib.sha256(manifest).hexdigest())
            copy = {"path": dest, "input": "src", "kind": "file", "sub": "file",
                    "permissions": permissions}  # fmt: skip
            return _copy_step(s, copy, ref, f"COPY {dest}", {ref.digest: manifest, digest: data})

        return self._then(op)

    def with_exec(
        self,
        args: Sequence[str],
        *,
        stdin: str | None = None,
        expect: Expect = "success",
        use_entrypoint: bool = False,
        timeout: float | None = None,
        memory: int | str | None = None,
    ) -> Container:
        """Run *args* (the whole argv, no shell) in the container; its changes are a layer.

        *expect*: ``success`` (exit code 0), ``failure`` (not 0) or ``any``; otherwise the
        step fails. *timeout* (seconds) kills the whole sandbox; *memory* (MiB, or
        ``"512M"``, ``"2G"``) limits it. Both are part of the step's identity.
        """
        argv = _argv(args, "with_exec")
        if expect not in ("success", "failure", "any"):
            raise ValueError(f"expect must be 'success', 'failure' or 'any', not {expect!r}")
        if stdin is not None and not isinstance(stdin, str):
            raise TypeError("stdin must be a string")
        memory_mb = _memory(memory)

        def op(s: _State) -> _State:
            full = [*(s.config.entrypoint or []), *argv] if use_entrypoint else argv
            if not full:
                raise ContainerError("with_exec: nothing to run")
            return _exec_step(s, full, stdin, expect, timeout, memory_mb)

        return self._then(op)

    # -- results ---------------------------------------------------------------------

    @property
    def stage(self) -> Stage | None:
        """The stage of the last step (exec or copy), or None for a bare image."""
        layers = self._resolve().layers
        last = layers[-1] if layers else None
        return last.stage if isinstance(last, _StepLayer) else None

    def sync(self, *, session: Session | None = None) -> Container:
        """Run every step now (those not run before); this container, evaluated."""
        stages = [layer.stage for layer in self._resolve().layers if isinstance(layer, _StepLayer)]
        if stages:
            _realize(stages[-1], session or self._session)
        return self

    def _exec_output(self, name: str, session: Session | None) -> bytes:
        state = self._resolve()
        if state.last_exec is None:
            raise ContainerError(f"{name}(): this container has run no command (use with_exec)")
        return _realize(state.last_exec, session or self._session).read_bytes(name)

    def stdout(self, *, session: Session | None = None) -> str:
        """What the last exec printed on its standard output (secrets masked)."""
        return self._exec_output("stdout", session).decode(errors="replace")

    def stderr(self, *, session: Session | None = None) -> str:
        return self._exec_output("stderr", session).decode(errors="replace")

    def exit_code(self, *, session: Session | None = None) -> int:
        """The exit code of the last exec (128+N when killed by signal N)."""
        return int(self._exec_output("exit_code", session).decode().strip())

    def directory(self, path: str) -> Directory:
        """The directory *path* of this container's filesystem (lazy; an input of stages)."""
        return Directory(self._extract(path, "directory"), _session=self._session)

    def rootfs(self) -> Directory:
        return self.directory("/")

    def file(self, path: str) -> File:
        """The file *path* of this container's filesystem."""
        where = _absolute(path, self._resolve().config.working_dir or "/")
        return File(self._extract(where, "file"), PurePosixPath(where).name, self._session)

    def _extract(self, path: str, kind: str) -> Stage:
        state = self._resolve()
        where = _absolute(path, state.config.working_dir or "/")
        inputs, names, blobs = _layer_inputs(state.layers)
        builder = {
            "executor": "oci",
            "layers": names,
            "extract": {"path": where, "kind": kind},
        }
        stage = _StepStage(
            f"{kind}-{_slug(PurePosixPath(where).name or 'root')}", builder, inputs=inputs
        )
        stage._secrets = ()
        stage._blobs = MappingProxyType(blobs)
        return stage

    def image(self, *, session: Session | None = None) -> Image:
        """The image this container is (every step run): config, layers, history."""
        state = self._resolve()
        base = [layer.layer for layer in state.layers if isinstance(layer, _ImageLayer)]
        layers = list(base)
        if state.layers and isinstance(state.layers[-1], _StepLayer):
            # the last step lists every layer of the filesystem (stack.json)
            result = _realize(state.layers[-1].stage, session or self._session)
            known = {layer.digest: layer for layer in base}
            layers = [
                known.get(d["digest"])
                or Layer(
                    digest=d["digest"],
                    media_type=MEDIA_OCI_LAYER,  # what steps make: plain tars
                    size=d["size"],
                    diff_id=d["digest"],
                )
                for d in json.loads(result.read_bytes(STACK_FILE))
            ]
        return Image(
            config=state.config,
            layers=layers,
            platform=state.platform,
            history=list(state.history),
        )

    def _blob_opener(self, image: Image, session: Session | None) -> Callable[[str], BinaryIO]:
        """Opens layer blobs: from this machine's cache, fetched from the engine first."""
        cache = client_cache()
        missing = cache.missing(layer.digest for layer in image.layers)
        if missing:
            with _session_for(session or self._session) as s:
                s.fetch_blobs(missing)
        return lambda digest: open(cache.path(digest), "rb")

    def export_image(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["auto", "oci", "docker"] = "auto",
        tag: str | None = None,
        session: Session | None = None,
    ) -> str:
        """Write the image to *path*: an OCI layout directory (``format="oci"``, or a path
        without ``.tar``) or a tarball that ``docker load`` reads. Returns its digest."""
        image = self.image(session=session)
        opener = self._blob_opener(image, session)
        dest = Path(path)
        if format == "auto":
            format = "docker" if dest.suffix in (".tar", ".tgz") or dest.is_file() else "oci"
        if format == "oci":
            return "sha256:" + write_oci_layout(image, opener, dest, ref_name=tag)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return "sha256:" + write_docker_archive(image, opener, dest, repo_tags=[tag] if tag else [])

    def export(self, path: str | os.PathLike[str], **kwargs: Any) -> str:
        """As Dagger's ``Container.export``: the image as a tarball (see ``export_image``)."""
        return self.export_image(path, **kwargs)

    def publish(self, address: str, *, session: Session | None = None) -> str:
        """Push the image to a registry; returns ``address@sha256:<digest>``."""
        from diracx.api.registry import RegistryClient

        image = self.image(session=session)
        opener = self._blob_opener(image, session)
        with RegistryClient() as registry:
            digest = registry.push(image, address, opener)
        base = address.rsplit("@", 1)[0]
        return f"{base}@sha256:{digest}"


def container(
    *, session: Session | None = None, platform: str | Platform | None = None
) -> Container:
    """An empty container (``scratch``); start it with ``from_(...)`` or ``import_(...)``.

    With *session*, its results run through that session.
    """
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    base = Container(session=session)
    if wanted is not None:
        return base._then(lambda s: replace(s, platform=wanted))
    return base


def import_image(
    path: str | os.PathLike[str], *, tag: str | None = None, session: Session | None = None
) -> Container:
    """A container from an image on disk: an OCI layout directory or a ``docker save`` tar."""
    where = _abspath(path, "import_image")
    if not where.exists():
        raise FileNotFoundError(f"import_image: no such file or directory: {where}")
    return Container(session=session)._then(lambda _: _import(where, None, tag))


# --------------------------------------------------------------------------- steps


def _configured(s: _State, config: ImageConfig, created_by: str) -> _State:
    entry = HistoryEntry(created_by=created_by, comment="diracx", empty_layer=True)
    return replace(s, config=config, history=(*s.history, entry))


def _layer_inputs(
    layers: Sequence[LayerRef],
) -> tuple[dict[str, Source], list[str], dict[str, Any]]:
    """The layer inputs of a step, their names, and the blobs the base layers need.

    On top of an earlier step: that step only (its output lists the whole stack). On
    a bare image: its layers, ``layer_<i>``, each a tree holding ``layer.tar``.
    """
    if layers and isinstance(layers[-1], _StepLayer):
        return {"stack": layers[-1].stage}, ["stack"], {}
    inputs: dict[str, Source] = {}
    blobs: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        assert isinstance(layer, _ImageLayer)
        manifest = layer.tree.manifest_bytes()
        digest = hashlib.sha256(manifest).hexdigest()
        inputs[f"layer_{i}"] = TreeRef(digest)
        blobs[digest] = manifest
        blobs[layer.layer.digest] = layer.blob  # a path: read when it is uploaded
    return inputs, list(inputs), blobs


def _step(
    s: _State,
    name: str,
    builder: dict[str, Any],
    extra_inputs: Mapping[str, Source],
    blobs: Mapping[str, Any],
    secrets: tuple[Secret, ...],
) -> _StepStage:
    inputs, names, layer_blobs = _layer_inputs(s.layers)
    builder = {"executor": "oci", "layers": names, **builder}
    stage = _StepStage(name, builder, inputs={**inputs, **extra_inputs})
    stage._secrets = secrets
    stage._blobs = MappingProxyType({**layer_blobs, **blobs})
    return stage


def _copy_step(
    s: _State, copy: dict[str, Any], src: Source, created_by: str, blobs: Mapping[str, Any] = {}
) -> _State:
    stage = _step(s, "copy", {"copies": [copy]}, {"src": src}, blobs, ())
    entry = HistoryEntry(created_by=created_by, comment="diracx")
    return replace(s, layers=(*s.layers, _StepLayer(stage)), history=(*s.history, entry))


def _exec_step(
    s: _State,
    argv: list[str],
    stdin: str | None,
    expect: Expect,
    timeout: float | None,
    memory_mb: int | None,
) -> _State:
    env = s.config.env_map()
    env.setdefault("PATH", DEFAULT_PATH)
    builder: dict[str, Any] = {
        "argv": argv,
        "env": env,
        "workdir": s.config.working_dir or "/",
    }
    if s.config.user:
        builder["user"] = s.config.user
    if stdin is not None:
        builder["stdin"] = stdin
    if expect != "success":
        builder["expect"] = expect
    if s.network:
        builder["network"] = True
    if timeout is not None:
        builder["timeout"] = timeout
    if memory_mb is not None:
        builder["memory_mb"] = memory_mb
    inputs: dict[str, Source] = {}
    mounts = []
    for i, (path, value) in enumerate(s.mounts):
        name = f"mount_{i}"
        if isinstance(value, File):
            inputs[name] = value.as_input()
            mounts.append({"path": path, "input": name, "kind": "file", "sub": value.name})
        else:
            inputs[name] = value.as_input()
            mounts.append({"path": path, "input": name})
    if mounts:
        builder["mounts"] = mounts
    if s.caches:
        builder["caches"] = [{"path": p, "name": c.name, "sharing": sh} for p, c, sh in s.caches]
    if s.secrets:
        builder["secrets"] = [{"env": env_name, "secret": sec.name} for env_name, sec in s.secrets]
    name = f"exec-{_slug(PurePosixPath(argv[0]).name)}"
    stage = _step(s, name, builder, inputs, {}, tuple(sec for _, sec in s.secrets))
    entry = HistoryEntry(created_by=shlex.join(argv), comment="diracx with_exec")
    return replace(
        s,
        layers=(*s.layers, _StepLayer(stage)),
        history=(*s.history, entry),
        last_exec=stage,
    )


def _select(source: Source, sub: str, kind: str, exclude: list[str]) -> Stage:
    """A step whose output is (a part of) *source*: a subdirectory, without some paths, or
    one file under its name. It runs no sandbox (see the ``oci`` executor)."""
    copy: dict[str, Any]
    if kind == "file":
        name = PurePosixPath(sub).name
        copy = {"path": f"/{name}", "input": "src", "sub": sub, "kind": "file"}
        builder = {
            "executor": "oci",
            "copies": [copy],
            "extract": {"path": f"/{name}", "kind": "file"},
        }
    else:
        copy = {"path": "/", "input": "src", "sub": sub, "kind": "directory"}
        if exclude:
            copy["exclude"] = exclude
        builder = {
            "executor": "oci",
            "copies": [copy],
            "extract": {"path": "/", "kind": "directory"},
        }
    return Stage(
        f"select-{_slug(PurePosixPath(sub).name or 'root')}", builder, inputs={"src": source}
    )


# --------------------------------------------------------------------------- helpers


def as_directory(value: Any) -> Directory:
    """A Directory from a Directory, a stage, a TreeRef, a realization or a host path."""
    if isinstance(value, Directory):
        return value
    if isinstance(value, Stage | TreeRef | HostTree):
        return Directory(value)
    if isinstance(value, str | os.PathLike):
        return Directory(host_dir(value))
    as_input = getattr(value, "as_input", None)
    if callable(as_input):
        ref = as_input()
        if isinstance(ref, Stage | TreeRef | HostTree):
            return Directory(ref)
    raise TypeError(
        "expected a directory (Directory, Stage, realization or host path), "
        f"not {type(value).__name__}"
    )


def _argv(args: Sequence[str], where: str) -> list[str]:
    if isinstance(args, str):
        raise TypeError(f"{where} takes a list of arguments, e.g. ['sh', '-c', {args!r}]")
    argv = list(args)
    for i, a in enumerate(argv):
        if not isinstance(a, str):
            raise TypeError(f"{where}: argument {i} must be a string, not {type(a).__name__}")
    return argv


def _as_list(patterns: Iterable[str]) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _absolute(path: str, cwd: str) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError(f"a container path must be a non-empty string, not {path!r}")
    full = path if path.startswith("/") else f"{cwd.rstrip('/')}/{path}"
    return check_container_path(os.path.normpath(full).replace("//", "/"))


def _join_rel(base: str, path: str) -> str:
    parts = [p for p in f"{base}/{path}".split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"'..' is not allowed in {path!r}")
    return "/".join(parts)


def _slug(text: str) -> str:
    slug = _SLUG_RE.sub("-", text).strip("-.")[:40]
    return slug or "step"


def _expand(value: str, env: Mapping[str, str]) -> str:
    return _VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _memory(memory: int | str | None) -> int | None:
    if memory is None:
        return None
    from diracx.api.stages import _memory_mb

    return _memory_mb("with_exec", memory)


def _copy_host_tree(src: HostTree, dest: Path) -> None:
    """Copy a host file or directory (its exclusions applied) to *dest*, as a tree would be."""
    tree = src.scan({})
    root = src.path if src.kind != "file" else src.path.parent
    dest.mkdir(parents=True, exist_ok=True)
    for path, entry in sorted(tree.entries.items()):
        target = dest / path
        if entry.kind == "directory":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "symlink":
            os.symlink(os.readlink(root / path), target)
        else:
            shutil.copyfile(root / path, target)
            os.chmod(target, 0o755 if entry.kind == "executable" else 0o644)


# --------------------------------------------------------------------------- sessions


class _session_for:
    """The given session, or one opened for this call (closed after it)."""

    def __init__(self, session: Session | None) -> None:
        self.given = session
        self.opened: Session | None = None

    def __enter__(self) -> Session:
        if self.given is not None:
            return self.given
        from diracx.api.sync import connect

        self.opened = connect()
        return self.opened

    def __exit__(self, *exc: object) -> None:
        if self.opened is not None:
            self.opened.close()


def _realize(stage: Stage, session: Session | None) -> _Result:
    with _session_for(session) as s:
        return _Result(s.realize(stage).tree(), session)


class _Result:
    """A step's output tree; its files are read through this machine's cache (fetched
    with the given session, or one opened for the read)."""

    def __init__(self, tree: Tree, session: Session | None) -> None:
        self._tree = tree
        self.session = session

    def tree(self) -> Tree:
        return self._tree

    def read_bytes(self, path: str) -> bytes:
        entry = self._tree.entries.get(path)
        if entry is None or entry.digest is None:
            raise ContainerError(f"the step's output has no {path!r}")
        cache = client_cache()
        if not cache.has(entry.digest):
            with _session_for(self.session) as s:
                s.fetch_blobs([entry.digest])
        return cache.read_bytes(entry.digest)


def _tree_of(src: Source, session: Session | None) -> Tree:
    if isinstance(src, HostTree):
        return src.scan({})
    with _session_for(session) as s:
        if isinstance(src, TreeRef):
            return s.fetch_tree(src.digest)
        return _realize(src, s).tree()


def _read_file(src: Source, name: str, session: Session | None) -> bytes:
    assert not isinstance(src, HostTree)
    with _session_for(session) as s:
        tree = s.fetch_tree(src.digest) if isinstance(src, TreeRef) else _realize(src, s).tree()
        entry = tree.entries.get(name)
        if entry is None or entry.digest is None:
            raise ContainerError(f"no file {name!r} in the result")
        s.fetch_blobs([entry.digest])
        return client_cache().read_bytes(entry.digest)


def _download(src: Source, dest: Path, session: Session | None) -> Path:
    from diracx.core.tree import materialize_tree

    assert not isinstance(src, HostTree)
    with _session_for(session) as s:
        tree = s.fetch_tree(src.digest) if isinstance(src, TreeRef) else _realize(src, s).tree()
        s.fetch_blobs(sorted(tree.blob_digests()))
        materialize_tree(client_cache(), tree, dest, readonly=False)
    return dest
