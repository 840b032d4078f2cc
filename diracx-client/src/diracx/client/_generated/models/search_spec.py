from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="SearchSpec")


@_attrs_define
class SearchSpec:
    """One filter: ``parameter operator value`` (``values`` for ``in`` and ``not in``).

    ``like`` takes SQL's wildcards: ``%`` any text, ``_`` one character (``\\%``,
    ``\\_`` match them literally); it is case-sensitive on every database.

        Attributes:
            operator (str): eq, neq, in, not in, like, lt or gt
            parameter (str):
            value (bool | float | int | None | str | Unset):
            values (list[bool | float | int | None | str] | None | Unset):
    """

    operator: str
    parameter: str
    value: bool | float | int | None | str | Unset = UNSET
    values: list[bool | float | int | None | str] | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        operator = self.operator

        parameter = self.parameter

        value: bool | float | int | None | str | Unset
        if isinstance(self.value, Unset):
            value = UNSET
        else:
            value = self.value

        values: list[bool | float | int | None | str] | None | Unset
        if isinstance(self.values, Unset):
            values = UNSET
        elif isinstance(self.values, list):
            values = []
            for values_type_0_item_data in self.values:
                values_type_0_item: bool | float | int | None | str
                values_type_0_item = values_type_0_item_data
                values.append(values_type_0_item)

        else:
            values = self.values

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "operator": operator,
                "parameter": parameter,
            }
        )
        if value is not UNSET:
            field_dict["value"] = value
        if values is not UNSET:
            field_dict["values"] = values

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        operator = d.pop("operator")

        parameter = d.pop("parameter")

        def _parse_value(data: object) -> bool | float | int | None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | float | int | None | str | Unset, data)

        value = _parse_value(d.pop("value", UNSET))

        def _parse_values(
            data: object,
        ) -> list[bool | float | int | None | str] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                values_type_0 = []
                _values_type_0 = data
                for values_type_0_item_data in _values_type_0:

                    def _parse_values_type_0_item(
                        data: object,
                    ) -> bool | float | int | None | str:
                        if data is None:
                            return data
                        return cast(bool | float | int | None | str, data)

                    values_type_0_item = _parse_values_type_0_item(
                        values_type_0_item_data
                    )

                    values_type_0.append(values_type_0_item)

                return values_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[bool | float | int | None | str] | None | Unset, data)

        values = _parse_values(d.pop("values", UNSET))

        search_spec = cls(
            operator=operator,
            parameter=parameter,
            value=value,
            values=values,
        )

        search_spec.additional_properties = d
        return search_spec

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
