"""A real, throw-away Redis server for tests (the Celery broker when scaled out).

``redis-server`` runs in a fresh temporary directory, listens only on 127.0.0.1 on
a free port, keeps nothing on disk (no RDB snapshots, no append-only file), and
gets SIGKILL if the test process dies (``PR_SET_PDEATHSIG``), so no server is left
behind. The module talks to it with plain RESP over a socket: no client library.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from diracx.testing.utils import free_port

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1
INSTALL_HINT = (
    "`make test` installs it (build-support/ensure-debian-tools); "
    "or install it yourself: apt-get install redis-server"
)


class RedisUnavailableError(RuntimeError):
    """Redis cannot be started here; the message says what to do."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def commands(port: int, *cmds: tuple[str, ...], timeout: float = 5.0) -> list[bytes]:
    """Send commands on one connection to the server on *port*; the first line of each
    reply (``+PONG``, ``+OK``, ``:1``...). For commands with one-line replies."""
    out = []
    for args in cmds:
        out.append(f"*{len(args)}\r\n".encode())
        for arg in args:
            data = arg.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(b"".join(out))
        reply = b""
        while reply.count(b"\r\n") < len(cmds):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n")[: len(cmds)]


def _pings(port: int) -> bool:
    try:
        return commands(port, ("PING",), timeout=1.0) == [b"+PONG"]
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running test server; ``url(db)`` gives ``redis://127.0.0.1:PORT/db``."""

    port: int
    base: Path
    process: subprocess.Popen[bytes]
    _stopped: bool = field(default=False, repr=False)

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def flush(self, db: int) -> None:
        """Empty database *db* (a test's own, before it starts)."""
        replies = commands(self.port, ("SELECT", str(db)), ("FLUSHDB",))
        if replies != [b"+OK", b"+OK"]:
            raise RuntimeError(f"redis did not flush database {db}: {replies!r}")

    def log(self) -> str:
        try:
            return (self.base / "redis.log").read_text(errors="replace")
        except OSError as exc:
            return f"(no redis log: {exc})"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(*, timeout: float = 30.0, attempts: int = 5) -> RedisServer:
    """Start ``redis-server`` on a free loopback port in a new temporary directory.

    Returns once it answers PING; raises RedisUnavailableError if the binary is
    missing or the server does not come up (with its log).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailableError(f"redis-server was not found on PATH: {INSTALL_HINT}")
    base = Path(tempfile.mkdtemp(prefix="diracx-redis-"))
    last_log = ""
    try:
        for _ in range(attempts):
            port = free_port(HOST)
            argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
            argv += ["--dir", str(base), "--logfile", str(base / "redis.log")]
            process = subprocess.Popen(
                argv,
                cwd=base,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            server = RedisServer(port=port, base=base, process=process)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                if _pings(port):
                    return server
                time.sleep(0.02)
            last_log = server.log()
            if process.poll() is None:
                process.kill()
                process.wait()
                raise RedisUnavailableError(
                    f"redis-server did not answer on port {port} within {timeout:.0f} s; "
                    f"its log:\n{last_log}"
                )
            with contextlib.suppress(OSError):
                (base / "redis.log").unlink()
            if "Address already in use" not in last_log:
                raise RedisUnavailableError(
                    f"redis-server exited with code {process.returncode}; its log:\n{last_log}"
                )
        raise RedisUnavailableError(f"redis-server found no free port in {attempts} attempts")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
