"""Find the embedded engine of this user, or start one.

The engine (``python -m diracx.routers serve --embedded``) writes
``<data_dir>/engine.json`` with its URL, token and pid once it listens. A
session reuses a live engine, so a second ``dirac run`` does not pay the start
again; the engine stops itself after being idle.
"""

from __future__ import annotations

import fcntl
import http.client
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from diracx.core.exceptions import DiracxError

ENGINE_FILE = "engine.json"
START_TIMEOUT = 60.0
ENGINE_LOCKED = 3  # exit code of an engine that found another one holding the data directory


class EngineStartError(DiracxError):
    pass


@dataclass(frozen=True)
class EngineInfo:
    url: str
    token: str
    pid: int


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_engine(data_dir: Path) -> EngineInfo | None:
    """The engine recorded in *data_dir* if it answers, else None."""
    try:
        doc = json.loads((data_dir / ENGINE_FILE).read_text())
        info = EngineInfo(url=doc["url"], token=doc["token"], pid=int(doc["pid"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(info.pid):
        return None
    return info if _answers(info.url) else None


def _answers(url: str) -> bool:
    """True if the engine at *url* (plain HTTP on loopback) says it is live.

    http.client, not httpx: an httpx client builds an SSL context first, which costs
    more than the whole check (this runs at every connect()).
    """
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=2.0)
    try:
        conn.request("GET", "/api/health/live")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def ensure_engine(data_dir: Path) -> EngineInfo:
    """Reuse the running engine, or start one and wait until it answers."""
    if (info := running_engine(data_dir)) is not None:
        return info
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # One launcher at a time: two `dirac run` started together must not start two engines.
    with open(data_dir / "launch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (info := running_engine(data_dir)) is not None:
            return info
        return _start(data_dir)


def _start(data_dir: Path) -> EngineInfo:
    if (
        importlib.util.find_spec("diracx.routers") is None
        or importlib.util.find_spec("diracx.tasks") is None
    ):
        raise EngineStartError(
            "no DIRACX_URL is set and the embedded engine is not installed: "
            "pip install 'diracx[server]', or set DIRACX_URL (and DIRACX_TOKEN) to use a service"
        )
    log_path = data_dir / "engine.log"
    env = os.environ.copy()
    env["DIRACX_DATA_DIR"] = str(data_dir)
    env.pop("DIRACX_URL", None)
    deadline = time.monotonic() + START_TIMEOUT
    process = _spawn(env, log_path)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            # another engine may have won the data directory's lock meanwhile
            if (info := running_engine(data_dir)) is not None:
                return info
            if process.returncode == ENGINE_LOCKED:
                # the previous engine is still shutting down (it stops when idle): retry
                time.sleep(0.2)
                process = _spawn(env, log_path)
                continue
            raise EngineStartError(
                f"the DiracX engine exited with code {process.returncode} while starting.\n"
                f"Its log ({log_path}) ends with:\n{_tail(log_path)}"
            )
        info = running_engine(data_dir)
        if info is not None and info.pid == process.pid:
            return info
        time.sleep(0.02)
    process.kill()
    raise EngineStartError(
        f"the DiracX engine did not answer within {START_TIMEOUT:.0f} s; see {log_path}:\n"
        f"{_tail(log_path)}"
    )


def _spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "diracx.routers", "serve", "--embedded"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the engine outlives this program
        )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
