"""The lazy stage DSL: stages are data, nothing runs when one is created.

A :class:`Stage` is a named, configured step: a builder (how it is built), a
config, inputs (other stages, host files and directories, trees already in the
store) and a matcher. Its identity, the DRef, is computed from that data by
:class:`diracx.core.derivation.Derivation`; nothing is built until a session
realizes it.

Two ways to make stages:

- :func:`command` — run a program (no shell) in a scratch directory. Each input
  is materialized read-only at ``inputs/<name>`` and its path is given as
  ``$IN_<NAME>``; outputs are written under ``$OUT``.
- :func:`stage` — decorate a module-level Python function. Its parameters with
  defaults are the stage's config, those without are its inputs (a ``Path`` to
  the materialized input at build time) and ``out`` is the output directory::

      @stage
      def train(data, out, epochs=10, lr=0.01):
          ...

      model = train(data=host_dir("data"), epochs=20)

Inputs may be a :class:`Stage`, :func:`host_dir` / :func:`host_file` (turned
into trees when the pipeline is instantiated), a :class:`TreeRef` (a tree that
is already in the store), or any object with an ``as_input()`` method returning
a :class:`TreeRef` — the realizations returned by a session have one, so the
result of one pipeline can feed the next.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import inspect
import math
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol, overload, runtime_checkable

from pydantic import ValidationError

from diracx.core.builders import BuilderSpec, parse_builder
from diracx.core.canonical import check_is_digest
from diracx.core.derivation import (
    DEFAULT_SCHEDULING,
    INPUT_NAME_RE,
    NAME_RE,
    Matcher,
    Scheduling,
)
from diracx.core.exceptions import InvalidPipelineError
from diracx.core.store import hash_file
from diracx.core.tree import Kind, Tree, TreeEntry

__all__ = [
    "HostTree",
    "Stage",
    "StageFunction",
    "StageInput",
    "SupportsAsInput",
    "TreeRef",
    "command",
    "host_dir",
    "host_file",
    "stage",
]

# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class TreeRef:
    """An input that is a tree already in the store, named by its digest.

    The server must already hold the tree (for example the output of an earlier
    realization); it is not uploaded.
    """

    digest: str

    def __post_init__(self) -> None:
        check_is_digest(self.digest, what="TreeRef digest")

    def as_input(self) -> TreeRef:
        return self


@runtime_checkable
class SupportsAsInput(Protocol):
    """Anything that can stand for a tree in the store, such as a realization.

    ``as_input()`` must return a :class:`TreeRef` (the realization's output
    tree). It is called when the stage that uses the object is created.
    """

    def as_input(self) -> TreeRef: ...


@dataclass(frozen=True, slots=True)
class HostTree:
    """A file or directory of the client's machine, to be sent as a tree.

    Lazy: the filesystem is only read when a pipeline that uses it is
    instantiated (a module defining stages is also imported by the workers that
    run its python stages, where host paths do not exist). Make one with
    :func:`host_dir` or :func:`host_file`.
    """

    path: Path  # absolute, made so when created (a later chdir does not change it)
    kind: Literal["dir", "file", "auto"]
    exclude: tuple[str, ...] = ()

    def __repr__(self) -> str:
        if self.kind == "file":
            return f"host_file({str(self.path)!r})"
        if self.kind == "auto":
            return f"Path({str(self.path)!r})"
        extra = f", exclude={list(self.exclude)!r}" if self.exclude else ""
        return f"host_dir({str(self.path)!r}{extra})"

    def scan(self, uploads: dict[str, Path | bytes]) -> Tree:
        """Hash the file or directory into a tree (nothing is copied).

        Adds to *uploads* every blob the tree refers to, mapped to the local file
        (read at upload time) or, for the manifest and symlink targets, to its bytes.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            what = {"dir": "directory", "file": "file", "auto": "file or directory"}[self.kind]
            raise FileNotFoundError(f"{self!r}: no such {what}: {self.path}") from None
        kind = self.kind
        if kind == "auto":
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        entries: dict[str, TreeEntry] = {}
        if kind == "file":
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{self!r}: {self.path} is not a regular file")
            name = _utf8_name(self.path.name, self.path)
            entries[name] = _file_entry(self.path, st, uploads)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{self!r}: {self.path} is not a directory")
            _scan_dir(self.path, _Excluder(self.exclude), entries, uploads)
        tree = Tree(entries)
        manifest = tree.manifest_bytes()
        uploads[hashlib.sha256(manifest).hexdigest()] = manifest
        return tree


