"""Run one build command: logged to a file, in its own process group, with a timeout.

Kept lean, as a worker runs hundreds of builds per second:

- stdout and stderr both go straight to the log file (the same open file, so
  they interleave in order): no pipes to pump, and nothing to hang on when a
  grandchild keeps them open;
- the exit is awaited with a pidfd registered in the event loop, not with
  asyncio's child watcher (on Python 3.11 that starts a thread per process);
- the process runs in its own session; when it exits, or when its timeout
  expires, the whole process group is killed (SIGKILL), so nothing it started in
  the background outlives the build. The group is killed before the leader is
  reaped, so its id cannot have been reused by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_devnull_fd: int | None = None


def _devnull() -> int:
    global _devnull_fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a command ended; ``reason`` is "" on success."""

    returncode: int | None
    reason: str
    duration: float

    @property
    def ok(self) -> bool:
        return not self.reason


# Given the outcome of a failed run, a better reason (or None to keep "exit code N").
Explain = Callable[[Outcome], str | None]


def describe_exit(returncode: int) -> str:
    """ "" for 0, else "exit code N" or "killed by signal SIGXXX"."""
    if returncode == 0:
        return ""
    if returncode > 0:
        return f"exit code {returncode}"
    try:
        return f"killed by signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def append_reason(log_fd: int, reason: str) -> None:
    """End the log with ``diracx: <reason>`` on a line of its own."""
    line = f"diracx: {reason}\n".encode()
    with contextlib.suppress(OSError):
        size = os.fstat(log_fd).st_size
        if size and os.pread(log_fd, 1, size - 1) != b"\n":
            line = b"\n" + line
    with contextlib.suppress(OSError):
        os.write(log_fd, line)


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


async def run_logged(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    log_path: str,
    timeout: float | None,
    explain: Explain | None = None,
) -> Outcome:
    """Run *argv* with stdout and stderr to *log_path*; on failure end the log with the reason.

    *explain*, if given, is called with the outcome of a failed run that did not
    time out and may return a better reason (the python runner's own account).
    """
    start = time.monotonic()
    log_fd = os.open(
        log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644
    )
    try:
        try:
            outcome = await _run(argv, cwd, env, log_fd, timeout, start)
        except asyncio.CancelledError:
            append_reason(log_fd, "build cancelled")
            raise
        if explain is not None and outcome.returncode is not None and outcome.returncode != 0:
            better = explain(outcome)
            if better:
                outcome = Outcome(outcome.returncode, better, outcome.duration)
        if outcome.reason:
            append_reason(log_fd, outcome.reason)
        return outcome
    finally:
        os.close(log_fd)


async def _run(
    argv: Sequence[str],
    cwd: str,
    env: Mapping[str, str],
    log_fd: int,
    timeout: float | None,
    start: float,
) -> Outcome:
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=_devnull(),
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in argv or env
        return Outcome(None, _start_error(exc, argv[0], cwd), time.monotonic() - start)

    loop = asyncio.get_running_loop()
    timed_out = False

    def on_timeout() -> None:
        nonlocal timed_out
        timed_out = True
        _kill_group(proc.pid)

    timer = loop.call_later(timeout, on_timeout) if timeout is not None else None
    try:
        await _exited(loop, proc)
    except BaseException:
        # Cancelled (the job was killed, the worker stops): take the build down with us.
        _kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        raise
    finally:
        if timer is not None:
            timer.cancel()
    # The leader has exited but is not reaped yet: its process group id is still
    # ours, so killing the group cannot hit anyone else.
    _kill_group(proc.pid)
    returncode = proc.wait()
    duration = time.monotonic() - start
    if timed_out:
        assert timeout is not None
        return Outcome(None, f"timed out after {format_seconds(timeout)}", duration)
    return Outcome(returncode, describe_exit(returncode), duration)


async def _exited(loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]) -> None:
    """Wait until *proc* has exited, without reaping it."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = -1
    if pidfd < 0:
        # No pidfd (not Linux, or an old kernel): wait in a thread. waitid with
        # WNOWAIT leaves the process unreaped, like the pidfd does.
        await loop.run_in_executor(None, _wait_no_reap, proc)
        return
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _wait_no_reap(proc: subprocess.Popen[bytes]) -> None:
    if hasattr(os, "waitid"):
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    else:  # macOS: reap it; the group is killed just after
        proc.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _start_error(exc: OSError | ValueError, command: str, cwd: str) -> str:
    if isinstance(exc, ValueError):
        return f"cannot start {command!r}: {exc}"
    if exc.filename == cwd and exc.filename != command:
        what = "working directory"
        target = cwd
    else:
        what = "command"
        target = command
    if isinstance(exc, FileNotFoundError):
        return f"{what} not found: {target}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {target}"
    return f"cannot start {command}: {exc.strerror or exc}"
