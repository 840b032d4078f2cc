from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.realization_info_context import RealizationInfoContext
    from ..models.realization_info_metrics import RealizationInfoMetrics


T = TypeVar("T", bound="RealizationInfo")


@_attrs_define
class RealizationInfo:
    """
    Attributes:
        context (RealizationInfoContext): input name -> realizations it was built from
        created (datetime.datetime):
        dref (str):
        name (str):
        output (str): digest of the output tree
        rref (str):
        finished (datetime.datetime | None | Unset):
        job_id (int | None | Unset):
        log (None | str | Unset):
        metrics (RealizationInfoMetrics | Unset):
        started (datetime.datetime | None | Unset):
    """

    context: RealizationInfoContext
    created: datetime.datetime
    dref: str
    name: str
    output: str
    rref: str
    finished: datetime.datetime | None | Unset = UNSET
    job_id: int | None | Unset = UNSET
    log: None | str | Unset = UNSET
    metrics: RealizationInfoMetrics | Unset = UNSET
    started: datetime.datetime | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        context = self.context.to_dict()

        created = self.created.isoformat()

        dref = self.dref

        name = self.name

        output = self.output

        rref = self.rref

        finished: None | str | Unset
        if isinstance(self.finished, Unset):
            finished = UNSET
        elif isinstance(self.finished, datetime.datetime):
            finished = self.finished.isoformat()
        else:
            finished = self.finished

        job_id: int | None | Unset
        if isinstance(self.job_id, Unset):
            job_id = UNSET
        else:
            job_id = self.job_id

        log: None | str | Unset
        if isinstance(self.log, Unset):
            log = UNSET
        else:
            log = self.log

        metrics: dict[str, Any] | Unset = UNSET
        if not isinstance(self.metrics, Unset):
            metrics = self.metrics.to_dict()

        started: None | str | Unset
        if isinstance(self.started, Unset):
            started = UNSET
        elif isinstance(self.started, datetime.datetime):
            started = self.started.isoformat()
        else:
            started = self.started

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "context": context,
                "created": created,
                "dref": dref,
                "name": name,
                "output": output,
                "rref": rref,
            }
        )
        if finished is not UNSET:
            field_dict["finished"] = finished
        if job_id is not UNSET:
            field_dict["job_id"] = job_id
        if log is not UNSET:
            field_dict["log"] = log
        if metrics is not UNSET:
            field_dict["metrics"] = metrics
        if started is not UNSET:
            field_dict["started"] = started

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.realization_info_context import RealizationInfoContext  # noqa: PLC0415
        from ..models.realization_info_metrics import RealizationInfoMetrics  # noqa: PLC0415

        d = dict(src_dict)
        context = RealizationInfoContext.from_dict(d.pop("context"))

        created = datetime.datetime.fromisoformat(d.pop("created"))

        dref = d.pop("dref")

        name = d.pop("name")

        output = d.pop("output")

        rref = d.pop("rref")

        def _parse_finished(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                finished_type_0 = datetime.datetime.fromisoformat(data)

                return finished_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        finished = _parse_finished(d.pop("finished", UNSET))

        def _parse_job_id(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        job_id = _parse_job_id(d.pop("job_id", UNSET))

        def _parse_log(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        log = _parse_log(d.pop("log", UNSET))

        _metrics = d.pop("metrics", UNSET)
        metrics: RealizationInfoMetrics | Unset
        if isinstance(_metrics, Unset):
            metrics = UNSET
        else:
            metrics = RealizationInfoMetrics.from_dict(_metrics)

        def _parse_started(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                started_type_0 = datetime.datetime.fromisoformat(data)

                return started_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        started = _parse_started(d.pop("started", UNSET))

        realization_info = cls(
            context=context,
            created=created,
            dref=dref,
            name=name,
            output=output,
            rref=rref,
            finished=finished,
            job_id=job_id,
            log=log,
            metrics=metrics,
            started=started,
        )

        realization_info.additional_properties = d
        return realization_info

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
