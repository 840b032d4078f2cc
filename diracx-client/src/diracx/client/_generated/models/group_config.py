from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="GroupConfig")


@_attrs_define
class GroupConfig:
    """
    Attributes:
        properties (list[str] | Unset):
    """

    properties: list[str] | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        properties: list[str] | Unset = UNSET
        if not isinstance(self.properties, Unset):
            properties = self.properties

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if properties is not UNSET:
            field_dict["properties"] = properties

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        properties = cast(list[str], d.pop("properties", UNSET))

        group_config = cls(
            properties=properties,
        )

        return group_config
