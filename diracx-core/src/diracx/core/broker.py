"""Celery settings shared by the service (which sends) and the workers (which consume),
and what a worker serves.

Only plain data here: core does not import Celery. The embedded default uses
kombu's filesystem transport, which needs no broker server; a deployment sets
``DIRACX_BROKER_URL`` to ``redis://...`` (or ``amqp://...`` for RabbitMQ).

Every job goes to the Celery queue named by its ``queue`` (``Scheduling.queue``):
a worker consumes only the queues it serves, and a message for a queue nobody
serves yet waits in the broker until a worker that serves it starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from diracx.core.derivation import DEFAULT_QUEUE, QUEUE_RE
from diracx.core.settings import ServiceSettings

REALIZE_TASK = "diracx.realize"
# Jobs per "realize" message: big enough to batch claims, small enough to spread over workers.
REALIZE_BATCH = 32
# A worker not seen for this long (its heartbeat comes every 10 s) serves nothing any more.
WORKER_STALE_SECONDS = 60.0
# How long a message may stay unacknowledged on Redis before it is delivered again.
REDIS_VISIBILITY_TIMEOUT = 300


class QueuedJob(NamedTuple):
    """A Waiting job and the Celery queue its message goes to."""

    id: int
    queue: str


def realize_batches(jobs: Iterable[QueuedJob]) -> list[tuple[str, list[int]]]:
    """The ``diracx.realize`` messages that queue *jobs*: ``(queue, job ids)`` each,
    grouped by queue (first-seen order), the ids of a queue in the order given."""
    by_queue: dict[str, list[int]] = {}
    for job_id, queue in jobs:
        by_queue.setdefault(queue, []).append(job_id)
    return [
        (queue, ids[i : i + REALIZE_BATCH])
        for queue, ids in by_queue.items()
        for i in range(0, len(ids), REALIZE_BATCH)
    ]


@dataclass(frozen=True)
class WorkerCapacity:
    """What a worker serves: its queues, its build slots, its memory (0: not declared, no
    limit) and its GPUs. A job fits if its queue is served and its cpus, memory and gpus
    fit; a job with ``cpus=N`` takes N of the slots while it builds."""

    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    slots: int = 1
    memory_mb: int = 0
    gpus: int = 0

    def __post_init__(self) -> None:
        if not self.queues:
            raise ValueError("a worker must serve at least one queue")
        for queue in self.queues:
            if not QUEUE_RE.match(queue):
                raise ValueError(
                    f"queue {queue!r} must be 1-64 letters, digits, '.', '_', ':' or '-', "
                    "starting with a letter or digit"
                )
        if self.slots < 1:
            raise ValueError(f"a worker needs at least one slot, not {self.slots}")
        if self.memory_mb < 0 or self.gpus < 0:
            raise ValueError("memory and gpus cannot be negative")

    def fits(self, queue: str, cpus: int, memory_mb: int, gpus: int) -> bool:
        return (
            queue in self.queues
            and cpus <= self.slots
            and (self.memory_mb == 0 or memory_mb <= self.memory_mb)
            and gpus <= self.gpus
        )


def unserved_reason(
    capacities: Sequence[WorkerCapacity], queue: str, cpus: int, memory_mb: int, gpus: int
) -> str | None:
    """Why none of *capacities* can take a job, or None if one can.

    The checks narrow the workers down in order (queue, slots, memory, GPUs), so the
    message names the first requirement that no remaining worker meets, and the
    largest that the workers of the queue offer.
    """
    able = [c for c in capacities if queue in c.queues]
    if not able:
        return f"No worker serves queue {queue!r}"
    fitting = [c for c in able if cpus <= c.slots]
    if not fitting:
        largest = max(c.slots for c in able)
        return f"No worker has {cpus} slots for this job (largest: {largest})"
    able = fitting
    if memory_mb:
        fitting = [c for c in able if c.memory_mb == 0 or memory_mb <= c.memory_mb]
        if not fitting:
            largest = max(c.memory_mb for c in able)
            return f"No worker has {memory_mb} MB of memory for this job (largest: {largest} MB)"
        able = fitting
    if gpus:
        fitting = [c for c in able if gpus <= c.gpus]
        if not fitting:
            largest = max(c.gpus for c in able)
            return f"No worker has {gpus} GPUs for this job (largest: {largest})"
    return None


# Every unserved reason starts so: how a Waiting job's minor status is known to be ours.
UNSERVED_PREFIX = "No worker "

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*\Z", re.IGNORECASE)
_MEMORY_UNITS = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory(text: str) -> int:
    """``16G``, ``512M``, ``1.5GiB`` or a plain number of MiB, as MiB (binary units)."""
    match = _MEMORY_RE.match(text)
    if not match:
        raise ValueError(f"memory {text!r} must be a size such as 512M, 16G or 1T")
    number, unit = match.groups()
    return int(float(number) * _MEMORY_UNITS[unit.lower()])


def celery_config(settings: ServiceSettings) -> dict[str, Any]:
    url = settings.resolved_broker_url()
    config: dict[str, Any] = {
        "broker_url": url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # Messages name their queue; this is the one a worker consumes when told none.
        "task_default_queue": DEFAULT_QUEUE,
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
    }
    if url.startswith("filesystem://"):
        # This transport has no push: Celery's blocking consumer loop only looks for new
        # messages between 2 s waits once its prefetch window is full, so keep it wide
        # (a worker only claims jobs it can start soon; the rest wait, still Waiting).
        config["worker_prefetch_multiplier"] = 64
        queue_dir = settings.broker_dir / "queue"
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(settings.broker_dir / "processed"),
            # kombu's default is ./control, under whatever directory the process runs in
            "control_folder": str(settings.broker_dir / "control"),
            "store_processed": False,
            "polling_interval": 0.02,
        }
    elif url.startswith(("redis://", "rediss://", "redis+socket://")):
        # Redis has no acknowledgements: a message taken but not acknowledged is
        # delivered again once it is visibility_timeout old. We rely on our own
        # requeue instead of covering the longest build with it: a realize task
        # returns once its jobs are claimed (the build goes on in the worker), so a
        # message stays unacknowledged for the claim, or until a slot frees when the
        # worker is full. A message delivered again is harmless (claims are
        # conditional: a claimed job is skipped), and the jobs of a worker lost before
        # it claimed them are still Waiting: the periodic requeue of Waiting jobs
        # sends them again. Five minutes bounds how late such a duplicate comes.
        config["broker_transport_options"] = {
            "visibility_timeout": REDIS_VISIBILITY_TIMEOUT,
        }
    return config


def ensure_broker_dirs(settings: ServiceSettings) -> None:
    if settings.resolved_broker_url().startswith("filesystem://"):
        (settings.broker_dir / "queue").mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "processed").mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "control").mkdir(parents=True, exist_ok=True)
