from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="OpenIDConfiguration")


@_attrs_define
class OpenIDConfiguration:
    """The authorization server's metadata (RFC 8414, OpenID Connect Discovery).

    Attributes:
        claims_supported (list[str]):
        device_authorization_endpoint (str):
        grant_types_supported (list[str]):
        id_token_signing_alg_values_supported (list[str]):
        issuer (str):
        jwks_uri (str):
        response_types_supported (list[str]):
        revocation_endpoint (str):
        revocation_endpoint_auth_methods_supported (list[str]):
        scopes_supported (list[str]):
        subject_types_supported (list[str]):
        token_endpoint (str):
        token_endpoint_auth_methods_supported (list[str]):
        userinfo_endpoint (str):
    """

    claims_supported: list[str]
    device_authorization_endpoint: str
    grant_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    issuer: str
    jwks_uri: str
    response_types_supported: list[str]
    revocation_endpoint: str
    revocation_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
    subject_types_supported: list[str]
    token_endpoint: str
    token_endpoint_auth_methods_supported: list[str]
    userinfo_endpoint: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        claims_supported = self.claims_supported

        device_authorization_endpoint = self.device_authorization_endpoint

        grant_types_supported = self.grant_types_supported

        id_token_signing_alg_values_supported = (
            self.id_token_signing_alg_values_supported
        )

        issuer = self.issuer

        jwks_uri = self.jwks_uri

        response_types_supported = self.response_types_supported

        revocation_endpoint = self.revocation_endpoint

        revocation_endpoint_auth_methods_supported = (
            self.revocation_endpoint_auth_methods_supported
        )

        scopes_supported = self.scopes_supported

        subject_types_supported = self.subject_types_supported

        token_endpoint = self.token_endpoint

        token_endpoint_auth_methods_supported = (
            self.token_endpoint_auth_methods_supported
        )

        userinfo_endpoint = self.userinfo_endpoint

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "claims_supported": claims_supported,
                "device_authorization_endpoint": device_authorization_endpoint,
                "grant_types_supported": grant_types_supported,
                "id_token_signing_alg_values_supported": id_token_signing_alg_values_supported,
                "issuer": issuer,
                "jwks_uri": jwks_uri,
                "response_types_supported": response_types_supported,
                "revocation_endpoint": revocation_endpoint,
                "revocation_endpoint_auth_methods_supported": revocation_endpoint_auth_methods_supported,
                "scopes_supported": scopes_supported,
                "subject_types_supported": subject_types_supported,
                "token_endpoint": token_endpoint,
                "token_endpoint_auth_methods_supported": token_endpoint_auth_methods_supported,
                "userinfo_endpoint": userinfo_endpoint,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        claims_supported = cast(list[str], d.pop("claims_supported"))

        device_authorization_endpoint = d.pop("device_authorization_endpoint")

        grant_types_supported = cast(list[str], d.pop("grant_types_supported"))

        id_token_signing_alg_values_supported = cast(
            list[str], d.pop("id_token_signing_alg_values_supported")
        )

        issuer = d.pop("issuer")

        jwks_uri = d.pop("jwks_uri")

        response_types_supported = cast(list[str], d.pop("response_types_supported"))

        revocation_endpoint = d.pop("revocation_endpoint")

        revocation_endpoint_auth_methods_supported = cast(
            list[str], d.pop("revocation_endpoint_auth_methods_supported")
        )

        scopes_supported = cast(list[str], d.pop("scopes_supported"))

        subject_types_supported = cast(list[str], d.pop("subject_types_supported"))

        token_endpoint = d.pop("token_endpoint")

        token_endpoint_auth_methods_supported = cast(
            list[str], d.pop("token_endpoint_auth_methods_supported")
        )

        userinfo_endpoint = d.pop("userinfo_endpoint")

        open_id_configuration = cls(
            claims_supported=claims_supported,
            device_authorization_endpoint=device_authorization_endpoint,
            grant_types_supported=grant_types_supported,
            id_token_signing_alg_values_supported=id_token_signing_alg_values_supported,
            issuer=issuer,
            jwks_uri=jwks_uri,
            response_types_supported=response_types_supported,
            revocation_endpoint=revocation_endpoint,
            revocation_endpoint_auth_methods_supported=revocation_endpoint_auth_methods_supported,
            scopes_supported=scopes_supported,
            subject_types_supported=subject_types_supported,
            token_endpoint=token_endpoint,
            token_endpoint_auth_methods_supported=token_endpoint_auth_methods_supported,
            userinfo_endpoint=userinfo_endpoint,
        )

        open_id_configuration.additional_properties = d
        return open_id_configuration

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
