"""The credentials file of ``dirac login``: the tokens of each service the user logged in to.

``$XDG_CACHE_HOME/diracx/credentials.json`` (``DIRACX_CREDENTIALS_PATH`` elsewhere) maps
each service URL to its login: the access token and when it expires, the refresh token
(and its expiry, if the service said), the VO and the group. Tokens are secrets:

- the file is created 0600 in a directory created 0700, and a file that others may read
  (or that belongs to someone else) is refused with a message saying what to do;
- it is replaced atomically (a temporary file in the same directory, fsync, rename), so a
  reader never sees half of it, and a crash leaves the old file or the new one;
- writers hold an exclusive ``flock`` on a sibling lock file for the whole
  read-modify-write (and, when refreshing, for the refresh itself: refresh tokens are
  single-use, and the service revokes a login whose refresh token is used twice);
  readers take a shared lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from diracx.core.exceptions import DiracxError
from diracx.core.settings import ClientSettings

FILE_VERSION = 1
# An access token this close to its expiry is refreshed first: it could expire on the way
EXPIRY_MARGIN = 60.0
# How long to wait for another process that holds the file (it may be refreshing)
LOCK_TIMEOUT = 60.0
_LOCK_POLL = 0.02


class CredentialsError(DiracxError):
    """The credentials file cannot be used (unsafe permissions, damaged, locked too long)."""


def service_key(url: str) -> str:
    """How a service's URL is written in the file (no trailing slash)."""
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Login:
    """The tokens of one login to one service; times are Unix times (seconds)."""

    access_token: str
    expires_at: float
    refresh_token: str | None = None
    refresh_expires_at: float | None = None  # None: the service did not say
    vo: str | None = None
    group: str | None = None
    scope: str | None = None

    def fresh(self, now: float | None = None, margin: float = EXPIRY_MARGIN) -> bool:
        """Whether the access token can still be sent (it lasts at least *margin* more)."""
        return (time.time() if now is None else now) + margin < self.expires_at

    def refreshable(self, now: float | None = None) -> bool:
        """Whether there is a refresh token that has not expired (as far as we know)."""
        if not self.refresh_token:
            return False
        now = time.time() if now is None else now
        return self.refresh_expires_at is None or now < self.refresh_expires_at

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> Login:
        if not isinstance(doc, dict):
            raise ValueError("a login is not an object")
        known = {f.name for f in fields(cls)}
        login = cls(**{k: v for k, v in doc.items() if k in known})
        if not isinstance(login.access_token, str) or not isinstance(login.expires_at, int | float):
            raise ValueError("a login without an access token or its expiry")
        return login


def default_path() -> Path:
    """``DIRACX_CREDENTIALS_PATH``, else ``$XDG_CACHE_HOME/diracx/credentials.json``."""
    return ClientSettings().credentials_path


class Logins:
    """The logins of the file, read under its exclusive lock; each change is written at once."""

    def __init__(self, file: CredentialsFile, logins: dict[str, Login]) -> None:
        self._file = file
        self._logins = logins

    def get(self, url: str) -> Login | None:
        return self._logins.get(service_key(url))

    def all(self) -> dict[str, Login]:
        return dict(self._logins)

    def put(self, url: str, login: Login) -> None:
        self._logins[service_key(url)] = login
        self._file._write(self._logins)

    def remove(self, url: str) -> Login | None:
        removed = self._logins.pop(service_key(url), None)
        if removed is not None:
            self._file._write(self._logins)
        return removed


class CredentialsFile:
    """The credentials file at *path* (and its lock file, ``<path>.lock``)."""

    def __init__(self, path: Path | None = None, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"CredentialsFile({str(self.path)!r})"

    # -- reading -----------------------------------------------------------------------

    def get(self, url: str) -> Login | None:
        """The login stored for *url* (None if there is none), read under a shared lock."""
        return self.all().get(service_key(url))

    def all(self) -> dict[str, Login]:
        """Every stored login, by service URL."""
        if not self.path.exists():
            return {}
        with self._locked(fcntl.LOCK_SH):
            return self._read()

    # -- changing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def update(self) -> Iterator[Logins]:
        """The logins under the exclusive lock, for a read-modify-write."""
        with self._locked(fcntl.LOCK_EX):
            yield Logins(self, self._read())

    @contextlib.asynccontextmanager
    async def aupdate(self) -> AsyncIterator[Logins]:
        """``update()`` for async code: waits for the lock without blocking the event loop."""
        fd = self._open_lock()
        try:
            deadline = time.monotonic() + self.lock_timeout
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    raise self._lock_timeout_error()
                await asyncio.sleep(_LOCK_POLL)
            yield Logins(self, self._read())
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def put(self, url: str, login: Login) -> None:
        with self.update() as logins:
            logins.put(url, login)

    def remove(self, url: str) -> Login | None:
        if not self.path.exists():
            return None
        with self.update() as logins:
            return logins.remove(url)

    # -- the file itself ---------------------------------------------------------------

    def _ensure_dir(self) -> None:
        # 0700: only the last, new directory (~/.cache itself keeps the usual mode)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _open_lock(self) -> int:
        self._ensure_dir()
        return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _lock_timeout_error(self) -> CredentialsError:
        return CredentialsError(
            f"another process has held the credentials file {self.path} for more than "
            f"{self.lock_timeout:.0f} s (its lock: {self.lock_path}): try again"
        )

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        fd = self._open_lock()
        try:
            deadline = time.monotonic() + self.lock_timeout
            while not _try_lock(fd, kind):
                if time.monotonic() >= deadline:
                    raise self._lock_timeout_error()
                time.sleep(_LOCK_POLL)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Login]:
        """The file's logins (the caller holds a lock); {} if there is no file yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialsError(f"cannot read the credentials file {self.path}: {exc}") from exc
        with os.fdopen(fd, "rb") as f:
            self._check_private(os.fstat(f.fileno()))
            raw = f.read()
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("logins", {}), dict):
                raise ValueError("not a credentials document")
            return {
                service_key(url): Login.from_json(entry)
                for url, entry in doc.get("logins", {}).items()
            }
        except (ValueError, TypeError) as exc:
            raise CredentialsError(
                f"the credentials file {self.path} is damaged ({exc}): delete it and run "
                "`dirac login` again"
            ) from None

    def _check_private(self, st: os.stat_result) -> None:
        """Refuse a file that is not the user's own, or that others may read or change."""
        if st.st_uid != os.getuid():
            raise CredentialsError(
                f"the credentials file {self.path} belongs to another user (uid {st.st_uid}): "
                "it is not used; delete it, or set DIRACX_CREDENTIALS_PATH elsewhere"
            )
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise CredentialsError(
                f"the credentials file {self.path} is readable by others (mode {mode:04o}), so "
                f"it is not used: its tokens may have leaked. Run `dirac logout` after "
                f"`chmod 600 {self.path}`, then `dirac login`"
            )

    def _write(self, logins: dict[str, Login]) -> None:
        """Replace the file atomically (the caller holds the exclusive lock)."""
        self._ensure_dir()
        doc = {
            "version": FILE_VERSION,
            "logins": {url: login.to_json() for url, login in sorted(logins.items())},
        }
        # mkstemp creates the file 0600 whatever the umask
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (some filesystems cannot sync a directory: then skip it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
