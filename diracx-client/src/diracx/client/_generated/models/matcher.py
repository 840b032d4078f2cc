from __future__ import annotations

from collections.abc import Mapping
from typing import (
    Any,
    Literal,
    TypeVar,
    cast,
)

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="Matcher")


@_attrs_define
class Matcher:
    """Which realizations of a derivation count. ``only``: deterministic, at most one.

    Attributes:
        kind (Literal['only'] | Unset):  Default: 'only'.
    """

    kind: Literal["only"] | Unset = "only"

    def to_dict(self) -> dict[str, Any]:
        kind = self.kind

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if kind is not UNSET:
            field_dict["kind"] = kind

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        kind = cast(Literal["only"] | Unset, d.pop("kind", UNSET))
        if kind != "only" and not isinstance(kind, Unset):
            raise ValueError(f"kind must match const 'only', got '{kind}'")

        matcher = cls(
            kind=kind,
        )

        return matcher
