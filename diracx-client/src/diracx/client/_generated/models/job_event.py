from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_status import JobStatus

T = TypeVar("T", bound="JobEvent")


@_attrs_define
class JobEvent:
    """A status change of a pipeline's job, for following progress.

    Attributes:
        dref (str):
        id (int):
        job_id (int):
        minor_status (str):
        name (str):
        status (JobStatus):
        timestamp (datetime.datetime):
    """

    dref: str
    id: int
    job_id: int
    minor_status: str
    name: str
    status: JobStatus
    timestamp: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        dref = self.dref

        id = self.id

        job_id = self.job_id

        minor_status = self.minor_status

        name = self.name

        status = self.status.value

        timestamp = self.timestamp.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "dref": dref,
                "id": id,
                "job_id": job_id,
                "minor_status": minor_status,
                "name": name,
                "status": status,
                "timestamp": timestamp,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        dref = d.pop("dref")

        id = d.pop("id")

        job_id = d.pop("job_id")

        minor_status = d.pop("minor_status")

        name = d.pop("name")

        status = JobStatus(d.pop("status"))

        timestamp = datetime.datetime.fromisoformat(d.pop("timestamp"))

        job_event = cls(
            dref=dref,
            id=id,
            job_id=job_id,
            minor_status=minor_status,
            name=name,
            status=status,
            timestamp=timestamp,
        )

        job_event.additional_properties = d
        return job_event

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
