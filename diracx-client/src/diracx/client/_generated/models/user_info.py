from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="UserInfo")


@_attrs_define
class UserInfo:
    """Who a token is for, and what it may do.

    Attributes:
        group (str):
        preferred_username (str):
        properties (list[str]):
        sub (str):
        vo (str):
    """

    group: str
    preferred_username: str
    properties: list[str]
    sub: str
    vo: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        group = self.group

        preferred_username = self.preferred_username

        properties = self.properties

        sub = self.sub

        vo = self.vo

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "group": group,
                "preferred_username": preferred_username,
                "properties": properties,
                "sub": sub,
                "vo": vo,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        group = d.pop("group")

        preferred_username = d.pop("preferred_username")

        properties = cast(list[str], d.pop("properties"))

        sub = d.pop("sub")

        vo = d.pop("vo")

        user_info = cls(
            group=group,
            preferred_username=preferred_username,
            properties=properties,
            sub=sub,
            vo=vo,
        )

        user_info.additional_properties = d
        return user_info

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
