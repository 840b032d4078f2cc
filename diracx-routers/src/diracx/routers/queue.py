"""The job queue: tells workers that jobs are Waiting, by sending Celery messages by task name.

The service never imports ``diracx.tasks``: it sends ``diracx.core.broker.REALIZE_TASK``
with the job ids in batches, each to the Celery queue named by its jobs' ``queue``
(only the workers serving that queue get it; until one starts, the message waits
in the broker). The database is the source of truth and the broker
only delivers: a message that is lost is sent again by the engine's requeue of
Waiting jobs, so a failure to send is logged, not reported to the submitter.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.to_thread

from diracx.core.broker import (
    REALIZE_TASK,
    QueuedJob,
    celery_config,
    ensure_broker_dirs,
    realize_batches,
)
from diracx.core.settings import ServiceSettings

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)


class JobQueue(Protocol):
    """Where Waiting jobs are announced to workers."""

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None: ...

    async def ping(self, timeout: float) -> None:
        """Raise BrokerUnreachableError unless the broker answers within *timeout* s."""
        ...

    def close(self) -> None: ...


class BrokerUnreachableError(Exception):
    """The broker cannot take messages now; the message says why."""


class CeleryJobQueue:
    """Sends ``REALIZE_TASK`` messages with a Celery producer (no worker code imported)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._celery: Celery | None = None
        self._lock = threading.Lock()
        # One sender thread at a time: messages keep their order, the producer is not shared.
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def celery(self) -> Celery:
        with self._lock:
            if self._celery is None:
                from celery import Celery  # imported on first use: it takes ~0.25 s

                ensure_broker_dirs(self.settings)
                app = Celery("diracx-routers", set_as_current=False)
                app.conf.update(celery_config(self.settings))
                self._celery = app
            return self._celery

    def warm_up(self) -> None:
        """Import Celery in a background thread, so that neither the start nor the
        first submission waits for it."""
        threading.Thread(target=self._warm_up, name="diracx-queue-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            _ = self.celery  # imports Celery, makes the broker directories
        except Exception as exc:  # the readiness check and the first send report it
            logger.warning("the job queue is not ready yet: %s", exc)

    def send(self, jobs: Sequence[QueuedJob]) -> None:
        """Blocking: one message per batch of job ids, to the queue of its jobs."""
        for queue, batch in realize_batches(jobs):
            self.celery.send_task(REALIZE_TASK, args=[batch], queue=queue)

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        if not jobs:
            return
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        try:
            await anyio.to_thread.run_sync(self.send, list(jobs), limiter=self._limiter)
        except Exception:
            logger.exception(
                "could not queue jobs %s; they stay Waiting and will be queued again",
                [j.id for j in jobs],
            )

    def _ping(self, timeout: float) -> None:
        """Blocking: a new connection to the broker (and, on Redis, a PING)."""
        url = self.settings.resolved_broker_url()
        if url.startswith("filesystem://"):
            # no server: reachable if its directories can take files
            try:
                ensure_broker_dirs(self.settings)
            except OSError as exc:
                raise BrokerUnreachableError(
                    f"the broker directory {self.settings.broker_dir}: {exc.strerror}"
                ) from None
            for sub in ("queue", "processed"):
                path = self.settings.broker_dir / sub
                if not os.access(path, os.W_OK | os.X_OK):
                    raise BrokerUnreachableError(f"the broker directory {path} is not writable")
            return
        try:
            with self.celery.connection_for_write() as conn:
                conn.transport_options = {**conn.transport_options, "socket_timeout": timeout}
                conn.connect_timeout = timeout
                # one attempt, no wait: a probe reports, it does not retry
                conn.ensure_connection(max_retries=0, interval_start=0, timeout=timeout)
                client = getattr(conn.default_channel, "client", None)
                if client is not None and hasattr(client, "ping"):  # Redis
                    client.ping()
        except Exception as exc:
            raise BrokerUnreachableError(f"{type(exc).__name__}: {exc}") from None

    async def ping(self, timeout: float) -> None:
        """Raise BrokerUnreachableError unless the broker answers within *timeout* s."""
        try:
            with anyio.fail_after(timeout):
                # a probe does not hold the sending thread (self._limiter) nor waits for it
                await anyio.to_thread.run_sync(self._ping, timeout, abandon_on_cancel=True)
        except TimeoutError:
            raise BrokerUnreachableError(f"no answer within {timeout:g} s") from None

    def close(self) -> None:
        with self._lock:
            if self._celery is not None:
                self._celery.close()
                self._celery = None


class RecordingJobQueue:
    """Keeps the batches it is given: for tests, and for a service that runs no workers."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []  # the job ids of each message
        self.routed: list[tuple[str, list[int]]] = []  # (queue, job ids) of each message

    @property
    def job_ids(self) -> list[int]:
        return [j for batch in self.sent for j in batch]

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        for queue, batch in realize_batches(jobs):
            self.sent.append(batch)
            self.routed.append((queue, batch))

    async def ping(self, timeout: float) -> None:
        """Always reachable: the batches stay in this process."""

    def close(self) -> None:
        pass
