"""The ``oci`` executor: one step of a container pipeline, on OCI image layers.

A step's root filesystem is a stack of layers (``OciBuilder.layers``: inputs whose
tree holds ``layer.tar``). Each layer blob is unpacked once per worker into
``<data_dir>/oci/layers/<digest>`` (whiteouts as overlayfs whiteouts) and reused by
every later step. The step runs in a sandbox forked by ``ocisandbox.py --zygote``
(one small standard-library process per worker, started with ``python -I -S``):
an overlay of those directories with an upper directory in the scratch, Linux
namespaces, the exec. The upper directory is then the new layer
(``layer_from_upper``: deletions become whiteouts). A step that only selects a
part of one input (``Directory.directory(...)``, ``.file(...)``) needs no sandbox.

Outputs (``$OUT``): ``layer.tar``, and for an exec ``stdout``, ``stderr`` and
``exit_code``; or, for an ``extract`` step, the extracted directory or file. The
build log is stdout and stderr interleaved. Secrets are masked (``***``) in all of
them before anything is written.

Cache volumes are directories of the worker, ``<data_dir>/oci/cache/<name>``:
``shared`` mounts it as is, ``private`` gives the exec a copy-on-write view whose
changes are dropped, ``locked`` lets one exec at a time use it (a file lock). The
memory limit uses a cgroup (v2, or v1's memory controller) made for the step.

The worker must run as root: without it (or without overlayfs, or namespaces) the
build fails with a message saying what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import marshal
import os
import secrets as _random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from diracx.core.builders import LAYER_FILE, MAX_OCI_LAYERS, STACK_FILE, OciBuilder
from diracx.core.canonical import canonical_json
from diracx.core.exceptions import DiracxError
from diracx.core.oci import layer_from_upper, unpack_layer
from diracx.core.secrets import Masker, mask_text
from diracx.core.store import BlobStore
from diracx.core.tree import Tree, TreeEntry, load_tree, materialize_tree, remove_tree
from diracx.tasks.executors._spawn import append_reason, format_seconds
from diracx.tasks.executors.base import LOG_NAME, BuildRequest, BuildResult, Executor
from diracx.tasks.executors.process import refuse

SANDBOX = str(Path(__file__).with_name("ocisandbox.py"))
READ_SIZE = 1 << 16


@dataclass(frozen=True)
class LayerRef:
    digest: str
    size: int


class OciSetupError(DiracxError):
    """The step cannot run on this worker; the message says why (and what is missing)."""


def isolation_problem() -> str | None:
    """Why this worker cannot run containers, or None. Checked before every step (cheap)."""
    if os.geteuid() != 0:
        return (
            "the oci executor needs root on the worker (it mounts overlay filesystems and "
            f"creates namespaces), but this worker runs as uid {os.geteuid()}; rootless "
            "containers (user namespaces) are not supported yet: run the worker as root "
            "(for example in a privileged container)"
        )
    return None


# --------------------------------------------------------------------------- layers


def layer_cache_dir(data_dir: Path) -> Path:
    return data_dir / "oci" / "layers"


def cache_volume_dir(data_dir: Path) -> Path:
    return data_dir / "oci" / "cache"


_unpack_locks: dict[str, threading.Lock] = {}
_unpack_guard = threading.Lock()


def unpacked_layer(store: BlobStore, data_dir: Path, digest: str) -> Path:
    """The directory holding layer blob *digest* unpacked for overlayfs (made once).

    Several builds (threads of this worker, other workers of the machine) may want
    the same layer at once: a lock per digest (a thread lock, then a file lock), an
    unpack into a temporary directory, and a rename make that safe.
    """
    root = layer_cache_dir(data_dir)
    final = root / digest
    if final.is_dir():
        return final
    with _unpack_guard:
        lock = _unpack_locks.setdefault(digest, threading.Lock())
    with lock:
        if final.is_dir():
            return final
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f".{digest}.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            if final.is_dir():
                return final
            tmp = root / f".tmp-{digest[:16]}-{_random.token_hex(4)}"
            try:
                blob_path = getattr(store, "path", None)
                if callable(blob_path) and Path(blob_path(digest)).is_file():
                    unpack_layer(blob_path(digest), tmp, overlay_whiteouts=True)
                else:  # a remote store: fetch the blob first
                    fetched = root / f".blob-{_random.token_hex(4)}"
                    try:
                        store.copy_to(digest, fetched)
                        unpack_layer(fetched, tmp, overlay_whiteouts=True)
                    finally:
                        fetched.unlink(missing_ok=True)
                os.replace(tmp, final)
            except BaseException:
                remove_tree(tmp)
                raise
    return final


# Trees and unpacked layers never change: what was learnt about them is kept (bounded).
# tree digest -> (its stack replaces what is below it, the layers it gives)
_LAYERS_OF: dict[str, tuple[bool, list[LayerRef]]] = {}
_NOT_EMPTY: dict[str, bool] = {}  # layer directory -> whether it holds anything
_MEMO_SIZE = 100_000


def layers_of(store: BlobStore, tree_digest: str, name: str) -> tuple[bool, list[LayerRef]]:
    """What the layer input *name* (tree *tree_digest*) puts in the stack: the layers of its
    ``stack.json`` (an earlier step: they replace what is below), or its ``layer.tar``."""
    known = _LAYERS_OF.get(tree_digest)
    if known is not None:
        return known
    tree = load_tree(store, tree_digest)
    stack = tree.entries.get(STACK_FILE)
    entry = tree.entries.get(LAYER_FILE)
    found: tuple[bool, list[LayerRef]]
    if stack is not None and stack.digest is not None:
        try:
            doc = json.loads(store.read_bytes(stack.digest))
            found = (True, [LayerRef(str(d["digest"]), int(d["size"])) for d in doc])
        except (ValueError, KeyError, TypeError) as exc:
            raise OciSetupError(f"input {name!r}: malformed {STACK_FILE}: {exc}") from None
    elif entry is not None and entry.digest is not None and entry.kind != "directory":
        found = (False, [LayerRef(entry.digest, entry.size)])
    else:
        raise OciSetupError(
            f"input {name!r} is not a layer: its tree has neither {STACK_FILE} nor {LAYER_FILE}"
        )
    if len(_LAYERS_OF) >= _MEMO_SIZE:
        _LAYERS_OF.clear()
    _LAYERS_OF[tree_digest] = found
    return found


def layer_stack(store: BlobStore, inputs: Mapping[str, str], names: list[str]) -> list[LayerRef]:
    """The layers of a step's root filesystem, bottom first (see ``OciBuilder.layers``)."""
    stack: list[LayerRef] = []
    for name in names:
        replaces, layers = layers_of(store, inputs[name], name)
        stack = [*layers] if replaces else [*stack, *layers]
    return stack


