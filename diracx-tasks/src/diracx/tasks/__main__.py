"""``python -m diracx.tasks worker``: start a worker (``dirac worker`` runs this)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from diracx.core.settings import ServiceSettings
from diracx.core.version import check_versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diracx.tasks")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="consume jobs and build them")
    worker.add_argument("--concurrency", type=int, default=2, help="messages handled at once")
    worker.add_argument("--slots", type=int, default=None, help="builds run at once")
    worker.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)
    check_versions()
    logging.basicConfig(
        level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from diracx.tasks.celery_app import create_celery

    settings = ServiceSettings()
    if args.slots:
        settings.worker_slots = args.slots
    app = create_celery(settings)
    app.diracx_runtime()  # start now: register, so restarts find us
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel}",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            f"--hostname=diracx-{os.getpid()}@%h",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
