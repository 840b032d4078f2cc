from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="DrvInput")


@_attrs_define
class DrvInput:
    """An input that is another derivation's output.

    Attributes:
        drv (str):
    """

    drv: str

    def to_dict(self) -> dict[str, Any]:
        drv = self.drv

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "drv": drv,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        drv = d.pop("drv")

        drv_input = cls(
            drv=drv,
        )

        return drv_input