def host_dir(path: str | os.PathLike[str], *, exclude: Iterable[str] = ()) -> HostTree:
    """A directory of this machine as an input; its files are hashed when instantiated.

    *exclude* holds glob patterns: one without ``/`` (``"__pycache__"``,
    ``"*.pyc"``, ``".git"``) matches a file or directory name at any depth; one
    with ``/`` (``"docs/build"``) matches the path relative to *path*; a
    trailing ``/`` restricts a pattern to directories. An excluded directory is
    skipped whole. File names, contents, the executable bit, symlinks (stored as
    links, not followed) and empty directories are part of the tree's digest.
    """
    if isinstance(exclude, str):
        exclude = [exclude]
    patterns = tuple(exclude)
    for p in patterns:
        if not isinstance(p, str) or not p.strip("/"):
            raise ValueError(f"host_dir exclude patterns must be non-empty strings, not {p!r}")
    return HostTree(_abspath(path, "host_dir"), "dir", patterns)


def host_file(path: str | os.PathLike[str]) -> HostTree:
    """A single file of this machine as an input: a tree holding it under its basename."""
    return HostTree(_abspath(path, "host_file"), "file")


def _abspath(path: str | os.PathLike[str], what: str) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{what}() takes a path, not {type(path).__name__}")
    return Path(os.path.abspath(os.fspath(path)))


class _Excluder:
    def __init__(self, patterns: tuple[str, ...]) -> None:
        # (regex, match the relative path rather than the name, directories only)
        self.rules: list[tuple[re.Pattern[str], bool, bool]] = []
        for pattern in patterns:
            dir_only = pattern.endswith("/")
            p = pattern.removeprefix("./").strip("/")
            self.rules.append((re.compile(fnmatch.translate(p)), "/" in p, dir_only))

    def __call__(self, name: str, rel: str, is_dir: bool) -> bool:
        for regex, on_path, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if regex.match(rel if on_path else name):
                return True
        return False


