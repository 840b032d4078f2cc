from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.planned_stage_action import PlannedStageAction
from ..types import UNSET, Unset

T = TypeVar("T", bound="PlannedStage")


@_attrs_define
class PlannedStage:
    """What a submission would do with one stage, and why.

    Attributes:
        action (PlannedStageAction):
        dref (str):
        matcher (str):
        name (str):
        reason (str):
        builds (int | Unset):  Default: 0.
        job_id (int | None | Unset):
        rrefs (list[str] | Unset):
    """

    action: PlannedStageAction
    dref: str
    matcher: str
    name: str
    reason: str
    builds: int | Unset = 0
    job_id: int | None | Unset = UNSET
    rrefs: list[str] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        action = self.action.value

        dref = self.dref

        matcher = self.matcher

        name = self.name

        reason = self.reason

        builds = self.builds

        job_id: int | None | Unset
        if isinstance(self.job_id, Unset):
            job_id = UNSET
        else:
            job_id = self.job_id

        rrefs: list[str] | Unset = UNSET
        if not isinstance(self.rrefs, Unset):
            rrefs = self.rrefs

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "action": action,
                "dref": dref,
                "matcher": matcher,
                "name": name,
                "reason": reason,
            }
        )
        if builds is not UNSET:
            field_dict["builds"] = builds
        if job_id is not UNSET:
            field_dict["job_id"] = job_id
        if rrefs is not UNSET:
            field_dict["rrefs"] = rrefs

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        action = PlannedStageAction(d.pop("action"))

        dref = d.pop("dref")

        matcher = d.pop("matcher")

        name = d.pop("name")

        reason = d.pop("reason")

        builds = d.pop("builds", UNSET)

        def _parse_job_id(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        job_id = _parse_job_id(d.pop("job_id", UNSET))

        rrefs = cast(list[str], d.pop("rrefs", UNSET))

        planned_stage = cls(
            action=action,
            dref=dref,
            matcher=matcher,
            name=name,
            reason=reason,
            builds=builds,
            job_id=job_id,
            rrefs=rrefs,
        )

        planned_stage.additional_properties = d
        return planned_stage

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
