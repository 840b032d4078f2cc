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
from diracx.api.login import WhoAmI
from diracx.api.realization import AsyncRealization
from diracx.api.session import AsyncSession, PipelineResult, Progress
from diracx.api.stages import TreeRef
from diracx.api.store import Store
from diracx.core.gc import GCReport, PinInfo
from diracx.core.job_search import (
    HeartbeatData,
    JobActionResponse,
    JobHeartbeatResponse,
    JobSearchPage,
    JobStatusUpdate,
    JobStatusUpdateResponse,
    SearchSpec,
)
from diracx.core.matching import PipelinePlan
from diracx.core.models import (
    JobInfo,
    KillResponse,
    Metadata,
    PipelineInfo,
    PipelinePage,
    RetryResponse,
    StatusHistoryEntry,
)
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

    @property
    def store(self) -> Store:
        """The engine's store: list, read, export, import, verify (diracx.api.store)."""
        return Store(functools.partial(call, self._portal), self._async.store)

    def run(
        self, targets: Any, progress: Progress | None = None, *, force: Iterable[Any] = ()
    ) -> tuple[Instantiated, PipelineResult]:
        """Submit and follow to the end; *force*: stages to build again anyway."""
        run = functools.partial(self._async.run, targets, progress, force=list(force))
        return call(self._portal, run)

    def realize(
        self, targets: Any, progress: Progress | None = None, *, force: Iterable[Any] = ()
    ) -> Any:
        """Realize a stage, a list or a dict of stages; realizations come back in that shape."""
        realize = functools.partial(self._async.realize, targets, progress, force=list(force))
        return _wrap(self._portal, call(self._portal, realize))

    def plan(self, targets: Any, *, force: Iterable[Any] = ()) -> PipelinePlan:
        """A dry run: for every stage, reuse or build, and why. Nothing is recorded."""
        plan = functools.partial(self._async.plan, targets, force=list(force))
        return call(self._portal, plan)

    dry_run = plan

    def realization(self, rref: str) -> Realization:
        return Realization(self._portal, call(self._portal, self._async.realization, rref))

    def pipeline(self, pipeline_id: int) -> PipelineInfo:
        return call(self._portal, self._async.pipeline, pipeline_id)

    def job(self, job_id: int) -> JobInfo:
        return call(self._portal, self._async.job, job_id)

    def server_metadata(self) -> Metadata:
        return call(self._portal, self._async.server_metadata)

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A route without a method here (an extension's): its JSON answer."""
        request = functools.partial(self._async.request_json, method, path, **kwargs)
        return call(self._portal, request)

    def whoami(self) -> WhoAmI:
        """Who this session acts as (user, VO, group, properties) and until when."""
        return call(self._portal, self._async.whoami)

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

    def cancel_pipeline(self, pipeline_id: int) -> KillResponse:
        """Kill every live job of a pipeline. None is live: DiracxError."""
        return call(self._portal, self._async.cancel_pipeline, pipeline_id)

    def retry_pipeline(self, pipeline_id: int) -> RetryResponse:
        """Build a pipeline's Failed and Killed jobs again. None can be: DiracxError."""
        return call(self._portal, self._async.retry_pipeline, pipeline_id)

    def list_pipelines(self, **options: Any) -> PipelinePage:
        """See ``AsyncSession.list_pipelines`` (limit, cursor, owner, status)."""
        return call(self._portal, functools.partial(self._async.list_pipelines, **options))

    def search_jobs(
        self, search: Iterable[SearchSpec | dict[str, Any]] = (), **options: Any
    ) -> JobSearchPage:
        """See ``AsyncSession.search_jobs`` (sort, parameters, page, per_page)."""
        return call(
            self._portal, functools.partial(self._async.search_jobs, list(search), **options)
        )

    def job_summary(
        self, grouping: list[str], search: Iterable[SearchSpec | dict[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        return call(self._portal, self._async.job_summary, grouping, list(search))

    def set_job_status(
        self, changes: dict[int, JobStatusUpdate | dict[str, Any]]
    ) -> JobStatusUpdateResponse:
        return call(self._portal, self._async.set_job_status, changes)

    def job_heartbeat(self, beats: dict[int, HeartbeatData] | list[int]) -> JobHeartbeatResponse:
        return call(self._portal, self._async.job_heartbeat, beats)

    def job_history(self, job_id: int) -> list[StatusHistoryEntry]:
        return call(self._portal, self._async.job_history, job_id)

    def delete_job(self, job_id: int) -> JobActionResponse:
        return call(self._portal, self._async.delete_job, job_id)

    def reschedule_job(self, job_id: int) -> JobActionResponse:
        return call(self._portal, self._async.reschedule_job, job_id)

    def pin(self, name: str, rref: str) -> PinInfo:
        """Name a realization: it and its whole closure survive garbage collection."""
        return call(self._portal, self._async.pin, name, rref)

    def unpin(self, name: str) -> PinInfo:
        return call(self._portal, self._async.unpin, name)

    def pins(self) -> list[PinInfo]:
        return call(self._portal, self._async.pins)

    def collect_garbage(self, **options: Any) -> GCReport:
        """See ``AsyncSession.collect_garbage`` (dry_run, keep_days, target_size, grace_seconds)."""
        return call(self._portal, functools.partial(self._async.collect_garbage, **options))


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
