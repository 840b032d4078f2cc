from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="UserConfig")


@_attrs_define
class UserConfig:
    """A member of a VO, keyed by subject: the identity provider's ``sub``, or the
    name of a built-in account.

        Attributes:
            groups (list[str]):
            preferred_username (None | str | Unset):
    """

    groups: list[str]
    preferred_username: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        groups = self.groups

        preferred_username: None | str | Unset
        if isinstance(self.preferred_username, Unset):
            preferred_username = UNSET
        else:
            preferred_username = self.preferred_username

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "groups": groups,
            }
        )
        if preferred_username is not UNSET:
            field_dict["preferred_username"] = preferred_username

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        groups = cast(list[str], d.pop("groups"))

        def _parse_preferred_username(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        preferred_username = _parse_preferred_username(
            d.pop("preferred_username", UNSET)
        )

        user_config = cls(
            groups=groups,
            preferred_username=preferred_username,
        )

        return user_config
