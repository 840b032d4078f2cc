from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="GCRequest")


@_attrs_define
class GCRequest:
    """
    Attributes:
        dry_run (bool | Unset):  Default: False.
        grace_seconds (float | Unset): objects younger than this are never taken (uploads and builds in flight) Default:
            3600.0.
        keep_days (float | Unset): pipelines younger than this (days) keep everything they used Default: 7.0.
        target_size (int | None | Unset): stop once the store holds at most this many bytes (oldest goes first)
    """

    dry_run: bool | Unset = False
    grace_seconds: float | Unset = 3600.0
    keep_days: float | Unset = 7.0
    target_size: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        dry_run = self.dry_run

        grace_seconds = self.grace_seconds

        keep_days = self.keep_days

        target_size: int | None | Unset
        if isinstance(self.target_size, Unset):
            target_size = UNSET
        else:
            target_size = self.target_size

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if dry_run is not UNSET:
            field_dict["dry_run"] = dry_run
        if grace_seconds is not UNSET:
            field_dict["grace_seconds"] = grace_seconds
        if keep_days is not UNSET:
            field_dict["keep_days"] = keep_days
        if target_size is not UNSET:
            field_dict["target_size"] = target_size

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        dry_run = d.pop("dry_run", UNSET)

        grace_seconds = d.pop("grace_seconds", UNSET)

        keep_days = d.pop("keep_days", UNSET)

        def _parse_target_size(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        target_size = _parse_target_size(d.pop("target_size", UNSET))

        gc_request = cls(
            dry_run=dry_run,
            grace_seconds=grace_seconds,
            keep_days=keep_days,
            target_size=target_size,
        )

        gc_request.additional_properties = d
        return gc_request

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
