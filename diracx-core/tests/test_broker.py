"""What the broker settings and the worker capacities say, as plain data."""

from __future__ import annotations

import pytest

from diracx.core.broker import (
    REALIZE_BATCH,
    QueuedJob,
    WorkerCapacity,
    celery_config,
    parse_memory,
    realize_batches,
    unserved_reason,
)
from diracx.core.settings import ServiceSettings


def test_realize_batches_group_by_queue_and_keep_order() -> None:
    jobs = [QueuedJob(i, "gpu" if i % 3 == 0 else "default") for i in range(1, 80)]
    batches = realize_batches(jobs)
    assert [q for q, _ in batches] == ["default", "default", "gpu"]
    assert all(len(ids) <= REALIZE_BATCH for _, ids in batches)
    assert [j for q, ids in batches if q == "default" for j in ids] == [
        j.id for j in jobs if j.queue == "default"
    ]
    assert [j for q, ids in batches if q == "gpu" for j in ids] == [
        j.id for j in jobs if j.queue == "gpu"
    ]
    assert realize_batches([]) == []


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("16G", 16384),
        ("512M", 512),
        ("1.5GiB", 1536),
        ("2 GB", 2048),
        ("100", 100),
        ("1t", 1 << 20),
    ],
)
def test_parse_memory(text: str, mb: int) -> None:
    assert parse_memory(text) == mb


@pytest.mark.parametrize("text", ["", "lots", "-1G", "16Q", "G"])
def test_parse_memory_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="must be a size"):
        parse_memory(text)


def test_capacity_checks_what_it_is_given() -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        WorkerCapacity(queues=())
    with pytest.raises(ValueError, match="queue 'bad queue'"):
        WorkerCapacity(queues=("bad queue",))
    with pytest.raises(ValueError, match="at least one slot"):
        WorkerCapacity(slots=0)


def test_fits() -> None:
    cap = WorkerCapacity(queues=("default", "gpu"), slots=4, memory_mb=8192, gpus=1)
    assert cap.fits("gpu", 4, 8192, 1)
    assert not cap.fits("site-a", 1, 0, 0)
    assert not cap.fits("default", 5, 0, 0)
    assert not cap.fits("default", 1, 8193, 0)
    assert not cap.fits("gpu", 1, 0, 2)
    # no memory declared: no limit
    assert WorkerCapacity(slots=1).fits("default", 1, 10**6, 0)


def test_unserved_reasons_name_the_first_unmet_need() -> None:
    small = WorkerCapacity(queues=("default",), slots=2, memory_mb=4096)
    gpu = WorkerCapacity(queues=("gpu",), slots=8, memory_mb=0, gpus=1)
    both = [small, gpu]
    assert unserved_reason([], "default", 1, 0, 0) == "No worker serves queue 'default'"
    assert unserved_reason(both, "site-a", 1, 0, 0) == "No worker serves queue 'site-a'"
    assert unserved_reason(both, "default", 4, 0, 0) == (
        "No worker has 4 slots for this job (largest: 2)"
    )
    assert unserved_reason(both, "default", 2, 8192, 0) == (
        "No worker has 8192 MB of memory for this job (largest: 4096 MB)"
    )
    assert unserved_reason(both, "gpu", 1, 10**6, 2) == (
        "No worker has 2 GPUs for this job (largest: 1)"
    )
    assert unserved_reason(both, "default", 2, 4096, 0) is None
    assert unserved_reason(both, "gpu", 8, 10**6, 1) is None


def test_celery_config_by_transport(tmp_path) -> None:
    fs = celery_config(ServiceSettings(data_dir=tmp_path))
    assert fs["broker_url"] == "filesystem://" and fs["task_default_queue"] == "default"
    assert "data_folder_in" in fs["broker_transport_options"]
    redis = celery_config(ServiceSettings(data_dir=tmp_path, broker_url="redis://h:6379/0"))
    assert redis["broker_transport_options"]["visibility_timeout"] >= 60
    assert redis["task_acks_late"] is True
    amqp = celery_config(ServiceSettings(data_dir=tmp_path, broker_url="amqp://guest@h//"))
    assert "broker_transport_options" not in amqp
