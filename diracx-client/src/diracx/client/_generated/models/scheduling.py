from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="Scheduling")


@_attrs_define
class Scheduling:
    """Where and how a derivation's job runs: not what it builds, so not part of the DRef.

    ``queue`` names the Celery queue (a site, ``gpu``, ...): only workers that serve it
    take the job. ``cpus`` is how many of a worker's slots the build takes; ``memory_mb``
    and ``gpus`` must fit what the worker declared. ``retries`` is how many times a
    failing build is tried again, ``retry_backoff`` the wait before the first retry
    (doubled for each next one). A lost worker never counts against ``retries``.

        Attributes:
            cpus (int | Unset):  Default: 1.
            gpus (int | Unset):  Default: 0.
            memory_mb (int | Unset):  Default: 0.
            queue (str | Unset):  Default: 'default'.
            retries (int | Unset):  Default: 0.
            retry_backoff (float | Unset):  Default: 0.0.
    """

    cpus: int | Unset = 1
    gpus: int | Unset = 0
    memory_mb: int | Unset = 0
    queue: str | Unset = "default"
    retries: int | Unset = 0
    retry_backoff: float | Unset = 0.0

    def to_dict(self) -> dict[str, Any]:
        cpus = self.cpus

        gpus = self.gpus

        memory_mb = self.memory_mb

        queue = self.queue

        retries = self.retries

        retry_backoff = self.retry_backoff

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if cpus is not UNSET:
            field_dict["cpus"] = cpus
        if gpus is not UNSET:
            field_dict["gpus"] = gpus
        if memory_mb is not UNSET:
            field_dict["memory_mb"] = memory_mb
        if queue is not UNSET:
            field_dict["queue"] = queue
        if retries is not UNSET:
            field_dict["retries"] = retries
        if retry_backoff is not UNSET:
            field_dict["retry_backoff"] = retry_backoff

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cpus = d.pop("cpus", UNSET)

        gpus = d.pop("gpus", UNSET)

        memory_mb = d.pop("memory_mb", UNSET)

        queue = d.pop("queue", UNSET)

        retries = d.pop("retries", UNSET)

        retry_backoff = d.pop("retry_backoff", UNSET)

        scheduling = cls(
            cpus=cpus,
            gpus=gpus,
            memory_mb=memory_mb,
            queue=queue,
            retries=retries,
            retry_backoff=retry_backoff,
        )

        return scheduling
