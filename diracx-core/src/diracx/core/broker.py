"""Celery settings shared by the service (which sends) and the workers (which consume).

Only plain data here: core does not import Celery. The embedded default uses
kombu's filesystem transport, which needs no broker server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diracx.core.settings import ServiceSettings

REALIZE_TASK = "diracx.realize"
# Jobs per "realize" message: big enough to batch claims, small enough to spread over workers.
REALIZE_BATCH = 32


def realize_batches(job_ids: Sequence[int]) -> list[list[int]]:
    """The arguments of the ``diracx.realize`` messages that queue *job_ids*."""
    return [list(job_ids[i : i + REALIZE_BATCH]) for i in range(0, len(job_ids), REALIZE_BATCH)]


def celery_config(settings: ServiceSettings) -> dict[str, Any]:
    url = settings.resolved_broker_url()
    config: dict[str, Any] = {
        "broker_url": url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
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
    return config


def ensure_broker_dirs(settings: ServiceSettings) -> None:
    if settings.resolved_broker_url().startswith("filesystem://"):
        (settings.broker_dir / "queue").mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "processed").mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "control").mkdir(parents=True, exist_ok=True)
