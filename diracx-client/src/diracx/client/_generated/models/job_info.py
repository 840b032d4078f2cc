from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_status import JobStatus
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.status_history_entry import StatusHistoryEntry


T = TypeVar("T", bound="JobInfo")


@_attrs_define
class JobInfo:
    """
    Attributes:
        attempt (int):
        created (datetime.datetime):
        dref (str):
        id (int):
        minor_status (str):
        name (str):
        pipeline_id (int):
        status (JobStatus):
        updated (datetime.datetime):
        history (list[StatusHistoryEntry] | Unset):
        log (None | str | Unset): digest of the build log blob
        rref (None | str | Unset):
        worker (None | str | Unset):
    """

    attempt: int
    created: datetime.datetime
    dref: str
    id: int
    minor_status: str
    name: str
    pipeline_id: int
    status: JobStatus
    updated: datetime.datetime
    history: list[StatusHistoryEntry] | Unset = UNSET
    log: None | str | Unset = UNSET
    rref: None | str | Unset = UNSET
    worker: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        attempt = self.attempt

        created = self.created.isoformat()

        dref = self.dref

        id = self.id

        minor_status = self.minor_status

        name = self.name

        pipeline_id = self.pipeline_id

        status = self.status.value

        updated = self.updated.isoformat()

        history: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.history, Unset):
            history = []
            for history_item_data in self.history:
                history_item = history_item_data.to_dict()
                history.append(history_item)

        log: None | str | Unset
        if isinstance(self.log, Unset):
            log = UNSET
        else:
            log = self.log

        rref: None | str | Unset
        if isinstance(self.rref, Unset):
            rref = UNSET
        else:
            rref = self.rref

        worker: None | str | Unset
        if isinstance(self.worker, Unset):
            worker = UNSET
        else:
            worker = self.worker

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "attempt": attempt,
                "created": created,
                "dref": dref,
                "id": id,
                "minor_status": minor_status,
                "name": name,
                "pipeline_id": pipeline_id,
                "status": status,
                "updated": updated,
            }
        )
        if history is not UNSET:
            field_dict["history"] = history
        if log is not UNSET:
            field_dict["log"] = log
        if rref is not UNSET:
            field_dict["rref"] = rref
        if worker is not UNSET:
            field_dict["worker"] = worker

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.status_history_entry import StatusHistoryEntry  # noqa: PLC0415

        d = dict(src_dict)
        attempt = d.pop("attempt")

        created = datetime.datetime.fromisoformat(d.pop("created"))

        dref = d.pop("dref")

        id = d.pop("id")

        minor_status = d.pop("minor_status")

        name = d.pop("name")

        pipeline_id = d.pop("pipeline_id")

        status = JobStatus(d.pop("status"))

        updated = datetime.datetime.fromisoformat(d.pop("updated"))

        _history = d.pop("history", UNSET)
        history: list[StatusHistoryEntry] | Unset = UNSET
        if _history is not UNSET:
            history = []
            for history_item_data in _history:
                history_item = StatusHistoryEntry.from_dict(history_item_data)

                history.append(history_item)

        def _parse_log(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        log = _parse_log(d.pop("log", UNSET))

        def _parse_rref(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        rref = _parse_rref(d.pop("rref", UNSET))

        def _parse_worker(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        worker = _parse_worker(d.pop("worker", UNSET))

        job_info = cls(
            attempt=attempt,
            created=created,
            dref=dref,
            id=id,
            minor_status=minor_status,
            name=name,
            pipeline_id=pipeline_id,
            status=status,
            updated=updated,
            history=history,
            log=log,
            rref=rref,
            worker=worker,
        )

        job_info.additional_properties = d
        return job_info

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
