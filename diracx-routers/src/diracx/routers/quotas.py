"""A VO's limits, from its configuration: which executors and queues its pipelines may
use, how many of its jobs may be live at once, how much its blobs may take in the store.

Checked when a pipeline is submitted (``logic.submit``) and when an ended job is
rescheduled. Every refusal is a 403 whose message says which limit, by how much, and
what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ByteSize

from diracx.core.config import VOConfig
from diracx.core.derivation import Derivation
from diracx.core.exceptions import ForbiddenError
from diracx.db.pipelines import Admit, PipelineDB


class QuotaExceededError(ForbiddenError):
    """A VO's quota (``quotas.running_jobs``, ``quotas.store_bytes``) would be passed."""


class NotAllowedError(ForbiddenError):
    """A VO's configuration does not allow an executor or a queue."""


def _allowed(values: Sequence[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def check_builders(
    vo: str, limits: VOConfig | None, ordered: Sequence[tuple[str, Derivation]]
) -> None:
    """Every stage uses an executor and a queue its VO may use (``executors``, ``queues``)."""
    if limits is None:
        return
    for _, drv in ordered:
        kind = drv.builder.get("executor")
        if limits.executors is not None and kind not in limits.executors:
            raise NotAllowedError(
                f"stage {drv.name!r} uses the executor {kind!r}, which VO {vo!r} may not use "
                f"(allowed: {_allowed(limits.executors)}): use one of those, or ask your VO "
                "admin to add it to executors"
            )
        queue = drv.scheduling.queue
        if limits.queues is not None and queue not in limits.queues:
            raise NotAllowedError(
                f"stage {drv.name!r} asks for the queue {queue!r}, which VO {vo!r} may not use "
                f"(allowed: {_allowed(limits.queues)}): use one of those, or ask your VO admin "
                "to add it to queues"
            )


async def check_store_bytes(db: PipelineDB, vo: str, limits: VOConfig | None) -> None:
    """Refuse new builds while the VO's blobs take more than ``quotas.store_bytes``."""
    limit = limits.quotas.store_bytes if limits is not None else None
    if limit is None:
        return
    used = await db.vo_store_bytes(vo)
    if used > limit:
        raise QuotaExceededError(
            f"VO {vo!r} stores {ByteSize(used).human_readable()} ({used} bytes), over its "
            f"quota of {limit.human_readable()} ({int(limit)} bytes): unpin what it no longer "
            "needs and collect garbage, or ask your VO admin to raise quotas.store_bytes"
        )


def running_jobs_admission(vo: str, limits: VOConfig | None, what: str) -> Admit | None:
    """The check of ``quotas.running_jobs`` that the database runs in the transaction
    that starts jobs (None: no limit). *what* names what adds them ("this pipeline")."""
    limit = limits.quotas.running_jobs if limits is not None else None
    if limit is None:
        return None

    def admit(running: int, adding: int) -> None:
        if adding and running + adding > limit:
            raise QuotaExceededError(
                f"VO {vo!r} may run {limit} jobs at once; {running} are running and {what} "
                f"adds {adding}: wait for some to finish or ask your VO admin to raise "
                "quotas.running_jobs"
            )

    return admit


async def admit_submission(
    db: PipelineDB, vo: str, limits: VOConfig | None, ordered: Sequence[tuple[str, Derivation]]
) -> Admit | None:
    """Check a submission against its VO's limits (executors, queues, store bytes); return
    the running-jobs check for the submission's transaction (it knows how many jobs the
    pipeline adds: those its VO has neither realized nor is building)."""
    check_builders(vo, limits, ordered)
    await check_store_bytes(db, vo, limits)
    return running_jobs_admission(vo, limits, "this pipeline")
