from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.realization_size import RealizationSize


T = TypeVar("T", bound="SizeReport")


@_attrs_define
class SizeReport:
    """
    Attributes:
        blobs (int): distinct blobs, shared ones counted once
        realizations (list[RealizationSize]):
        total (int): bytes of the distinct blobs
    """

    blobs: int
    realizations: list[RealizationSize]
    total: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        blobs = self.blobs

        realizations = []
        for realizations_item_data in self.realizations:
            realizations_item = realizations_item_data.to_dict()
            realizations.append(realizations_item)

        total = self.total

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "blobs": blobs,
                "realizations": realizations,
                "total": total,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.realization_size import RealizationSize  # noqa: PLC0415

        d = dict(src_dict)
        blobs = d.pop("blobs")

        realizations = []
        _realizations = d.pop("realizations")
        for realizations_item_data in _realizations:
            realizations_item = RealizationSize.from_dict(realizations_item_data)

            realizations.append(realizations_item)

        total = d.pop("total")

        size_report = cls(
            blobs=blobs,
            realizations=realizations,
            total=total,
        )

        size_report.additional_properties = d
        return size_report

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
