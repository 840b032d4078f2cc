from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.job_status_update_response_failed import JobStatusUpdateResponseFailed
    from ..models.job_status_update_response_success import (
        JobStatusUpdateResponseSuccess,
    )


T = TypeVar("T", bound="JobStatusUpdateResponse")


@_attrs_define
class JobStatusUpdateResponse:
    """Per job id: the status it now has, or why nothing changed.

    Attributes:
        failed (JobStatusUpdateResponseFailed | Unset):
        success (JobStatusUpdateResponseSuccess | Unset):
    """

    failed: JobStatusUpdateResponseFailed | Unset = UNSET
    success: JobStatusUpdateResponseSuccess | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        failed: dict[str, Any] | Unset = UNSET
        if not isinstance(self.failed, Unset):
            failed = self.failed.to_dict()

        success: dict[str, Any] | Unset = UNSET
        if not isinstance(self.success, Unset):
            success = self.success.to_dict()

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
        from ..models.job_status_update_response_failed import (
            JobStatusUpdateResponseFailed,  # noqa: PLC0415
        )
        from ..models.job_status_update_response_success import (
            JobStatusUpdateResponseSuccess,  # noqa: PLC0415
        )

        d = dict(src_dict)
        _failed = d.pop("failed", UNSET)
        failed: JobStatusUpdateResponseFailed | Unset
        if isinstance(_failed, Unset):
            failed = UNSET
        else:
            failed = JobStatusUpdateResponseFailed.from_dict(_failed)

        _success = d.pop("success", UNSET)
        success: JobStatusUpdateResponseSuccess | Unset
        if isinstance(_success, Unset):
            success = UNSET
        else:
            success = JobStatusUpdateResponseSuccess.from_dict(_success)

        job_status_update_response = cls(
            failed=failed,
            success=success,
        )

        job_status_update_response.additional_properties = d
        return job_status_update_response

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
