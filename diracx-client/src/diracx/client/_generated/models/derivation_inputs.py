from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.drv_input import DrvInput
    from ..models.tree_input import TreeInput


T = TypeVar("T", bound="DerivationInputs")


@_attrs_define
class DerivationInputs:
    additional_properties: dict[str, DrvInput | TreeInput] = _attrs_field(
        init=False, factory=dict
    )

    def to_dict(self) -> dict[str, Any]:
        from ..models.drv_input import DrvInput  # noqa: PLC0415

        field_dict: dict[str, Any] = {}
        for prop_name, prop in self.additional_properties.items():
            if isinstance(prop, DrvInput):
                field_dict[prop_name] = prop.to_dict()
            else:
                field_dict[prop_name] = prop.to_dict()

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.drv_input import DrvInput  # noqa: PLC0415
        from ..models.tree_input import TreeInput  # noqa: PLC0415

        d = dict(src_dict)
        derivation_inputs = cls()

        additional_properties = {}
        for prop_name, prop_dict in d.items():

            def _parse_additional_property(data: object) -> DrvInput | TreeInput:
                try:
                    if not isinstance(data, dict):
                        raise TypeError()
                    additional_property_type_0 = DrvInput.from_dict(data)

                    return additional_property_type_0
                except (TypeError, ValueError, AttributeError, KeyError):
                    pass
                if not isinstance(data, dict):
                    raise TypeError()
                additional_property_type_1 = TreeInput.from_dict(data)

                return additional_property_type_1

            additional_property = _parse_additional_property(prop_dict)

            additional_properties[prop_name] = additional_property

        derivation_inputs.additional_properties = additional_properties
        return derivation_inputs

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> DrvInput | TreeInput:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: DrvInput | TreeInput) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
