"""``dirac server`` and ``dirac worker``: run the service or a worker in this terminal."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from diracx.cli._common import fail
from diracx.core.broker import WorkerCapacity, parse_memory
from diracx.core.derivation import DEFAULT_QUEUE


def _exec(module: str, *args: str) -> None:
    """Become the server or worker process (they are separate packages: we start, not import)."""
    argv = [sys.executable, "-m", module, *args]
    os.execv(sys.executable, argv)


def server(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    embedded: Annotated[
        bool, typer.Option(help="the single-user engine: a worker too, a local token, idle stop")
    ] = False,
) -> None:
    """Run the DiracX service (settings from DIRACX_* variables)."""
    args = ["serve", "--host", host, "--port", str(port)]
    _exec("diracx.routers", *args, *(["--embedded"] if embedded else []))


def worker(
    queues: Annotated[
        str, typer.Option(help="the queues to serve, comma-separated (default, gpu, a site...)")
    ] = DEFAULT_QUEUE,
    concurrency: Annotated[int, typer.Option(help="broker messages handled at once")] = 2,
    slots: Annotated[
        int | None,
        typer.Option(
            min=1, help="builds run at once; a stage with cpus=N takes N (default: 4 per core)"
        ),
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(help="memory for builds, such as 16G: only stages that fit are taken"),
    ] = None,
    gpus: Annotated[
        int, typer.Option(min=0, help="GPUs: stages that ask for more are not taken")
    ] = 0,
) -> None:
    """Run a worker that takes jobs from the broker (settings from DIRACX_* variables).

    It serves only the chosen queues, and takes only stages whose cpus, memory and
    GPUs fit what it declares here.
    """
    names = [q.strip() for q in queues.split(",") if q.strip()]
    try:
        WorkerCapacity(
            queues=tuple(names),
            slots=slots or 1,
            memory_mb=parse_memory(memory) if memory else 0,
            gpus=gpus,
        )
    except ValueError as exc:
        fail(str(exc))
    _exec(
        "diracx.tasks",
        "worker",
        "--queues",
        ",".join(names),
        "--concurrency",
        str(concurrency),
        *(["--slots", str(slots)] if slots else []),
        *(["--memory", memory] if memory else []),
        "--gpus",
        str(gpus),
    )


def scheduler() -> None:
    """Run the scheduler: Celery beat, which sends the periodic tasks to the workers.

    A tick reschedules the jobs of lost workers, sends again the messages of Waiting
    jobs that may be lost and says why jobs no worker can serve are waiting
    (DIRACX_PERIODIC_INTERVAL, DIRACX_HEARTBEAT_TIMEOUT, DIRACX_REQUEUE_AFTER...).
    Run one per deployment; the embedded engine needs none.
    """
    _exec("diracx.tasks", "scheduler")
