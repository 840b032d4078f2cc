from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.body_device_login_decision import BodyDeviceLoginDecision
from ..types import UNSET, Unset

T = TypeVar("T", bound="BodyDeviceLogin")


@_attrs_define
class BodyDeviceLogin:
    """
    Attributes:
        user_code (str):
        decision (BodyDeviceLoginDecision | Unset):  Default: BodyDeviceLoginDecision.APPROVE.
        password (str | Unset):  Default: ''.
        username (str | Unset):  Default: ''.
    """

    user_code: str
    decision: BodyDeviceLoginDecision | Unset = BodyDeviceLoginDecision.APPROVE
    password: str | Unset = ""
    username: str | Unset = ""
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        user_code = self.user_code

        decision: str | Unset = UNSET
        if not isinstance(self.decision, Unset):
            decision = self.decision.value

        password = self.password

        username = self.username

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "user_code": user_code,
            }
        )
        if decision is not UNSET:
            field_dict["decision"] = decision
        if password is not UNSET:
            field_dict["password"] = password
        if username is not UNSET:
            field_dict["username"] = username

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        user_code = d.pop("user_code")

        _decision = d.pop("decision", UNSET)
        decision: BodyDeviceLoginDecision | Unset
        if isinstance(_decision, Unset):
            decision = UNSET
        else:
            decision = BodyDeviceLoginDecision(_decision)

        password = d.pop("password", UNSET)

        username = d.pop("username", UNSET)

        body_device_login = cls(
            user_code=user_code,
            decision=decision,
            password=password,
            username=username,
        )

        body_device_login.additional_properties = d
        return body_device_login

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
