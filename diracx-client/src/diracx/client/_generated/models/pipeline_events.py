from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.job_event import JobEvent


T = TypeVar("T", bound="PipelineEvents")


@_attrs_define
class PipelineEvents:
    """
    Attributes:
        events (list[JobEvent]):
        finished (bool): true once every stage of the pipeline is final
        last_event_id (int):
    """

    events: list[JobEvent]
    finished: bool
    last_event_id: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        events = []
        for events_item_data in self.events:
            events_item = events_item_data.to_dict()
            events.append(events_item)

        finished = self.finished

        last_event_id = self.last_event_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "events": events,
                "finished": finished,
                "last_event_id": last_event_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.job_event import JobEvent  # noqa: PLC0415

        d = dict(src_dict)
        events = []
        _events = d.pop("events")
        for events_item_data in _events:
            events_item = JobEvent.from_dict(events_item_data)

            events.append(events_item)

        finished = d.pop("finished")

        last_event_id = d.pop("last_event_id")

        pipeline_events = cls(
            events=events,
            finished=finished,
            last_event_id=last_event_id,
        )

        pipeline_events.additional_properties = d
        return pipeline_events

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
