from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.planned_stage import PlannedStage


T = TypeVar("T", bound="PipelinePlan")


@_attrs_define
class PipelinePlan:
    """A dry run: every stage of the pipeline, inputs first. Nothing was recorded.

    Attributes:
        build (int):
        reuse (int):
        stages (list[PlannedStage]):
        errors (int | Unset):  Default: 0.
    """

    build: int
    reuse: int
    stages: list[PlannedStage]
    errors: int | Unset = 0
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        build = self.build

        reuse = self.reuse

        stages = []
        for stages_item_data in self.stages:
            stages_item = stages_item_data.to_dict()
            stages.append(stages_item)

        errors = self.errors

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "build": build,
                "reuse": reuse,
                "stages": stages,
            }
        )
        if errors is not UNSET:
            field_dict["errors"] = errors

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.planned_stage import PlannedStage  # noqa: PLC0415

        d = dict(src_dict)
        build = d.pop("build")

        reuse = d.pop("reuse")

        stages = []
        _stages = d.pop("stages")
        for stages_item_data in _stages:
            stages_item = PlannedStage.from_dict(stages_item_data)

            stages.append(stages_item)

        errors = d.pop("errors", UNSET)

        pipeline_plan = cls(
            build=build,
            reuse=reuse,
            stages=stages,
            errors=errors,
        )

        pipeline_plan.additional_properties = d
        return pipeline_plan

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