def layer_directory(store: BlobStore, data_dir: Path, digest: str) -> Path | None:
    """The unpacked layer, or None when it is empty (it adds nothing to the stack)."""
    directory = unpacked_layer(store, data_dir, digest)
    key = str(directory)
    not_empty = _NOT_EMPTY.get(key)
    if not_empty is None:
        if len(_NOT_EMPTY) >= _MEMO_SIZE:
            _NOT_EMPTY.clear()
        not_empty = _NOT_EMPTY[key] = any(directory.iterdir())
    return directory if not_empty else None


# --------------------------------------------------------------------------- inputs


def select(tree: Tree, sub: str, exclude: list[str], what: str) -> Tree:
    """The part of *tree* under *sub*, re-rooted there, without what *exclude* matches."""
    entries = tree.entries
    if sub:
        prefix = sub + "/"
        entries = {p[len(prefix) :]: e for p, e in entries.items() if p.startswith(prefix)}
        if not entries and tree.entries.get(sub, TreeEntry("file")).kind != "directory":
            raise OciSetupError(f"{what}: the input has no directory {sub!r}")
    if exclude:
        entries = {p: e for p, e in entries.items() if not _excluded(p, exclude)}
    return Tree(entries)


def _excluded(path: str, patterns: list[str]) -> bool:
    parts = PurePosixPath(path).parts
    for pattern in patterns:
        p = pattern.removeprefix("./").strip("/")
        dir_only = pattern.endswith("/")
        if "/" in p:
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            candidates = prefixes[:-1] if dir_only else prefixes
            if any(PurePosixPath(c).match(p) and _full_match(c, p) for c in candidates):
                return True
        else:
            names = parts[:-1] if dir_only else parts
            if any(_full_match(n, p) for n in names):
                return True
    return False


