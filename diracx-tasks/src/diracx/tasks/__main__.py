"""``python -m diracx.tasks worker``: start a worker (``dirac worker`` runs this);
``python -m diracx.tasks scheduler``: Celery beat for the periodic tasks (``dirac scheduler``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from diracx.core.broker import WorkerCapacity, parse_memory
from diracx.core.derivation import DEFAULT_QUEUE
from diracx.core.settings import ServiceSettings
from diracx.core.version import check_versions


def _memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _queues(text: str) -> tuple[str, ...]:
    return tuple(q.strip() for q in text.split(",") if q.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diracx.tasks")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="consume jobs and build them")
    worker.add_argument(
        "--queues",
        type=_queues,
        default=(DEFAULT_QUEUE,),
        help="the queues to serve, comma-separated (default: default)",
    )
    worker.add_argument("--concurrency", type=int, default=2, help="messages handled at once")
    worker.add_argument(
        "--slots", type=int, default=None, help="builds run at once; a stage with cpus=N takes N"
    )
    worker.add_argument(
        "--memory", type=_memory, default=0, help="memory for builds (16G, 512M...; default: any)"
    )
    worker.add_argument("--gpus", type=int, default=0, help="GPUs for builds")
    worker.add_argument("--loglevel", default="WARNING")
    scheduler = sub.add_parser(
        "scheduler", help="send the periodic tasks (recovery) to the workers: Celery beat"
    )
    scheduler.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)
    check_versions()
    logging.basicConfig(
        level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    settings = ServiceSettings()
    if args.command == "scheduler":
        from diracx.tasks.celery_app import create_celery
        from diracx.tasks.periodic import run_scheduler

        run_scheduler(create_celery(settings), settings, args.loglevel)
        return 0
    if args.slots:
        settings.worker_slots = args.slots
    try:
        capacity = WorkerCapacity(
            queues=args.queues,
            slots=settings.worker_slots,
            memory_mb=args.memory,
            gpus=args.gpus,
        )
    except ValueError as exc:
        parser.error(str(exc))

    from diracx.tasks.celery_app import create_celery

    app = create_celery(settings, capacity)
    app.diracx_runtime()  # start now: register, so restarts find us
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel}",
            f"--queues={','.join(capacity.queues)}",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            f"--hostname=diracx-{os.getpid()}@%h",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
