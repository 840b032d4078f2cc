from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_status import JobStatus
from ..types import UNSET, Unset

T = TypeVar("T", bound="StageInfo")


@_attrs_define
class StageInfo:
    """One derivation of a pipeline: reused from the store, or built by a job.

    Attributes:
        cached (bool): true if an existing realization was reused, no job needed
        dref (str):
        name (str):
        job_id (int | None | Unset):
        minor_status (None | str | Unset):
        output (None | str | Unset):
        rref (None | str | Unset):
        status (JobStatus | None | Unset):
    """

    cached: bool
    dref: str
    name: str
    job_id: int | None | Unset = UNSET
    minor_status: None | str | Unset = UNSET
    output: None | str | Unset = UNSET
    rref: None | str | Unset = UNSET
    status: JobStatus | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cached = self.cached

        dref = self.dref

        name = self.name

        job_id: int | None | Unset
        if isinstance(self.job_id, Unset):
            job_id = UNSET
        else:
            job_id = self.job_id

        minor_status: None | str | Unset
        if isinstance(self.minor_status, Unset):
            minor_status = UNSET
        else:
            minor_status = self.minor_status

        output: None | str | Unset
        if isinstance(self.output, Unset):
            output = UNSET
        else:
            output = self.output

        rref: None | str | Unset
        if isinstance(self.rref, Unset):
            rref = UNSET
        else:
            rref = self.rref

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        elif isinstance(self.status, JobStatus):
            status = self.status.value
        else:
            status = self.status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "cached": cached,
                "dref": dref,
                "name": name,
            }
        )
        if job_id is not UNSET:
            field_dict["job_id"] = job_id
        if minor_status is not UNSET:
            field_dict["minor_status"] = minor_status
        if output is not UNSET:
            field_dict["output"] = output
        if rref is not UNSET:
            field_dict["rref"] = rref
        if status is not UNSET:
            field_dict["status"] = status

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cached = d.pop("cached")

        dref = d.pop("dref")

        name = d.pop("name")

        def _parse_job_id(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        job_id = _parse_job_id(d.pop("job_id", UNSET))

        def _parse_minor_status(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        minor_status = _parse_minor_status(d.pop("minor_status", UNSET))

        def _parse_output(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        output = _parse_output(d.pop("output", UNSET))

        def _parse_rref(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        rref = _parse_rref(d.pop("rref", UNSET))

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

        status = _parse_status(d.pop("status", UNSET))

        stage_info = cls(
            cached=cached,
            dref=dref,
            name=name,
            job_id=job_id,
            minor_status=minor_status,
            output=output,
            rref=rref,
            status=status,
        )

        stage_info.additional_properties = d
        return stage_info

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