def _full_match(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)


def materialize_part(
    store: BlobStore,
    tree_digest: str,
    sub: str,
    kind: str,
    exclude: list[str],
    dest: Path,
    what: str,
) -> Path:
    """Write (a part of) an input tree under *dest*, writable; return the file or directory."""
    tree = load_tree(store, tree_digest)
    if kind == "file":
        name = sub or (next(iter(tree.entries)) if len(tree.entries) == 1 else "")
        entry = tree.entries.get(name)
        if entry is None or entry.kind == "directory":
            raise OciSetupError(f"{what}: the input has no file {sub!r}")
        part = Tree({PurePosixPath(name).name: entry})
        materialize_tree(store, part, dest, readonly=False)
        return dest / PurePosixPath(name).name
    materialize_tree(store, select(tree, sub, exclude, what), dest, readonly=False)
    return dest


def is_selection(spec: OciBuilder) -> bool:
    """Whether the step only selects a part of one input (``Directory.directory(...)``,
    ``.file(...)``, exclusions): no layers, one copy, and the extraction of it."""
    if spec.layers or spec.argv is not None or spec.extract is None or len(spec.copies) != 1:
        return False
    copy, extract = spec.copies[0], spec.extract
    if copy.kind == "directory":
        return copy.path == "/" and extract.path == "/" and extract.kind == "directory"
    return extract.kind == "file" and extract.path == copy.path and copy.permissions is None


def select_input(request: BuildRequest, spec: OciBuilder) -> None:
    """A selection step (see :func:`is_selection`): the part, written to ``out/``."""
    assert request.store is not None
    copy = spec.copies[0]
    out = Path(request.scratch) / "out"
    if copy.kind == "directory":
        materialize_part(
            request.store, request.inputs[copy.input], copy.sub, "directory", copy.exclude, out,
            f"select {copy.sub or 'everything'}",
        )  # fmt: skip
        return
    tree = load_tree(request.store, request.inputs[copy.input])
    entry = tree.entries.get(copy.sub)
    if entry is None or entry.kind == "directory":
        raise OciSetupError(f"the input has no file {copy.sub!r}")
    name = PurePosixPath(copy.path).name
    materialize_tree(request.store, Tree({name: entry}), out, readonly=False)


# --------------------------------------------------------------------------- cgroups


@dataclass
class MemoryCgroup:
    """A cgroup made for one step, with a memory limit; removed with :meth:`remove`."""

    path: Path
    version: int
    limit_mb: int

    @property
    def procs(self) -> str:
        return str(self.path / "cgroup.procs")

    def oom_killed(self) -> bool:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            return False
        return False

    def remove(self) -> None:
        for _ in range(50):  # its processes may take a moment to be gone
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def _own_cgroup(controller: str) -> tuple[int, str] | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller == "" and controllers == "":
            return 2, path
        if controller and controller in controllers.split(","):
            return 1, path
    return None


