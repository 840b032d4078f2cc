from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.pipeline_info_status import PipelineInfoStatus

if TYPE_CHECKING:
    from ..models.pipeline_info_counts import PipelineInfoCounts
    from ..models.stage_info import StageInfo


T = TypeVar("T", bound="PipelineInfo")


@_attrs_define
class PipelineInfo:
    """
    Attributes:
        counts (PipelineInfoCounts): number of stages per state: cached, or a job status
        created (datetime.datetime):
        id (int):
        owner (str):
        stages (list[StageInfo]):
        status (PipelineInfoStatus):
        targets (list[str]):
    """

    counts: PipelineInfoCounts
    created: datetime.datetime
    id: int
    owner: str
    stages: list[StageInfo]
    status: PipelineInfoStatus
    targets: list[str]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts.to_dict()

        created = self.created.isoformat()

        id = self.id

        owner = self.owner

        stages = []
        for stages_item_data in self.stages:
            stages_item = stages_item_data.to_dict()
            stages.append(stages_item)

        status = self.status.value

        targets = self.targets

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "counts": counts,
                "created": created,
                "id": id,
                "owner": owner,
                "stages": stages,
                "status": status,
                "targets": targets,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.pipeline_info_counts import PipelineInfoCounts  # noqa: PLC0415
        from ..models.stage_info import StageInfo  # noqa: PLC0415

        d = dict(src_dict)
        counts = PipelineInfoCounts.from_dict(d.pop("counts"))

        created = datetime.datetime.fromisoformat(d.pop("created"))

        id = d.pop("id")

        owner = d.pop("owner")

        stages = []
        _stages = d.pop("stages")
        for stages_item_data in _stages:
            stages_item = StageInfo.from_dict(stages_item_data)

            stages.append(stages_item)

        status = PipelineInfoStatus(d.pop("status"))

        targets = cast(list[str], d.pop("targets"))

        pipeline_info = cls(
            counts=counts,
            created=created,
            id=id,
            owner=owner,
            stages=stages,
            status=status,
            targets=targets,
        )

        pipeline_info.additional_properties = d
        return pipeline_info

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
