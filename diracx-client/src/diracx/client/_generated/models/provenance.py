from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.provenance_realizations import ProvenanceRealizations
    from ..models.provenance_trees import ProvenanceTrees


T = TypeVar("T", bound="Provenance")


@_attrs_define
class Provenance:
    """A realization and everything it came from (``context``: input -> rrefs).

    Attributes:
        realizations (ProvenanceRealizations):
        root (str):
        trees (ProvenanceTrees | Unset): rref -> the trees its derivation takes (input name, or 'source' for a python
            stage's code) -> tree digest
    """

    realizations: ProvenanceRealizations
    root: str
    trees: ProvenanceTrees | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        realizations = self.realizations.to_dict()

        root = self.root

        trees: dict[str, Any] | Unset = UNSET
        if not isinstance(self.trees, Unset):
            trees = self.trees.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "realizations": realizations,
                "root": root,
            }
        )
        if trees is not UNSET:
            field_dict["trees"] = trees

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.provenance_realizations import ProvenanceRealizations  # noqa: PLC0415
        from ..models.provenance_trees import ProvenanceTrees  # noqa: PLC0415

        d = dict(src_dict)
        realizations = ProvenanceRealizations.from_dict(d.pop("realizations"))

        root = d.pop("root")

        _trees = d.pop("trees", UNSET)
        trees: ProvenanceTrees | Unset
        if isinstance(_trees, Unset):
            trees = UNSET
        else:
            trees = ProvenanceTrees.from_dict(_trees)

        provenance = cls(
            realizations=realizations,
            root=root,
            trees=trees,
        )

        provenance.additional_properties = d
        return provenance

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
