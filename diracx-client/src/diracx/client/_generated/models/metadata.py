from __future__ import annotations

from collections.abc import Mapping
from typing import (
    Any,
    Literal,
    TypeVar,
    cast,
)

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="Metadata")


@_attrs_define
class Metadata:
    """What ``/.well-known/dirac-metadata`` tells clients before they log in.

    Attributes:
        executors (list[str]):
        min_client_version (str):
        version (str):
        auth (Literal['static-token'] | Unset):  Default: 'static-token'.
    """

    executors: list[str]
    min_client_version: str
    version: str
    auth: Literal["static-token"] | Unset = "static-token"
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        executors = self.executors

        min_client_version = self.min_client_version

        version = self.version

        auth = self.auth

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "executors": executors,
                "min_client_version": min_client_version,
                "version": version,
            }
        )
        if auth is not UNSET:
            field_dict["auth"] = auth

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        executors = cast(list[str], d.pop("executors"))

        min_client_version = d.pop("min_client_version")

        version = d.pop("version")

        auth = cast(Literal["static-token"] | Unset, d.pop("auth", UNSET))
        if auth != "static-token" and not isinstance(auth, Unset):
            raise ValueError(f"auth must match const 'static-token', got '{auth}'")

        metadata = cls(
            executors=executors,
            min_client_version=min_client_version,
            version=version,
            auth=auth,
        )

        metadata.additional_properties = d
        return metadata

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
