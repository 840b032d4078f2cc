from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="ServiceAccountView")


@_attrs_define
class ServiceAccountView:
    """
    Attributes:
        group (str):
    """

    group: str

    def to_dict(self) -> dict[str, Any]:
        group = self.group

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "group": group,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        group = d.pop("group")

        service_account_view = cls(
            group=group,
        )

        return service_account_view
