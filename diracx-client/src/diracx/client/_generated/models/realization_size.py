from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="RealizationSize")


@_attrs_define
class RealizationSize:
    """
    Attributes:
        files (int):
        name (str):
        rref (str):
        size (int): bytes of its output files, tree manifest and log
    """

    files: int
    name: str
    rref: str
    size: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        files = self.files

        name = self.name

        rref = self.rref

        size = self.size

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "files": files,
                "name": name,
                "rref": rref,
                "size": size,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        files = d.pop("files")

        name = d.pop("name")

        rref = d.pop("rref")

        size = d.pop("size")

        realization_size = cls(
            files=files,
            name=name,
            rref=rref,
            size=size,
        )

        realization_size.additional_properties = d
        return realization_size

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
