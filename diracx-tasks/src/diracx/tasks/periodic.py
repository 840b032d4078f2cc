"""The periodic tasks on Celery: ``dirac scheduler`` (Celery beat) sends them, a worker runs them.

Beat sends ``diracx.periodic`` every ``periodic_interval`` seconds to the queue
``_diracx.periodic``, which every worker consumes besides its own queues (no job
queue can have that name: job queues start with a letter or a digit). The worker
that takes the message runs one tick (``diracx.db.periodic.run_tick``): lost
workers' jobs are rescheduled, lost messages sent again, unserved jobs explained.
A message that waited longer than one interval expires: ticks do not pile up
while no worker runs. Run one scheduler per deployment; a second one only makes
ticks more frequent (they are harmless when they overlap).

Cleaning the scratch directories of dead workers is not a tick: each worker does
it for its own machine (``WorkerRuntime``'s heartbeat loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from diracx.core.broker import QueuedJob
from diracx.core.settings import ServiceSettings
from diracx.db.periodic import run_tick

if TYPE_CHECKING:
    from celery import Celery

    from diracx.tasks.celery_app import RuntimeThread

log = logging.getLogger(__name__)

PERIODIC_TASK = "diracx.periodic"
PERIODIC_QUEUE = "_diracx.periodic"
SCHEDULE_FILE = "celerybeat-schedule"


def beat_schedule(settings: ServiceSettings) -> dict[str, Any]:
    """Celery's ``beat_schedule``: one tick every ``periodic_interval`` seconds."""
    return {
        "diracx-tick": {
            "task": PERIODIC_TASK,
            "schedule": settings.periodic_interval,
            "options": {"queue": PERIODIC_QUEUE, "expires": settings.periodic_interval},
        }
    }


def register_periodic(
    app: Celery,
    settings: ServiceSettings,
    runtime: Callable[[], RuntimeThread],
    send: Callable[[Sequence[QueuedJob]], None],
) -> None:
    """Add the ``diracx.periodic`` task to the workers' app, and make every worker
    consume its queue besides the ones it was told to serve."""
    from celery.signals import celeryd_after_setup

    @app.task(name=PERIODIC_TASK)
    def periodic() -> None:
        rt = runtime()

        async def send_async(jobs: Sequence[QueuedJob]) -> None:
            await asyncio.to_thread(send, jobs)

        rt.call(run_tick(rt.runtime.db, settings, send_async))

    def consume_periodic(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if instance is not None and instance.app is app:
            instance.app.amqp.queues.select_add(PERIODIC_QUEUE)

    celeryd_after_setup.connect(consume_periodic, weak=False)


def run_scheduler(app: Celery, settings: ServiceSettings, loglevel: str = "WARNING") -> None:
    """Run Celery beat with the DiracX schedule (``dirac scheduler``), until stopped."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.conf.beat_schedule = beat_schedule(settings)
    # beat wakes up at least this often: a shorter interval must not wait for the default 5 min
    app.conf.beat_max_loop_interval = min(settings.periodic_interval, 60.0)
    app.Beat(
        loglevel=loglevel,
        schedule=str(settings.data_dir / SCHEDULE_FILE),
        quiet=True,
    ).run()