def make_memory_cgroup(name: str, limit_mb: int) -> MemoryCgroup:
    """A child of this worker's cgroup with the limit set, cgroup v2 first, then v1."""
    problems: list[str] = []
    v2 = _own_cgroup("")
    base = Path("/sys/fs/cgroup")
    if v2 is not None and (base / "cgroup.controllers").exists():
        parent = base / v2[1].lstrip("/")
        controls = _read(parent / "cgroup.subtree_control")
        if "memory" in controls.split():
            path = parent / name
            try:
                path.mkdir()
                (path / "memory.max").write_text(str(limit_mb * 1024 * 1024))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
                return MemoryCgroup(path, 2, limit_mb)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    path.rmdir()
                problems.append(f"cgroup v2 at {parent}: {exc.strerror}")
        else:
            problems.append(
                f"cgroup v2 at {parent} does not delegate the memory controller "
                f"(cgroup.subtree_control: {controls.strip() or 'empty'})"
            )
    v1 = _own_cgroup("memory")
    if v1 is not None:
        parent = base / "memory" / v1[1].lstrip("/")
        path = parent / name
        try:
            path.mkdir()
            (path / "memory.limit_in_bytes").write_text(str(limit_mb * 1024 * 1024))
            with contextlib.suppress(OSError):  # no swap accounting: the limit is on RAM only
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit_mb * 1024 * 1024))
            return MemoryCgroup(path, 1, limit_mb)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.rmdir()
            problems.append(f"cgroup v1 memory controller at {parent}: {exc.strerror}")
    if not problems:
        problems.append("no cgroup memory controller is mounted")
    raise OciSetupError(
        f"a memory limit of {limit_mb} MiB was asked for, but this worker cannot enforce one: "
        + "; ".join(problems)
        + " (give the worker a writable cgroup with the memory controller, or drop the limit)"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# --------------------------------------------------------------------------- caches


@dataclass
class CacheLocks:
    """The file locks a step holds on its cache volumes while it runs."""

    files: list[Any] = field(default_factory=list)

    def release(self) -> None:
        for f in self.files:
            f.close()  # closing releases the flock
        self.files.clear()


def lock_caches(data_dir: Path, caches: list[tuple[str, str]]) -> CacheLocks:
    """Shared locks for ``shared``/``private`` volumes, exclusive ones for ``locked`` (in
    name order, so that two steps never wait for each other)."""
    locks = CacheLocks()
    root = cache_volume_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        for name, sharing in sorted(set(caches)):
            f = open(root / f".{name}.lock", "w")  # noqa: SIM115 - held until release()
            locks.files.append(f)
            fcntl.flock(f, fcntl.LOCK_EX if sharing == "locked" else fcntl.LOCK_SH)
    except BaseException:
        locks.release()
        raise
    return locks


# --------------------------------------------------------------------------- the executor


@dataclass
class _Streams:
    """stdout, stderr and the interleaved log of one exec, masked as they are written."""

    out_dir: Path
    log_fd: int
    secrets: list[str]
    files: dict[str, Any] = field(default_factory=dict)
    maskers: dict[str, Masker] = field(default_factory=dict)

    def open(self) -> None:
        for name in ("stdout", "stderr"):
            self.files[name] = open(self.out_dir / name, "wb")  # noqa: SIM115
            self.maskers[name] = Masker(self.secrets)

    def write(self, name: str, data: bytes) -> None:
        masked = self.maskers[name].feed(data) if data else self.maskers[name].flush()
        if masked:
            self.files[name].write(masked)
            os.write(self.log_fd, masked)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class OciExecutor(Executor):
    """Runs ``oci`` builders: container steps on OCI layers (see the module's docstring)."""

    name = "oci"
    materializes_inputs = True  # it reads the layers from the store itself

    async def build(self, request: BuildRequest) -> BuildResult:
        scratch = Path(os.path.abspath(request.scratch))
        log_path = str(scratch / LOG_NAME)
        spec = request.derivation.builder_spec()
        if not isinstance(spec, OciBuilder):
            return refuse(log_path, f"the oci executor cannot run a {spec.executor!r} builder")
        if request.store is None or request.data_dir is None:
            return refuse(log_path, "the oci executor needs the worker's store and data directory")
        start = time.monotonic()
        if is_selection(spec):  # (a part of) one input: no sandbox needed
            try:
                await asyncio.to_thread(select_input, request, spec)
            except DiracxError as exc:
                return refuse(log_path, str(exc))
            return BuildResult(True, 0, "", time.monotonic() - start)
        problem = isolation_problem()
        if problem is not None:
            return refuse(log_path, problem)
        secret_values = dict(request.secrets)
        missing = [s.secret for s in spec.secrets if s.secret not in secret_values]
        if missing:
            return refuse(
                log_path,
                f"the secret(s) {', '.join(map(repr, missing))} did not reach the worker "
                "(submit the pipeline again with their values)",
            )
        step = _Step(request, spec, scratch, secret_values)
        try:
            return await step.run(start)
        except DiracxError as exc:  # cannot run here, a layer that cannot be unpacked...
            return refuse(log_path, mask_text(str(exc), secret_values.values()))
        finally:
            await asyncio.to_thread(step.cleanup)


class _Step:
    """One build of an ``oci`` step."""

    def __init__(
        self, request: BuildRequest, spec: OciBuilder, scratch: Path, secrets: Mapping[str, str]
    ) -> None:
        self.request = request
        self.spec = spec
        self.scratch = scratch
        self.secrets = dict(secrets)
        assert request.store is not None and request.data_dir is not None
        self.store: BlobStore = request.store
        self.data_dir: Path = request.data_dir
        self.oci = scratch / "oci"
        self.cgroup: MemoryCgroup | None = None
        self.locks: CacheLocks | None = None
        self.stack: list[LayerRef] = []

    def cleanup(self) -> None:
        if self.locks is not None:
            self.locks.release()
        if self.cgroup is not None:
            self.cgroup.remove()
        remove_tree(self.oci)

    # -- preparing ---------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        """Unpack the layers (once per worker), materialize copies and mounts; the sandbox spec."""
        spec, store = self.spec, self.store
        inputs = self.request.inputs
        for name in spec.input_names():
            if name not in inputs:
                raise OciSetupError(f"input {name!r} was not given to the build")
        self.stack = layer_stack(store, inputs, spec.layers)
        if len(self.stack) >= MAX_OCI_LAYERS:
            raise OciSetupError(
                f"the filesystem has {len(self.stack)} layers: overlayfs stacks at most "
                f"{MAX_OCI_LAYERS - 1} (export the image and import it squashed)"
            )
        lower_dirs: list[Path] = []
        for layer in self.stack:
            directory = layer_directory(store, self.data_dir, layer.digest)
            if directory is not None:
                lower_dirs.append(directory)
        self.oci.mkdir()
        lower = self.oci / "lower"
        lower.mkdir()
        # overlayfs options fit in one page: short names, the top layer first
        for i, directory in enumerate(reversed(lower_dirs)):
            os.symlink(directory, lower / str(i))
        (lower / "empty").mkdir()
        root = self.oci / "root"
        root.mkdir()
        doc: dict[str, Any] = {
            "root": str(root),
            "lower_dir": str(lower),
            "lowers": len(lower_dirs),
            "argv": spec.argv,
            "workdir": spec.workdir,
            "user": spec.user,
            "network": spec.network,
            "hostname": "diracx-" + self.request.dref[:12],
        }
        if spec.extract is None:  # a new layer: an upper directory on the same filesystem
            (self.oci / "upper").mkdir()
            (self.oci / "work").mkdir()
            doc["upper"] = str(self.oci / "upper")
            doc["work"] = str(self.oci / "work")
        doc["copies"] = []
        for i, c in enumerate(spec.copies):
            src = materialize_part(
                store, inputs[c.input], c.sub, c.kind, c.exclude, self.oci / "copy" / str(i),
                f"copy to {c.path}",
            )  # fmt: skip
            doc["copies"].append(
                {"src": str(src), "dest": c.path, "kind": c.kind, "mode": c.permissions}
            )
        mounts: list[dict[str, Any]] = []
        for i, m in enumerate(spec.mounts):
            src = materialize_part(
                store, inputs[m.input], m.sub, m.kind, [], self.oci / "mount" / str(i),
                f"mount at {m.path}",
            )  # fmt: skip
            mounts.append({"src": str(src), "dest": m.path, "kind": m.kind})
        if spec.caches:
            volumes = cache_volume_dir(self.data_dir)
            self.locks = lock_caches(self.data_dir, [(c.name, c.sharing) for c in spec.caches])
            for i, cache in enumerate(spec.caches):
                volume = volumes / cache.name
                volume.mkdir(parents=True, exist_ok=True)
                entry: dict[str, Any] = {
                    "src": str(volume),
                    "dest": cache.path,
                    "kind": "directory",
                }
                if cache.sharing == "private":  # a copy-on-write view; its changes are dropped
                    private = self.oci / "private" / str(i)
                    (private / "upper").mkdir(parents=True)
                    (private / "work").mkdir()
                    entry["overlay"] = str(private)
                mounts.append(entry)
        doc["mounts"] = mounts
        if spec.extract is not None:
            out = self.scratch / "out"
            doc["extract"] = {
                "path": spec.extract.path,
                "dest": str(out),
                "kind": spec.extract.kind,
            }
        if spec.memory_mb is not None and spec.argv is not None:
            self.cgroup = make_memory_cgroup(
                f"diracx-{self.request.job_id}-{_random.token_hex(3)}", spec.memory_mb
            )
            doc["cgroup"] = self.cgroup.procs
        if spec.stdin is not None:
            (self.oci / "stdin").write_bytes(spec.stdin.encode())
        (self.oci / "sandbox.spec").write_bytes(marshal.dumps(doc))
        return doc

    def environment(self) -> dict[str, str]:
        """The container's environment: the step's ``env``, then its secret variables."""
        env = dict(self.spec.env)
        for s in self.spec.secrets:
            env[s.env] = self.secrets[s.secret]
        return env

    # -- running -----------------------------------------------------------------

    async def run(self, start: float) -> BuildResult:
        spec = self.spec
        await asyncio.to_thread(self.prepare)
        out = self.scratch / "out"
        log_fd = os.open(
            self.scratch / LOG_NAME,
            os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
            0o644,
        )
        try:
            outcome = await self._sandbox(log_fd, out)
            result = self._judge(outcome, start)
            if result.reason:
                append_reason(log_fd, result.reason)
        finally:
            os.close(log_fd)
        if result.ok and spec.extract is None:
            await asyncio.to_thread(self._write_layer, out)
        return result

    def _write_layer(self, out: Path) -> None:
        """The new layer, and the stack it tops (so that the next step needs one input)."""
        with open(out / LAYER_FILE, "wb") as f:
            layer = layer_from_upper(self.oci / "upper", f)
        stack = [*self.stack, LayerRef(layer.digest, layer.size)]
        doc = [{"digest": x.digest, "size": x.size} for x in stack]
        (out / STACK_FILE).write_bytes(canonical_json(doc))

    async def _sandbox(self, log_fd: int, out: Path) -> _Outcome:
        """Start the sandbox, pump its output, wait for it (killing it at the timeout)."""
        spec = self.spec
        capture = spec.argv is not None
        streams = _Streams(out, log_fd, list(self.secrets.values()))
        stdin = os.open(
            self.oci / "stdin" if spec.stdin is not None else os.devnull,
            os.O_RDONLY | os.O_CLOEXEC,
        )
        pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, status
        try:
            pid, pidfd = ZYGOTE.spawn(
                str(self.oci / "sandbox.spec"),
                self.environment(),
                [stdin, pipes[0][1], pipes[1][1], pipes[2][1]],
            )
        except BaseException:
            for r, _ in pipes:
                os.close(r)
            raise
        finally:
            os.close(stdin)
            for _, w in pipes:
                os.close(w)
        loop = asyncio.get_running_loop()
        timed_out = False

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

        def on_timeout() -> None:
            nonlocal timed_out
            timed_out = True
            kill()

        timer = loop.call_later(spec.timeout, on_timeout) if spec.timeout else None
        status = bytearray()
        try:
            if capture:
                streams.open()
            await asyncio.gather(
                _read_all(
                    loop, pipes[0][0], lambda d: streams.write("stdout", d) if capture else None
                ),
                _read_all(
                    loop, pipes[1][0], lambda d: streams.write("stderr", d) if capture else None
                ),
                _read_all(loop, pipes[2][0], status.extend),
                _readable(loop, pidfd),
            )
        except BaseException:
            kill()  # cancelled (the job was killed, the worker stops)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            streams.close()
            for r, _ in pipes:
                os.close(r)
            os.close(pidfd)
        return _Outcome(pid, _records(bytes(status)), timed_out)

    def _judge(self, outcome: _Outcome, start: float) -> BuildResult:
        spec = self.spec
        duration = time.monotonic() - start
        secrets = self.secrets.values()
        if outcome.timed_out:
            assert spec.timeout is not None
            reason = f"timed out after {format_seconds(spec.timeout)}"
            return BuildResult(False, None, reason, duration)
        setup = [r for r in outcome.reports if "error" in r and "code" not in r]
        ended = [r for r in outcome.reports if "exit" in r or "signal" in r]
        if setup:  # the sandbox could not be set up
            reason = str(setup[0]["error"])
            if setup[0].get("missing"):
                reason += f" (missing: {setup[0]['missing']})"
            return BuildResult(False, None, mask_text(reason, secrets), duration)
        if not ended:
            return BuildResult(False, None, "the sandbox ended without a report", duration)
        end = ended[-1]
        if "signal" in end:
            code = 128 + int(end["signal"])
            reason = f"killed by signal {_signal_name(int(end['signal']))}"
            if self.cgroup is not None and self.cgroup.oom_killed():
                reason = f"killed: out of memory (limit {self.cgroup.limit_mb} MiB)"
        else:
            code = int(end["exit"])
            reason = f"exit code {code}" if code else ""
        cannot_start = [r for r in outcome.reports if "code" in r]
        if cannot_start:  # not found, not executable: exit codes 127 and 126, as a shell's
            reason = mask_text(str(cannot_start[0]["error"]), secrets)
        if spec.argv is None:
            return BuildResult(True, 0, "", duration)
        (self.scratch / "out" / "exit_code").write_text(f"{code}\n")
        if spec.expect == "any" or (spec.expect == "failure") == (code != 0):
            return BuildResult(True, code, "", duration)
        if spec.expect == "failure":
            reason = "expected the command to fail, but it exited with code 0"
            return BuildResult(False, 0, reason, duration)
        return BuildResult(False, code, f"the command failed: {reason}", duration)


@dataclass
class _Outcome:
    pid: int
    reports: list[dict[str, Any]]
    timed_out: bool


def _records(data: bytes) -> list[dict[str, Any]]:
    """The sandbox's status records: ``<8 hex digits of length><marshal>`` each."""
    records: list[dict[str, Any]] = []
    pos = 0
    while pos + 8 <= len(data):
        try:
            size = int(data[pos : pos + 8], 16)
            record = marshal.loads(data[pos + 8 : pos + 8 + size])
        except (ValueError, EOFError, TypeError):
            break
        if isinstance(record, dict):
            records.append(record)
        pos += 8 + size
    return records


async def _read_all(
    loop: asyncio.AbstractEventLoop, fd: int, sink: Callable[[bytes], object]
) -> None:
    """Read *fd* until its end, giving each piece to *sink*, then ``b""``."""
    os.set_blocking(fd, False)
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            sink(data)
            if not data:
                if not done.done():
                    done.set_result(None)
                return

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until *fd* (a pidfd: its process has exited) is readable."""
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await done
    finally:
        loop.remove_reader(fd)


class Zygote:
    """The sandbox starter of this worker process (``ocisandbox.py --zygote``).

    Started on first use, from the thread that runs the builds (it dies with that
    thread's process: ``PR_SET_PDEATHSIG``), and again if it died. Each request
    is sent with the step's four file descriptors; the answer carries a pidfd of
    the sandbox, to wait for it and to kill it.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", SANDBOX, "--zygote", str(theirs.fileno())],
                cwd="/",
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise OciSetupError(f"cannot start the sandbox helper: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        ours.settimeout(30.0)
        self._sock = ours
        return ours

    def spawn(self, spec_path: str, env: Mapping[str, str], fds: list[int]) -> tuple[int, int]:
        """Start a sandbox; its (pid, pidfd)."""
        request = marshal.dumps({"spec": spec_path, "env": dict(env)})
        with self._lock:
            for attempt in (1, 2):
                sock = self._sock
                if sock is None or self._proc is None or self._proc.poll() is not None:
                    self.close()
                    sock = self._start()
                try:
                    socket.send_fds(sock, [request], fds)
                    data, pidfds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
                    if not data:
                        raise ConnectionError("the sandbox helper closed its socket")
                except OSError:  # it died (killed?): once more with a new one
                    self.close()
                    if attempt == 2:
                        raise OciSetupError("the sandbox helper does not answer") from None
                    continue
                answer = marshal.loads(data)
                if "error" in answer or not pidfds:
                    for fd in pidfds:
                        os.close(fd)
                    raise OciSetupError(f"the sandbox helper refused: {answer.get('error')}")
                return int(answer["pid"]), pidfds[0]
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


ZYGOTE = Zygote()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


__all__ = ["OciExecutor", "OciSetupError", "isolation_problem", "unpacked_layer"]
