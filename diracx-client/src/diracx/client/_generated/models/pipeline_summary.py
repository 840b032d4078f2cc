from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.pipeline_summary_status import PipelineSummaryStatus

if TYPE_CHECKING:
    from ..models.pipeline_summary_counts import PipelineSummaryCounts


T = TypeVar("T", bound="PipelineSummary")


@_attrs_define
class PipelineSummary:
    """A pipeline in a list: who submitted it, when, and how far its jobs are.

    Attributes:
        counts (PipelineSummaryCounts): number of stages per state: cached, or a job status
        created (datetime.datetime):
        id (int):
        owner (str):
        status (PipelineSummaryStatus):
        target_count (int): how many stages the submission asked for
    """

    counts: PipelineSummaryCounts
    created: datetime.datetime
    id: int
    owner: str
    status: PipelineSummaryStatus
    target_count: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts.to_dict()

        created = self.created.isoformat()

        id = self.id

        owner = self.owner

        status = self.status.value

        target_count = self.target_count

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "counts": counts,
                "created": created,
                "id": id,
                "owner": owner,
                "status": status,
                "target_count": target_count,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.pipeline_summary_counts import PipelineSummaryCounts  # noqa: PLC0415

        d = dict(src_dict)
        counts = PipelineSummaryCounts.from_dict(d.pop("counts"))

        created = datetime.datetime.fromisoformat(d.pop("created"))

        id = d.pop("id")

        owner = d.pop("owner")

        status = PipelineSummaryStatus(d.pop("status"))

        target_count = d.pop("target_count")

        pipeline_summary = cls(
            counts=counts,
            created=created,
            id=id,
            owner=owner,
            status=status,
            target_count=target_count,
        )

        pipeline_summary.additional_properties = d
        return pipeline_summary

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