def _utf8_name(name: str, path: Path | str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{path}: file names must be valid UTF-8 to be stored in a tree") from None
    return name


def _scan_dir(
    root: Path, excluded: _Excluder, entries: dict[str, TreeEntry], uploads: dict[str, Path | bytes]
) -> None:
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        children = 0
        with os.scandir(directory) as it:
            for entry in it:
                rel = prefix + entry.name
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if excluded.rules and excluded(entry.name, rel, stat.S_ISDIR(mode)):
                    continue
                children += 1
                _utf8_name(entry.name, entry.path)
                if stat.S_ISREG(mode):
                    entries[rel] = _file_entry(Path(entry.path), st, uploads)
                elif stat.S_ISDIR(mode):
                    stack.append((entry.path, rel + "/"))
                elif stat.S_ISLNK(mode):
                    try:
                        target = os.readlink(entry.path).encode("utf-8")
                    except UnicodeEncodeError:
                        raise ValueError(
                            f"{entry.path}: symlink targets must be valid UTF-8 to be stored"
                        ) from None
                    digest = hashlib.sha256(target).hexdigest()
                    uploads[digest] = target
                    entries[rel] = TreeEntry("symlink", digest, len(target))
                else:
                    raise ValueError(
                        f"{entry.path}: only files, directories and symlinks can be sent "
                        "(exclude it with host_dir(..., exclude=[...]))"
                    )
        if children == 0 and prefix:
            entries[prefix[:-1]] = TreeEntry("directory")


# Per-process cache of file digests: (device, inode) -> (size, mtime_ns, ctime_ns, digest).
# Only files whose last change is older than _SETTLED_NS are cached, so that a write
# within the filesystem's timestamp granularity cannot go unnoticed.
_FILE_DIGESTS: dict[tuple[int, int], tuple[int, int, int, str]] = {}
_SETTLED_NS = 2_000_000_000


def _file_entry(path: Path, st: os.stat_result, uploads: dict[str, Path | bytes]) -> TreeEntry:
    kind: Kind = "executable" if st.st_mode & 0o111 else "file"
    key = (st.st_dev, st.st_ino)
    cached = _FILE_DIGESTS.get(key)
    if cached is not None and cached[:3] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        digest, size = cached[3], st.st_size
    else:
        digest, size = hash_file(path)
        if (
            size == st.st_size
            and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS
        ):
            _FILE_DIGESTS[key] = (size, st.st_mtime_ns, st.st_ctime_ns, digest)
    uploads.setdefault(digest, path)
    return TreeEntry(kind, digest, size)


# --------------------------------------------------------------------------- JSON values


class _NotJSON(Exception):
    def __init__(self, value: Any, reason: str) -> None:
        self.value, self.reason = value, reason


_SCALARS = (str, int, bool, type(None))


def _json_copy(value: Any) -> Any:
    t = type(value)
    if t in _SCALARS:
        return value
    if t is list or t is tuple:
        return [v if type(v) in _SCALARS else _json_copy(v) for v in value]
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                if not isinstance(k, str):
                    raise _NotJSON(k, "its keys must be strings")
                k = str.__str__(k)
            out[k] = v if type(v) in _SCALARS else _json_copy(v)
        return out
    if t is float:
        if not math.isfinite(value):
            raise _NotJSON(value, "this number has no JSON form")
        return value
    # subclasses: str and int enums, OrderedDict, other mappings and sequences
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _json_copy(float(value))
    if isinstance(value, Mapping):
        return _json_copy(dict(value))
    if isinstance(value, list | tuple):
        return _json_copy(list(value))
    raise _NotJSON(value, "")


def _json_value(value: Any, where: str) -> Any:
    """A deep copy of *value* as plain JSON; TypeError naming *where* otherwise."""
    try:
        return _json_copy(value)
    except _NotJSON as exc:
        bad, reason = exc.value, exc.reason
    if reason:
        raise TypeError(f"{where} must be JSON, but {reason}: {bad!r}") from None
    hint = ""
    if isinstance(bad, os.PathLike):
        hint = " (to send a host file or directory, make it an input with host_file()/host_dir())"
    elif isinstance(bad, Stage | HostTree | TreeRef):
        hint = " (stages and trees are inputs: give that parameter no default)"
    what = f"{bad!r}" if len(repr(bad)) < 60 else type(bad).__name__
    raise TypeError(
        f"{where} must be JSON (None, bool, int, float, str, list, dict with string keys); "
        f"it holds {what} ({type(bad).__name__}){hint}"
    ) from None


# --------------------------------------------------------------------------- stages


class Stage:
    """A lazy, immutable build step. Nothing runs when a stage is created.

    ``Stage(name, builder, config=..., inputs=..., matcher=...)`` makes one from
    its parts; :func:`command` and :func:`stage` are the usual ways. Stages
    compare and hash by identity; two equal stages instantiate to one derivation.
    """

    __slots__ = (
        "_blobs",
        "_builder",
        "_config",
        "_deps",
        "_dref",
        "_inputs",
        "_matcher",
        "_memo",
        "_name",
        "_pure",
        "_scheduling",
        "_spec",
    )

    # (input DRefs and tree digests, the Derivation made for them): set by diracx.api.instantiate
    _memo: tuple[tuple[str, ...], Any] | None
    _dref: str | None  # set for a pure stage, whose derivation never changes
    _spec: BuilderSpec  # the parsed builder, so that it is parsed once

    def __init__(
        self,
        name: str,
        builder: Mapping[str, Any],
        *,
        config: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        matcher: Matcher | None = None,
        scheduling: Scheduling | None = None,
    ) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(
                f"stage name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        self._name = name
        if not isinstance(builder, Mapping):
            raise TypeError(
                f"stage {name!r}: the builder must be a dict, not {type(builder).__name__}"
            )
        builder_doc: dict[str, Any] = _json_value(builder, f"stage {name!r} builder")
        try:
            self._spec = parse_builder(builder_doc)
        except InvalidPipelineError as exc:
            raise ValueError(f"stage {name!r}: {exc}") from None
        self._builder = builder_doc
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise TypeError(f"stage {name!r}: config must be a dict, not {type(config).__name__}")
        self._config: dict[str, Any] = _json_value(config, f"stage {name!r} config")
        normalized: dict[str, Stage | TreeRef | HostTree] = {}
        env_names: dict[str, str] = {}
        for input_name, value in (inputs or {}).items():
            if not isinstance(input_name, str) or not INPUT_NAME_RE.match(input_name):
                raise ValueError(
                    f"stage {name!r}: input name {input_name!r} must be a Python-style identifier "
                    "(letters, digits and '_', at most 64)"
                )
            clash = env_names.setdefault(input_name.upper(), input_name)
            if clash != input_name:
                raise ValueError(
                    f"stage {name!r}: inputs {clash!r} and {input_name!r} would both be "
                    f"$IN_{input_name.upper()}"
                )
            normalized[input_name] = _as_input(value, f"input {input_name!r} of stage {name!r}")
        self._inputs = normalized
        self._matcher = Matcher() if matcher is None else matcher
        if not isinstance(self._matcher, Matcher):
            raise TypeError(f"stage {name!r}: matcher must be a diracx.core.derivation.Matcher")
        self._scheduling = DEFAULT_SCHEDULING if scheduling is None else scheduling
        if not isinstance(self._scheduling, Scheduling):
            raise TypeError(
                f"stage {name!r}: scheduling must be a diracx.core.derivation.Scheduling"
            )
        self._deps: tuple[Stage, ...] = tuple(
            v for v in normalized.values() if isinstance(v, Stage)
        )
        # A pure stage depends on no host file: its DRef is computed once and kept.
        self._pure: bool = all(
            isinstance(v, TreeRef) or (isinstance(v, Stage) and v._pure)
            for v in normalized.values()
        )
        self._blobs: Mapping[str, bytes] = _NO_BLOBS  # blobs the builder needs (python source)
        self._memo = None
        self._dref = None

    # read-only views -----------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def builder(self) -> Mapping[str, Any]:
        return MappingProxyType(self._builder)

    @property
    def config(self) -> Mapping[str, Any]:
        return MappingProxyType(self._config)

    @property
    def inputs(self) -> Mapping[str, Stage | TreeRef | HostTree]:
        return MappingProxyType(self._inputs)

    @property
    def matcher(self) -> Matcher:
        return self._matcher

    @property
    def scheduling(self) -> Scheduling:
        """Where and how its job runs (queue, resources, retries): not part of the DRef."""
        return self._scheduling

    @property
    def dref(self) -> str:
        """The stage's DRef. Computed once for a stage that uses no host file or
        directory; otherwise the host inputs are hashed again on each access (use
        :func:`~diracx.api.instantiate.instantiate` to get every DRef in one pass)."""
        if self._dref is not None:
            return self._dref
        from diracx.api.instantiate import _Resolver

        resolver = _Resolver()
        resolver.resolve([self])
        return resolver.drefs[id(self)]

    def __repr__(self) -> str:
        executor = self._builder.get("executor")
        what = self._builder.get("function") if executor == "python" else self._builder.get("argv")
        parts = [f"{self._name!r}", f"{executor}={what!r}"]
        if self._inputs:
            parts.append(f"inputs={sorted(self._inputs)!r}")
        if self._config:
            parts.append(f"config={self._config!r}")
        return f"<Stage {' '.join(parts)}>"


_NO_BLOBS: Mapping[str, bytes] = MappingProxyType({})

StageInput = Stage | TreeRef | HostTree
"""What a stage's input is once normalized (``as_input()`` objects become TreeRefs)."""


def _as_input(value: Any, where: str) -> Stage | TreeRef | HostTree:
    if isinstance(value, Stage | TreeRef | HostTree):
        return value
    if isinstance(value, StageFunction):
        raise TypeError(
            f"{where} is the stage function {value.stage_name!r} itself: call it to make a stage"
        )
    if isinstance(value, os.PathLike):
        return HostTree(_abspath(value, "input"), "auto")
    as_input = getattr(value, "as_input", None)
    if callable(as_input):
        ref = as_input()
        if isinstance(ref, TreeRef | Stage | HostTree):  # a Directory or File may be any
            return ref
        raise TypeError(
            f"{where}: {type(value).__name__}.as_input() returned {ref!r}, not a TreeRef"
        )
    hint = ""
    if isinstance(value, str):
        hint = " (wrap a path of this machine in host_file() or host_dir())"
    raise TypeError(
        f"{where} must be a Stage, host_dir(...), host_file(...), a TreeRef or a realization, "
        f"not {type(value).__name__}{hint}"
    )


def command(
    name: str,
    argv: Iterable[str],
    *,
    inputs: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    timeout: float | None = None,
    config: Mapping[str, Any] | None = None,
    queue: str | None = None,
    cpus: int | None = None,
    memory: int | str | None = None,
    gpus: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    matcher: Matcher | None = None,
) -> Stage:
    """A stage that runs *argv* (no shell) with the ``process`` executor.

    Each input is materialized read-only at ``inputs/<name>`` in the scratch
    directory and exposed as ``$IN_<NAME>``; the command writes its outputs under
    ``$OUT``. *workdir* is relative to the scratch directory (for example
    ``"inputs/src"``; default: a private writable ``work/``). *env* adds
    variables to the scrubbed build environment. *config* is hashed into the
    DRef and given to the build as the JSON file ``$DIRACX_CONFIG``. Wrap the
    command in ``["sh", "-c", "..."]`` to use a shell.

    *queue*, *cpus*, *memory* (MiB, or a string such as ``"8G"``), *gpus*,
    *retries* and *backoff* (seconds) say where and how the job runs; they are
    not part of the DRef (see :func:`scheduling`). *matcher* says which of its
    realizations count (``diracx.api.matchers``; default ``only()``).
    """
    if isinstance(argv, str):
        raise TypeError(
            f"stage {name!r}: argv must be a list of strings, e.g. ['sh', '-c', {argv!r}]"
        )
    args = list(argv)
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            raise TypeError(f"stage {name!r}: argv[{i}] must be a string, not {type(arg).__name__}")
    builder: dict[str, Any] = {"executor": "process", "argv": args}
    if env:
        builder["env"] = dict(env)
    if workdir is not None:
        builder["workdir"] = workdir
    if timeout is not None:
        builder["timeout"] = timeout
    placement = scheduling(
        name,
        queue=queue,
        cpus=cpus,
        memory=memory,
        gpus=gpus,
        retries=retries,
        backoff=backoff,
    )
    return Stage(name, builder, config=config, inputs=inputs, matcher=matcher, scheduling=placement)


_MEMORY_UNITS = {"": 1, "M": 1, "MI": 1, "MB": 1, "G": 1024, "GI": 1024, "GB": 1024}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*\Z")


def _memory_mb(stage_name: str, memory: int | str) -> int:
    if isinstance(memory, bool) or not isinstance(memory, int | str):
        raise TypeError(f"stage {stage_name!r}: memory must be MiB or a string such as '8G'")
    if isinstance(memory, int):
        return memory
    match = _MEMORY_RE.match(memory)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _MEMORY_UNITS:
        raise ValueError(
            f"stage {stage_name!r}: memory {memory!r} must be MiB or a number with M or G "
            "(for example '512M', '8G')"
        )
    return int(float(match.group(1)) * _MEMORY_UNITS[unit])


def scheduling(
    stage_name: str,
    *,
    queue: str | None = None,
    cpus: int | None = None,
    memory: int | str | None = None,
    gpus: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
) -> Scheduling:
    """The :class:`Scheduling` of a stage from keyword arguments (None: the default),
    with errors that name the stage."""
    given: dict[str, Any] = {
        "queue": queue,
        "cpus": cpus,
        "memory_mb": None if memory is None else _memory_mb(stage_name, memory),
        "gpus": gpus,
        "retries": retries,
        "retry_backoff": backoff,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return DEFAULT_SCHEDULING
    try:
        return Scheduling(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"stage {stage_name!r}: {problems}") from None


# --------------------------------------------------------------------------- python stages


@dataclass(frozen=True, slots=True)
class _Source:
    module: str
    tree: str  # digest of the tree {"<module>.py": file}
    blobs: Mapping[str, bytes]  # manifest and file


# (path, inode, size, mtime_ns, ctime_ns) -> source tree: a file is read and hashed once
# per process (again if it changed, as with importlib.reload).
_SOURCES: dict[tuple[str, int, int, int, int], _Source] = {}
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _module_source(fn: Callable[..., Any]) -> _Source:
    filename = fn.__code__.co_filename
    if not filename or filename.startswith("<") or not os.path.isfile(filename):
        raise TypeError(
            f"stage function {fn.__qualname__!r} has no source file: python stages must be "
            "defined in a .py file (not in a notebook cell, a REPL or exec), whose source is "
            "sent to the workers"
        )
    path = os.path.abspath(filename)
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    source = _SOURCES.get(key)
    if source is not None:
        return source
    stem = Path(path).stem
    if Path(path).suffix != ".py" or not MODULE_RE.match(stem):
        raise TypeError(
            f"stage function {fn.__qualname__!r} is defined in {path}: the workers import "
            f"that file as the module {stem!r}, so its name must be a Python identifier "
            "ending in .py (rename it, for example to my_pipeline.py)"
        )
    with open(path, "rb") as f:
        data = f.read()
    file_digest = hashlib.sha256(data).hexdigest()
    # The mode is always "file": making the script executable does not change any DRef.
    tree = Tree({f"{stem}.py": TreeEntry("file", file_digest, len(data))})
    manifest = tree.manifest_bytes()
    tree_digest = hashlib.sha256(manifest).hexdigest()
    source = _Source(
        stem, tree_digest, MappingProxyType({tree_digest: manifest, file_digest: data})
    )
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
        _SOURCES[key] = source
    return source


_NO_DEFAULT = inspect.Parameter.empty


class StageFunction:
    """A ``@stage``-decorated function: calling it makes a :class:`Stage`.

    ``__wrapped__`` is the original function (the worker calls it).
    """

    __wrapped__: Callable[..., Any]

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        timeout: float | None = None,
        placement: Scheduling = DEFAULT_SCHEDULING,
        matcher: Matcher | None = None,
    ) -> None:
        if not inspect.isfunction(fn):
            raise TypeError(f"@stage decorates functions, not {type(fn).__name__}")
        if fn.__name__ == "<lambda>":
            raise TypeError(
                "@stage cannot decorate a lambda: define a module-level function with def"
            )
        if fn.__qualname__ != fn.__name__:
            outer = fn.__qualname__.rsplit(".", 1)[0].replace(".<locals>", "")
            raise TypeError(
                f"@stage function {fn.__name__!r} must be defined at module level, not inside "
                f"{outer!r}: the worker imports it by name from its module"
            )
        functools.update_wrapper(self, fn)
        self.stage_name = fn.__name__.lstrip("_") if name is None else name
        if not isinstance(self.stage_name, str) or not NAME_RE.match(self.stage_name):
            raise ValueError(
                f"@stage function {fn.__name__!r}: stage name {self.stage_name!r} must be 1-128 "
                "letters, digits, '.', '_' or '-', starting with a letter or digit "
                "(use @stage(name=...))"
            )
        self._timeout = timeout
        self._scheduling = placement
        self._matcher = matcher
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(
                f"stage {self.stage_name!r}: timeout must be a positive number of seconds"
            )
        signature = inspect.signature(fn)
        params: list[inspect.Parameter] = []
        self._config_defaults: dict[str, Any] = {}
        self._input_defaults: dict[str, Stage | TreeRef | HostTree] = {}
        self._inputs: list[str] = []
        for p in signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"stage {self.stage_name!r}: *args and **kwargs are not supported; "
                    "name every input and config parameter"
                )
            if p.name == "out":
                continue
            if not INPUT_NAME_RE.match(p.name):
                raise ValueError(
                    f"stage {self.stage_name!r}: parameter name {p.name!r} is too long"
                )
            params.append(p)
            if p.default is _NO_DEFAULT:
                self._inputs.append(p.name)
            elif _is_input_like(p.default):
                self._inputs.append(p.name)
                self._input_defaults[p.name] = _as_input(
                    p.default, f"default of input {p.name!r} of stage {self.stage_name!r}"
                )
            else:
                self._config_defaults[p.name] = _json_value(
                    p.default,
                    f"default of config parameter {p.name!r} of stage {self.stage_name!r}",
                )
        self._signature = signature.replace(parameters=params)
        self._params = {p.name for p in params}
        try:
            self._source: _Source | None = _module_source(fn)
            self._source_error: str | None = None
        except (TypeError, OSError) as exc:
            self._source, self._source_error = None, str(exc)

    def _describe(self) -> str:
        config = ", ".join(f"{k}={v!r}" for k, v in self._config_defaults.items()) or "none"
        inputs = ", ".join(self._inputs) or "none"
        return f"its config: {config}; its inputs: {inputs}"

    def __call__(self, *args: Any, **kwargs: Any) -> Stage:
        name = self.stage_name
        if "out" in kwargs:
            raise TypeError(f"stage {name!r}: 'out' is the output directory, given at build time")
        unknown = [k for k in kwargs if k not in self._params]
        if unknown:
            raise TypeError(
                f"stage {name!r} got unexpected keyword argument(s) "
                f"{', '.join(map(repr, unknown))}; {self._describe()}"
            )
        try:
            bound = self._signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"stage {name!r}: {exc}; {self._describe()}") from None
        given = bound.arguments
        missing = [n for n in self._inputs if n not in given and n not in self._input_defaults]
        if missing:
            raise TypeError(
                f"stage {name!r} is missing input(s) {', '.join(map(repr, missing))}: give each a "
                f"Stage, host_dir(...), host_file(...), TreeRef or realization; {self._describe()}"
            )
        if self._source is None:
            raise TypeError(self._source_error)
        config = dict(self._config_defaults)
        inputs: dict[str, Any] = dict(self._input_defaults)
        for key, value in given.items():
            if key in self._config_defaults:
                config[key] = _json_value(value, f"config parameter {key!r} of stage {name!r}")
            else:
                inputs[key] = value
        builder: dict[str, Any] = {
            "executor": "python",
            "function": f"{self._source.module}:{self.__wrapped__.__name__}",
            "source": self._source.tree,
        }
        if self._timeout is not None:
            builder["timeout"] = self._timeout
        result = Stage(
            name,
            builder,
            config=config,
            inputs=inputs,
            matcher=self._matcher,
            scheduling=self._scheduling,
        )
        result._blobs = self._source.blobs
        return result

    def __repr__(self) -> str:
        return f"<stage function {self.stage_name!r}: {self._describe()}>"


