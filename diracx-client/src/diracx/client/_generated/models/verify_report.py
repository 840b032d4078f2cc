from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.missing_object import MissingObject


T = TypeVar("T", bound="VerifyReport")


@_attrs_define
class VerifyReport:
    """
    Attributes:
        checked (int): blobs re-hashed
        corrupt (list[str]): blobs whose bytes do not hash to their name
        missing (list[MissingObject]): blobs that realizations need but lack
        size (int): bytes re-hashed
    """

    checked: int
    corrupt: list[str]
    missing: list[MissingObject]
    size: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        checked = self.checked

        corrupt = self.corrupt

        missing = []
        for missing_item_data in self.missing:
            missing_item = missing_item_data.to_dict()
            missing.append(missing_item)

        size = self.size

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "checked": checked,
                "corrupt": corrupt,
                "missing": missing,
                "size": size,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.missing_object import MissingObject  # noqa: PLC0415

        d = dict(src_dict)
        checked = d.pop("checked")

        corrupt = cast(list[str], d.pop("corrupt"))

        missing = []
        _missing = d.pop("missing")
        for missing_item_data in _missing:
            missing_item = MissingObject.from_dict(missing_item_data)

            missing.append(missing_item)

        size = d.pop("size")

        verify_report = cls(
            checked=checked,
            corrupt=corrupt,
            missing=missing,
            size=size,
        )

        verify_report.additional_properties = d
        return verify_report

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
