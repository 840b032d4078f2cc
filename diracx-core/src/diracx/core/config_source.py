"""Where the configuration comes from: a YAML file, a git repository, or nothing (local).

``DIRACX_CONFIG`` is a path to a YAML file, or ``git+<repository>#<file in it>`` (the
repository is a URL or a path, read at its HEAD with the ``git`` command). Unset: the
embedded engine's single local VO (:func:`diracx.core.config.local_config`).

``ConfigSource.current()`` is what the service consults on every request that needs the
configuration: it returns the version in force, with no I/O. A background task (started
with the service, see :meth:`ConfigSource.start`) looks for a new version at most every
``config_reload_interval`` seconds: the file's mtime and size, or the repository's HEAD
after a ``git fetch``. A new version that is not valid is logged with its errors and the
previous one stays in force; the service never stops for it.

Each version has a *revision*: the commit of a git source, else the SHA-256 of the
validated document's canonical JSON (client secrets, excluded from the model's dumps,
never enter it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import ValidationError

from diracx.core.canonical import digest_of
from diracx.core.config import Config, local_config
from diracx.core.exceptions import DiracxError
from diracx.core.settings import ServiceSettings

logger = logging.getLogger(__name__)

GIT_PREFIX = "git+"
GIT_TIMEOUT = 120.0  # seconds for one git command (a first clone over the network)
LOCAL_ORIGIN = "(built-in local configuration)"


class ConfigError(DiracxError):
    """The configuration cannot be read or is not valid; the message says where.

    ``errors`` lists each problem on its own, with its location in the document.
    """

    def __init__(self, message: str, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors) or [message]


class InvalidConfigError(ConfigError):
    """The document was read, but it is not a valid configuration (YAML or model)."""


# -- parsing ------------------------------------------------------------------------------


def _loc_text(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The line (1-based) where the item at *loc* is written: its key's, or its nearest
    parent's if it is missing (a required field)."""
    node = root
    line = root.start_mark.line + 1 if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def validation_errors(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    """Each error of *exc* as ``where (line N): what``."""
    found = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        line = _line_of(root, loc)
        where = _loc_text(loc) + (f" (line {line})" if line else "")
        message = str(error["msg"]).removeprefix("Value error, ")
        found.append(f"{where}: {message}")
    return found


def parse_config(text: str, origin: str) -> Config:
    """A validated ``Config`` from YAML *text*; *origin* names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        error = f"{where}not valid YAML: {problem}"
        raise InvalidConfigError(f"{origin}: {error}", [error]) from None
    if document is None:
        error = "the document is empty"
        raise InvalidConfigError(f"{origin}: {error}", [error])
    try:
        return Config.model_validate(document)
    except ValidationError as exc:
        errors = validation_errors(exc, root)
        listing = "\n".join(f"  {e}" for e in errors)
        raise InvalidConfigError(
            f"{origin}: not a valid DiracX configuration ({len(errors)} "
            f"error{'s' if len(errors) > 1 else ''}):\n{listing}",
            errors,
        ) from None


def revision_of(config: Config) -> str:
    """The SHA-256 of the canonical JSON of *config* (secrets excluded by the model)."""
    return digest_of(config.model_dump(mode="json"))


# -- readers ------------------------------------------------------------------------------


class ConfigReader(Protocol):
    """Reads one source. ``stamp`` is cheap and changes when the source does; ``read``
    gets the text of the version *stamp* names, and its revision if the source has one."""

    origin: str

    def stamp(self) -> Hashable: ...

    def read(self, stamp: Hashable) -> tuple[str, str | None]: ...


class FileReader:
    """A YAML file; a new version is a new mtime, size or inode (an editor's rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.origin = str(path)

    def stamp(self) -> Hashable:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the configuration {self.path}: {exc.strerror}"
            ) from None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def read(self, stamp: Hashable) -> tuple[str, str | None]:
        try:
            return self.path.read_text(encoding="utf-8"), None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot read the configuration {self.path}: {reason}") from None


def parse_git_source(value: str) -> tuple[str, str]:
    """``git+<repository>#<path>`` as (repository, path in it)."""
    rest = value.removeprefix(GIT_PREFIX)
    repository, sep, path = rest.rpartition("#")
    path = path.strip("/")
    if not sep or not repository or not path:
        raise ConfigError(
            f"DIRACX_CONFIG={value!r}: a git source is git+<repository>#<file in it>, "
            "e.g. git+https://example.org/config.git#diracx.yaml"
        )
    if ".." in path.split("/"):
        raise ConfigError(f"DIRACX_CONFIG={value!r}: the path in the repository has '..'")
    return repository, path


class GitReader:
    """A file of a git repository at its HEAD, through a bare copy in *cache_dir*.

    The copy is made once (``git init --bare`` and a first fetch); each ``stamp`` fetches
    the repository's HEAD again and gives its commit, which is also the revision.
    """

    REF = "refs/diracx/config-head"

    def __init__(self, repository: str, path: str, cache_dir: Path) -> None:
        self.repository = repository
        self.path = path
        self.origin = f"{GIT_PREFIX}{repository}#{path}"
        key = hashlib.sha256(repository.encode()).hexdigest()[:16]
        self.git_dir = cache_dir / f"git-{key}"

    def _git(self, *args: str, what: str) -> str:
        # never prompt for credentials: the service has no terminal
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        try:
            done = subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise ConfigError(
                f"{self.origin}: the git command is not installed (it reads git sources)"
            ) from None
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{self.origin}: {what} took more than {GIT_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            raise ConfigError(f"{self.origin}: {what} failed: {reason}")
        return done.stdout

    def _ensure_copy(self) -> None:
        if (self.git_dir / "HEAD").exists():
            return
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        # made aside, then renamed: a copy half made by a crash is never taken for one
        tmp = Path(tempfile.mkdtemp(prefix=".git-", dir=self.git_dir.parent))
        try:
            self._git("init", "--quiet", "--bare", str(tmp), what="git init")
            with contextlib.suppress(OSError):
                tmp.rename(self.git_dir)  # another process may have made it meanwhile
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not (self.git_dir / "HEAD").exists():
            raise ConfigError(f"{self.origin}: cannot make the local copy {self.git_dir}")

    def stamp(self) -> Hashable:
        self._ensure_copy()
        gd = f"--git-dir={self.git_dir}"
        self._git(
            gd,
            "fetch",
            "--quiet",
            "--no-tags",
            "--force",
            self.repository,
            f"HEAD:{self.REF}",
            what="git fetch",
        )
        return self._git(
            gd, "rev-parse", "--verify", f"{self.REF}^{{commit}}", what="git rev-parse"
        ).strip()

    def read(self, stamp: Hashable) -> tuple[str, str | None]:
        commit = str(stamp)
        try:
            text = self._git(
                f"--git-dir={self.git_dir}", "show", f"{commit}:{self.path}", what="git show"
            )
        except ConfigError as exc:
            raise InvalidConfigError(
                f"{self.origin}: no file {self.path!r} at commit {commit[:12]} ({exc})"
            ) from None
        return text, commit


# -- the source ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigSnapshot:
    """One version of the configuration: what it says, its revision, where and when read."""

    config: Config
    revision: str
    origin: str
    loaded_at: float


def _load(reader: ConfigReader, stamp: Hashable) -> ConfigSnapshot:
    text, revision = reader.read(stamp)
    config = parse_config(text, reader.origin)
    return ConfigSnapshot(config, revision or revision_of(config), reader.origin, time.time())


class ConfigSource:
    """The configuration in force, and the task that swaps in new versions."""

    def __init__(
        self,
        snapshot: ConfigSnapshot | Config,
        reader: ConfigReader | None = None,
        *,
        stamp: Hashable = None,
        interval: float = 0.0,
    ) -> None:
        if isinstance(snapshot, Config):
            snapshot = ConfigSnapshot(snapshot, revision_of(snapshot), LOCAL_ORIGIN, time.time())
        self._snapshot = snapshot
        self._reader = reader
        self._stamp = stamp
        self.interval = interval
        self._lock = threading.Lock()  # one check at a time
        self._task: asyncio.Task[None] | None = None
        self._last_problem: str | None = None

    def current(self) -> Config:
        """The configuration in force (no I/O: it may change between two calls)."""
        return self._snapshot.config

    def snapshot(self) -> ConfigSnapshot:
        """The version in force, its revision with it (one read: they always agree)."""
        return self._snapshot

    @property
    def revision(self) -> str:
        return self._snapshot.revision

    @property
    def origin(self) -> str:
        return self._snapshot.origin

    def check(self) -> bool:
        """Blocking: look at the source once and swap in its new version if it is valid.

        True if the configuration in force changed. Never raises for a source that cannot
        be read or a version that is not valid: that is logged, and the previous version
        stays in force.
        """
        if self._reader is None:
            return False
        with self._lock:
            try:
                stamp = self._reader.stamp()
            except ConfigError as exc:
                self._problem(
                    f"cannot look for a new configuration (revision {self.revision[:12]} "
                    f"stays in force): {exc}"
                )
                return False
            if stamp == self._stamp:
                self._problem(None)
                return False
            try:
                snapshot = _load(self._reader, stamp)
            except InvalidConfigError as exc:
                self._stamp = stamp  # this version stays invalid: say it once, not every round
                self._problem(None)
                logger.error(
                    "the new configuration is refused, revision %s stays in force: %s",
                    self.revision[:12],
                    exc,
                )
                return False
            except ConfigError as exc:
                self._problem(
                    f"cannot read the new configuration (revision {self.revision[:12]} "
                    f"stays in force): {exc}"
                )
                return False
            self._stamp = stamp
            self._problem(None)
            if snapshot.revision == self.revision:
                return False
            previous, self._snapshot = self.revision, snapshot
        logger.info(
            "configuration %s reloaded: revision %s (was %s), %s",
            snapshot.origin,
            snapshot.revision[:12],
            previous[:12],
            snapshot.config.summary(),
        )
        return True

    def _problem(self, message: str | None) -> None:
        """Log each distinct problem reading the source once, and when it is over."""
        if message == self._last_problem:
            return
        if message is not None:
            logger.error("%s", message)
        elif self._last_problem is not None:
            logger.info("configuration %s: readable again", self.origin)
        self._last_problem = message

    async def start(self) -> None:
        """Start looking for new versions every ``interval`` seconds (0: never)."""
        if self._reader is None or self.interval <= 0 or self._task is not None:
            return
        self._task = asyncio.create_task(self._watch(), name="diracx-config-reload")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # never let the watcher die: the next round may work
                logger.exception("configuration %s: the reload check failed", self.origin)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def reader_for(settings: ServiceSettings) -> ConfigReader | None:
    """The reader of ``settings.config`` (None: the built-in local configuration)."""
    if not settings.config:
        return None
    if settings.config.startswith(GIT_PREFIX):
        repository, path = parse_git_source(settings.config)
        return GitReader(repository, path, settings.data_dir / "config-cache")
    return FileReader(Path(settings.config).expanduser())


def open_config_source(settings: ServiceSettings) -> ConfigSource:
    """Read the configuration once (blocking); raises ConfigError if it cannot be read or
    is not valid. ``await source.start()`` then reloads it in the background."""
    reader = reader_for(settings)
    if reader is None:
        return ConfigSource(local_config())
    stamp = reader.stamp()
    return ConfigSource(
        _load(reader, stamp), reader, stamp=stamp, interval=settings.config_reload_interval
    )


def load_config_file(path: Path) -> Config:
    """The configuration in the YAML file *path* (``dirac config validate``)."""
    reader = FileReader(path)
    return _load(reader, reader.stamp()).config
