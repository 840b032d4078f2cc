from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_heartbeat_response_failed import JobHeartbeatResponseFailed


T = TypeVar("T", bound="JobHeartbeatResponse")


@_attrs_define
class JobHeartbeatResponse:
    """The jobs whose heartbeat was recorded, and why the others were not.

    Attributes:
        failed (JobHeartbeatResponseFailed | Unset):
        success (list[int] | Unset):
    """

    failed: JobHeartbeatResponseFailed | Unset = UNSET
    success: list[int] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        failed: dict[str, Any] | Unset = UNSET
        if not isinstance(self.failed, Unset):
            failed = self.failed.to_dict()

        success: list[int] | Unset = UNSET
        if not isinstance(self.success, Unset):
            success = self.success

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if failed is not UNSET:
            field_dict["failed"] = failed
        if success is not UNSET:
            field_dict["success"] = success

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.job_heartbeat_response_failed import JobHeartbeatResponseFailed  # noqa: PLC0415

        d = dict(src_dict)
        _failed = d.pop("failed", UNSET)
        failed: JobHeartbeatResponseFailed | Unset
        if isinstance(_failed, Unset):
            failed = UNSET
        else:
            failed = JobHeartbeatResponseFailed.from_dict(_failed)

        success = cast(list[int], d.pop("success", UNSET))

        job_heartbeat_response = cls(
            failed=failed,
            success=success,
        )

        job_heartbeat_response.additional_properties = d
        return job_heartbeat_response

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
