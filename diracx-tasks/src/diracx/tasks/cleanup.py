"""Clean up after workers that died: their builds and their scratch directories.

Builds run in sessions of their own, so a worker killed with ``kill -9`` leaves
its builds running. Each worker's scratch directory is named after it
(``<hostname>-<pid>-<random>``); a starting worker finds the directories of
workers of this host that are gone, kills the processes still building in them
(found by their ``TMPDIR``, which points into the scratch directory) and removes
the directories.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from diracx.core.tree import remove_tree

log = logging.getLogger(__name__)
WORKER_MODULE = b"diracx.tasks"


def worker_alive(pid: int) -> bool:
    """True if *pid* is a running DiracX worker (not just any process that reused the pid)."""
    try:
        return WORKER_MODULE in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def build_processes(scratch: Path) -> list[int]:
    """Processes whose TMPDIR lies in *scratch*: the builds running there."""
    marker = f"TMPDIR={scratch}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(v.startswith(marker) for v in (entry / "environ").read_bytes().split(b"\0")):
                found.append(int(entry.name))
    return found


def kill_builds(scratch: Path) -> int:
    """SIGKILL every build in *scratch* with its whole process group; return how many."""
    pids = build_processes(scratch)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def reap_dead_workers(scratch_root: Path) -> list[str]:
    """Kill the builds and remove the scratch of this host's dead workers; return their ids."""
    if not scratch_root.is_dir():
        return []
    host = socket.gethostname()
    reaped = []
    for directory in scratch_root.iterdir():
        parts = directory.name.rsplit("-", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue  # another host's (a shared filesystem) or not a worker's directory
        if worker_alive(int(parts[1])):
            continue
        killed = kill_builds(directory)
        if killed:
            log.warning("killed %d builds left by dead worker %s", killed, directory.name)
        remove_tree(directory)
        reaped.append(directory.name)
    return reaped
