from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.closure_realization import ClosureRealization


T = TypeVar("T", bound="ClosureImport")


@_attrs_define
class ClosureImport:
    """The realizations to record (their blobs must be uploaded first).

    Attributes:
        realizations (list[ClosureRealization]):
    """

    realizations: list[ClosureRealization]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        realizations = []
        for realizations_item_data in self.realizations:
            realizations_item = realizations_item_data.to_dict()
            realizations.append(realizations_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "realizations": realizations,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.closure_realization import ClosureRealization  # noqa: PLC0415

        d = dict(src_dict)
        realizations = []
        _realizations = d.pop("realizations")
        for realizations_item_data in _realizations:
            realizations_item = ClosureRealization.from_dict(realizations_item_data)

            realizations.append(realizations_item)

        closure_import = cls(
            realizations=realizations,
        )

        closure_import.additional_properties = d
        return closure_import

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
