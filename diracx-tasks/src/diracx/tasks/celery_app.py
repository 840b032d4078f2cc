"""The Celery app of the workers and its tasks, ``diracx.realize`` and ``diracx.periodic``.

A Celery message only says "these jobs may be ready": the database is the
source of truth, claims make repeated messages harmless, and the periodic
recovery requeues jobs whose message was lost.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

from diracx.core.broker import (
    REALIZE_TASK,
    QueuedJob,
    WorkerCapacity,
    celery_config,
    ensure_broker_dirs,
    realize_batches,
)
from diracx.core.settings import ServiceSettings
from diracx.tasks.periodic import register_periodic
from diracx.tasks.runtime import WorkerRuntime


class RuntimeThread:
    """Runs the WorkerRuntime on an event loop in a daemon thread of the worker process."""

    def __init__(
        self, settings: ServiceSettings, app: Celery, capacity: WorkerCapacity | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="diracx-runtime", daemon=True
        )
        self.thread.start()
        self.runtime = WorkerRuntime(
            settings, enqueue=lambda jobs: send_realize(app, jobs), capacity=capacity
        )
        self.call(self.runtime.start())

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def close(self) -> None:
        self.call(self.runtime.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


def send_realize(app: Celery, jobs: Sequence[QueuedJob]) -> None:
    """Queue jobs, each to its own queue (the service does the same, by task name)."""
    for queue, batch in realize_batches(jobs):
        app.send_task(REALIZE_TASK, args=[batch], queue=queue)


def create_celery(
    settings: ServiceSettings | None = None, capacity: WorkerCapacity | None = None
) -> Celery:
    """The workers' Celery app; its runtime serves *capacity* (default: the default
    queue with ``worker_slots`` slots)."""
    settings = settings or ServiceSettings()
    ensure_broker_dirs(settings)
    app = Celery("diracx", set_as_current=False)
    app.conf.update(celery_config(settings))
    state: dict[str, RuntimeThread] = {}
    lock = threading.Lock()

    def runtime() -> RuntimeThread:
        with lock:
            if "rt" not in state:
                state["rt"] = RuntimeThread(settings, app, capacity)
            return state["rt"]

    @app.task(name=REALIZE_TASK)
    def realize(job_ids: list[int]) -> None:
        rt = runtime()
        rt.call(rt.runtime.realize(job_ids))

    # the recovery tick that ``dirac scheduler`` sends; every worker consumes its queue
    register_periodic(app, settings, runtime, lambda jobs: send_realize(app, jobs))

    def shutdown(**_: Any) -> None:
        if "rt" in state:
            state.pop("rt").close()

    worker_shutdown.connect(shutdown, weak=False)
    worker_process_shutdown.connect(shutdown, weak=False)
    app.diracx_runtime = runtime
    return app