def _is_input_like(value: Any) -> bool:
    return isinstance(value, Stage | TreeRef | HostTree) or callable(
        getattr(value, "as_input", None)
    )


@overload
def stage(fn: Callable[..., Any], /) -> StageFunction: ...


@overload
def stage(
    *,
    name: str | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    cpus: int | None = None,
    memory: int | str | None = None,
    gpus: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    matcher: Matcher | None = None,
) -> Callable[[Callable[..., Any]], StageFunction]: ...


def stage(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    cpus: int | None = None,
    memory: int | str | None = None,
    gpus: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    matcher: Matcher | None = None,
) -> StageFunction | Callable[[Callable[..., Any]], StageFunction]:
    """Make a module-level function a stage factory (autostage, as in Pylightnix).

    Parameters with defaults are the config (JSON values; pass a keyword to
    override one); parameters without defaults are inputs (give a Stage, a host
    tree, a TreeRef or a realization; the function receives a ``Path`` to the
    materialized input); a parameter named ``out`` receives the output
    directory. A non-None return value is written to ``out/result.json``.

    The DRef covers the bytes of the file that defines the function, which is
    sent to the worker and imported there as a module named after the file
    (``pipeline.py`` → ``pipeline``, also when run as ``python pipeline.py``).
    Only that file is sent: whatever else it imports must be installed on the
    workers, and it cannot use relative imports. Put the code that starts the
    pipeline under ``if __name__ == "__main__":``, because the worker imports
    the file. *matcher* says which realizations count (``diracx.api.matchers``); an
    input whose matcher picks several arrives as a directory of ``0/``, ``1/``...
    """
    if fn is not None:
        return StageFunction(fn, name=name, timeout=timeout)

    def decorate(f: Callable[..., Any]) -> StageFunction:
        placement = scheduling(
            name or f.__name__.lstrip("_"),
            queue=queue,
            cpus=cpus,
            memory=memory,
            gpus=gpus,
            retries=retries,
            backoff=backoff,
        )
        return StageFunction(f, name=name, timeout=timeout, placement=placement, matcher=matcher)

    return decorate
