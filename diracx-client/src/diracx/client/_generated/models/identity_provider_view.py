from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="IdentityProviderView")


@_attrs_define
class IdentityProviderView:
    """
    Attributes:
        client_id (str):
        issuer (str):
        scopes (list[str]):
    """

    client_id: str
    issuer: str
    scopes: list[str]

    def to_dict(self) -> dict[str, Any]:
        client_id = self.client_id

        issuer = self.issuer

        scopes = self.scopes

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "client_id": client_id,
                "issuer": issuer,
                "scopes": scopes,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        client_id = d.pop("client_id")

        issuer = d.pop("issuer")

        scopes = cast(list[str], d.pop("scopes"))

        identity_provider_view = cls(
            client_id=client_id,
            issuer=issuer,
            scopes=scopes,
        )

        return identity_provider_view
