from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="QuotaConfig")


@_attrs_define
class QuotaConfig:
    """
    Attributes:
        running_jobs (int | None | Unset):
        store_bytes (int | None | Unset):
    """

    running_jobs: int | None | Unset = UNSET
    store_bytes: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        running_jobs: int | None | Unset
        if isinstance(self.running_jobs, Unset):
            running_jobs = UNSET
        else:
            running_jobs = self.running_jobs

        store_bytes: int | None | Unset
        if isinstance(self.store_bytes, Unset):
            store_bytes = UNSET
        else:
            store_bytes = self.store_bytes

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if running_jobs is not UNSET:
            field_dict["running_jobs"] = running_jobs
        if store_bytes is not UNSET:
            field_dict["store_bytes"] = store_bytes

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_running_jobs(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        running_jobs = _parse_running_jobs(d.pop("running_jobs", UNSET))

        def _parse_store_bytes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        store_bytes = _parse_store_bytes(d.pop("store_bytes", UNSET))

        quota_config = cls(
            running_jobs=running_jobs,
            store_bytes=store_bytes,
        )

        return quota_config
