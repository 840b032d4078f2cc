"""The blocking face of the API: the same calls as AsyncSession, for plain scripts.

A ``Session`` runs an ``AsyncSession`` on an event loop in a background thread
(an anyio blocking portal) and waits for each call.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from diracx.api.instantiate import Instantiated
from diracx.api.realization import AsyncRealization
from diracx.api.session import AsyncSession, PipelineResult, Progress
from diracx.api.stages import TreeRef
from diracx.core.models import JobInfo, KillResponse, Metadata, PipelineInfo
from diracx.core.tree import Tree

T = TypeVar("T")


def call(portal: BlockingPortal, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``func(*args)`` on the portal's loop and wait for it, interruptibly.

    A plain ``portal.call`` blocks Ctrl-C until the call ends (a whole pipeline);
    here KeyboardInterrupt cancels the call and propagates.
    """
    future = portal.start_task_soon(func, *args)
    try:
        while True:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        raise


class Realization:
    """One build result (blocking calls); see AsyncRealization."""

    def __init__(self, portal: BlockingPortal, inner: AsyncRealization) -> None:
        self._portal = portal
        self._inner = inner
        self.rref = inner.rref
        self.dref = inner.dref
        self.name = inner.name
        self.output = inner.output

    def __repr__(self) -> str:
        return repr(self._inner)

    def as_input(self) -> TreeRef:
        return self._inner.as_input()

    def tree(self) -> Tree:
        return call(self._portal, self._inner.tree)

    def files(self) -> list[str]:
        return call(self._portal, self._inner.files)

    def read_bytes(self, path: str) -> bytes:
        return call(self._portal, self._inner.read_bytes, path)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return call(self._portal, self._inner.read_text, path, encoding)

    def result(self) -> Any:
        return call(self._portal, self._inner.result)

    def download(self, dest: str | Path) -> Path:
        return call(self._portal, self._inner.download, dest)


class Session:
    """A blocking session: ``with connect() as s: s.realize(stage)``."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._async = call(self._portal, AsyncSession.open, url, token)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    def close(self) -> None:
        try:
            call(self._portal, self._async.close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def async_session(self) -> AsyncSession:
        return self._async

    def run(
        self, targets: Any, progress: Progress | None = None
    ) -> tuple[Instantiated, PipelineResult]:
        return call(self._portal, functools.partial(self._async.run, targets, progress))

    def realize(self, targets: Any, progress: Progress | None = None) -> Any:
        """Realize a stage, a list or a dict of stages; realizations come back in that shape."""
        result = call(self._portal, functools.partial(self._async.realize, targets, progress))
        return _wrap(self._portal, result)

    def realization(self, rref: str) -> Realization:
        return Realization(self._portal, call(self._portal, self._async.realization, rref))

    def pipeline(self, pipeline_id: int) -> PipelineInfo:
        return call(self._portal, self._async.pipeline, pipeline_id)

    def job(self, job_id: int) -> JobInfo:
        return call(self._portal, self._async.job, job_id)

    def server_metadata(self) -> Metadata:
        return call(self._portal, self._async.server_metadata)

    def job_log(self, job_id: int) -> str:
        return call(self._portal, self._async.job_log, job_id)

    def fetch_blobs(self, digests: Iterable[str]) -> None:
        """Download into this machine's cache the blobs it lacks (verified)."""
        call(self._portal, self._async.fetch_blobs, list(digests))

    def fetch_tree(self, digest: str) -> Tree:
        return call(self._portal, self._async.fetch_tree, digest)

    def kill_job(self, job_id: int) -> KillResponse:
        """Kill a live job; its dependents fail. A job that already ended: DiracxError."""
        return call(self._portal, self._async.kill_job, job_id)

    def kill_pipeline(self, pipeline_id: int) -> KillResponse:
        """Kill every live job of a pipeline. None is live: DiracxError."""
        return call(self._portal, self._async.kill_pipeline, pipeline_id)


def _wrap(portal: BlockingPortal, value: Any) -> Any:
    if isinstance(value, AsyncRealization):
        return Realization(portal, value)
    if isinstance(value, list):
        return [_wrap(portal, v) for v in value]
    if isinstance(value, dict):
        return {k: _wrap(portal, v) for k, v in value.items()}
    return value


def connect(url: str | None = None, token: str | None = None) -> Session:
    """Open a session to DIRACX_URL, or to the embedded engine (started if needed)."""
    return Session(url, token)
