"""The periodic tasks: one "tick" of recovery, the same wherever it runs.

Scaled out, Celery beat (``dirac scheduler``) sends the ``diracx.periodic`` task
and whichever worker takes it runs a tick; the embedded engine runs ticks itself.
The database is the source of truth and the broker only delivers, so a tick
repairs what the broker or a worker lost:

1. held jobs whose worker stopped (or stopped heartbeating) are Stalled, then
   Rescheduled to Waiting after a backoff, or Failed past ``max_reschedules``
   (``PipelineDB.stall_lost``);
2. Waiting jobs that became due after a backoff, or that nobody took for
   ``requeue_after`` seconds (their message may be lost), are sent again
   (``PipelineDB.requeue_lost``);
3. Waiting jobs that no live worker can serve get a minor status that says why,
   and are sent again once one can (``PipelineDB.note_unserved``).

Each step is a transaction of its own made of conditional updates: ticks that
overlap (two workers, a slow one) do no harm. Scratch directories of dead
workers are each worker's own business (``diracx.tasks.cleanup``): a tick runs
on one machine only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from diracx.core.broker import QueuedJob
from diracx.core.settings import ServiceSettings
from diracx.db.pipelines import PipelineDB

log = logging.getLogger(__name__)

# Sends ``diracx.realize`` messages for the jobs, each to its queue.
Send = Callable[[Sequence[QueuedJob]], Awaitable[None]]


@dataclass
class TickReport:
    """What one tick did."""

    rescheduled: list[int] = field(default_factory=list)  # lost a worker, Waiting again
    failed: list[int] = field(default_factory=list)  # lost workers too often, and dependents
    sent: list[QueuedJob] = field(default_factory=list)  # messages sent again

    def __bool__(self) -> bool:
        return bool(self.rescheduled or self.failed or self.sent)


async def run_tick(
    db: PipelineDB, settings: ServiceSettings, send: Send, *, recovering: bool = False
) -> TickReport:
    """Run the periodic tasks once and send the jobs they made (or found) due.

    *recovering*: the caller knows the workers are gone (``mark_workers_stopped``:
    the embedded engine after a crash or a worker's death), so every Waiting job is
    sent at once and a rescheduled job does not wait for a backoff. Unserved jobs are
    left to the next tick: the new workers may not have registered yet.
    """
    stall = await db.stall_lost(
        settings.heartbeat_timeout,
        max_reschedules=settings.max_reschedules,
        backoff=0.0 if recovering else settings.reschedule_backoff,
    )
    lost = await db.requeue_lost(0.0 if recovering else settings.requeue_after)
    served_again = [] if recovering else await db.note_unserved(settings.heartbeat_timeout)
    report = TickReport(rescheduled=stall.rescheduled, failed=stall.failed)
    seen: set[int] = set()
    for job in [*stall.due, *lost, *served_again]:
        if job.id not in seen:
            seen.add(job.id)
            report.sent.append(job)
    if report.sent:
        await send(report.sent)
    if report.rescheduled or report.failed:
        log.warning(
            "jobs %s lost their worker: rescheduled; jobs %s failed (lost too often, or inputs)",
            report.rescheduled,
            report.failed,
        )
    if report.sent:
        log.info("sent %d Waiting jobs again", len(report.sent))
    return report
