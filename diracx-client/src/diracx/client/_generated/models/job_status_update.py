from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_status import JobStatus
from ..types import UNSET, Unset

T = TypeVar("T", bound="JobStatusUpdate")


@_attrs_define
class JobStatusUpdate:
    """A status change asked for one job (DIRAC's field names).

    Attributes:
        minor_status (None | str | Unset):
        source (str | Unset):  Default: 'user'.
        status (JobStatus | None | Unset): the new status (none: only the minor status changes)
    """

    minor_status: None | str | Unset = UNSET
    source: str | Unset = "user"
    status: JobStatus | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        minor_status: None | str | Unset
        if isinstance(self.minor_status, Unset):
            minor_status = UNSET
        else:
            minor_status = self.minor_status

        source = self.source

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        elif isinstance(self.status, JobStatus):
            status = self.status.value
        else:
            status = self.status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if minor_status is not UNSET:
            field_dict["MinorStatus"] = minor_status
        if source is not UNSET:
            field_dict["Source"] = source
        if status is not UNSET:
            field_dict["Status"] = status

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_minor_status(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        minor_status = _parse_minor_status(d.pop("MinorStatus", UNSET))

        source = d.pop("Source", UNSET)

        def _parse_status(data: object) -> JobStatus | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                status_type_0 = JobStatus(data)

                return status_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(JobStatus | None | Unset, data)

        status = _parse_status(d.pop("Status", UNSET))

        job_status_update = cls(
            minor_status=minor_status,
            source=source,
            status=status,
        )

        job_status_update.additional_properties = d
        return job_status_update

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
