from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="SizeRequest")


@_attrs_define
class SizeRequest:
    """
    Attributes:
        rrefs (list[str] | Unset): empty: every one
    """

    rrefs: list[str] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rrefs: list[str] | Unset = UNSET
        if not isinstance(self.rrefs, Unset):
            rrefs = self.rrefs

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if rrefs is not UNSET:
            field_dict["rrefs"] = rrefs

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        rrefs = cast(list[str], d.pop("rrefs", UNSET))

        size_request = cls(
            rrefs=rrefs,
        )

        size_request.additional_properties = d
        return size_request

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
