from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.gc_realization import GCRealization


T = TypeVar("T", bound="GCReport")


@_attrs_define
class GCReport:
    """What a collection removed (or, with ``dry_run``, would remove).

    Attributes:
        blobs (list[str]): digests of the blobs removed, sorted
        dry_run (bool):
        freed (int): bytes of the blobs removed
        kept_blobs (int):
        kept_realizations (int):
        realizations (list[GCRealization]): removed, oldest first
        store_size (int): bytes in the store before
        young_blobs (int): unreferenced blobs kept: younger than the grace period
        target_met (bool | Unset):  Default: True.
        target_size (int | None | Unset):
    """

    blobs: list[str]
    dry_run: bool
    freed: int
    kept_blobs: int
    kept_realizations: int
    realizations: list[GCRealization]
    store_size: int
    young_blobs: int
    target_met: bool | Unset = True
    target_size: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        blobs = self.blobs

        dry_run = self.dry_run

        freed = self.freed

        kept_blobs = self.kept_blobs

        kept_realizations = self.kept_realizations

        realizations = []
        for realizations_item_data in self.realizations:
            realizations_item = realizations_item_data.to_dict()
            realizations.append(realizations_item)

        store_size = self.store_size

        young_blobs = self.young_blobs

        target_met = self.target_met

        target_size: int | None | Unset
        if isinstance(self.target_size, Unset):
            target_size = UNSET
        else:
            target_size = self.target_size

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "blobs": blobs,
                "dry_run": dry_run,
                "freed": freed,
                "kept_blobs": kept_blobs,
                "kept_realizations": kept_realizations,
                "realizations": realizations,
                "store_size": store_size,
                "young_blobs": young_blobs,
            }
        )
        if target_met is not UNSET:
            field_dict["target_met"] = target_met
        if target_size is not UNSET:
            field_dict["target_size"] = target_size

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.gc_realization import GCRealization  # noqa: PLC0415

        d = dict(src_dict)
        blobs = cast(list[str], d.pop("blobs"))

        dry_run = d.pop("dry_run")

        freed = d.pop("freed")

        kept_blobs = d.pop("kept_blobs")

        kept_realizations = d.pop("kept_realizations")

        realizations = []
        _realizations = d.pop("realizations")
        for realizations_item_data in _realizations:
            realizations_item = GCRealization.from_dict(realizations_item_data)

            realizations.append(realizations_item)

        store_size = d.pop("store_size")

        young_blobs = d.pop("young_blobs")

        target_met = d.pop("target_met", UNSET)

        def _parse_target_size(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        target_size = _parse_target_size(d.pop("target_size", UNSET))

        gc_report = cls(
            blobs=blobs,
            dry_run=dry_run,
            freed=freed,
            kept_blobs=kept_blobs,
            kept_realizations=kept_realizations,
            realizations=realizations,
            store_size=store_size,
            young_blobs=young_blobs,
            target_met=target_met,
            target_size=target_size,
        )

        gc_report.additional_properties = d
        return gc_report

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
