from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.closure_realization_context import ClosureRealizationContext
    from ..models.closure_realization_metrics import ClosureRealizationMetrics


T = TypeVar("T", bound="ClosureRealization")


@_attrs_define
class ClosureRealization:
    """A realization as it travels between stores: with its derivation's body.

    Attributes:
        body (str): the derivation's canonical JSON (hashes to the DRef)
        dref (str):
        name (str):
        output (str):
        rref (str):
        context (ClosureRealizationContext | Unset):
        finished (datetime.datetime | None | Unset):
        log (None | str | Unset):
        metrics (ClosureRealizationMetrics | Unset):
        started (datetime.datetime | None | Unset):
    """

    body: str
    dref: str
    name: str
    output: str
    rref: str
    context: ClosureRealizationContext | Unset = UNSET
    finished: datetime.datetime | None | Unset = UNSET
    log: None | str | Unset = UNSET
    metrics: ClosureRealizationMetrics | Unset = UNSET
    started: datetime.datetime | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = self.body

        dref = self.dref

        name = self.name

        output = self.output

        rref = self.rref

        context: dict[str, Any] | Unset = UNSET
        if not isinstance(self.context, Unset):
            context = self.context.to_dict()

        finished: None | str | Unset
        if isinstance(self.finished, Unset):
            finished = UNSET
        elif isinstance(self.finished, datetime.datetime):
            finished = self.finished.isoformat()
        else:
            finished = self.finished

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
                "body": body,
                "dref": dref,
                "name": name,
                "output": output,
                "rref": rref,
            }
        )
        if context is not UNSET:
            field_dict["context"] = context
        if finished is not UNSET:
            field_dict["finished"] = finished
        if log is not UNSET:
            field_dict["log"] = log
        if metrics is not UNSET:
            field_dict["metrics"] = metrics
        if started is not UNSET:
            field_dict["started"] = started

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.closure_realization_context import ClosureRealizationContext  # noqa: PLC0415
        from ..models.closure_realization_metrics import ClosureRealizationMetrics  # noqa: PLC0415

        d = dict(src_dict)
        body = d.pop("body")

        dref = d.pop("dref")

        name = d.pop("name")

        output = d.pop("output")

        rref = d.pop("rref")

        _context = d.pop("context", UNSET)
        context: ClosureRealizationContext | Unset
        if isinstance(_context, Unset):
            context = UNSET
        else:
            context = ClosureRealizationContext.from_dict(_context)

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

        def _parse_log(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        log = _parse_log(d.pop("log", UNSET))

        _metrics = d.pop("metrics", UNSET)
        metrics: ClosureRealizationMetrics | Unset
        if isinstance(_metrics, Unset):
            metrics = UNSET
        else:
            metrics = ClosureRealizationMetrics.from_dict(_metrics)

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

        closure_realization = cls(
            body=body,
            dref=dref,
            name=name,
            output=output,
            rref=rref,
            context=context,
            finished=finished,
            log=log,
            metrics=metrics,
            started=started,
        )

        closure_realization.additional_properties = d
        return closure_realization

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
