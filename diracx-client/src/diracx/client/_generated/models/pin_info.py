from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="PinInfo")


@_attrs_define
class PinInfo:
    """A name for a realization: a root of garbage collection.

    Attributes:
        created (datetime.datetime):
        name (str):
        output (str): the realization's output tree digest
        owner (str):
        rref (str):
        stage (str): the name of the realization's stage
    """

    created: datetime.datetime
    name: str
    output: str
    owner: str
    rref: str
    stage: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created = self.created.isoformat()

        name = self.name

        output = self.output

        owner = self.owner

        rref = self.rref

        stage = self.stage

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created": created,
                "name": name,
                "output": output,
                "owner": owner,
                "rref": rref,
                "stage": stage,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created = datetime.datetime.fromisoformat(d.pop("created"))

        name = d.pop("name")

        output = d.pop("output")

        owner = d.pop("owner")

        rref = d.pop("rref")

        stage = d.pop("stage")

        pin_info = cls(
            created=created,
            name=name,
            output=output,
            owner=owner,
            rref=rref,
            stage=stage,
        )

        pin_info.additional_properties = d
        return pin_info

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
