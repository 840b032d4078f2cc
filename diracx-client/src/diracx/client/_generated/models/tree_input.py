from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="TreeInput")


@_attrs_define
class TreeInput:
    """An input that is a tree already in the store (host files, an earlier result).

    Attributes:
        tree (str):
    """

    tree: str

    def to_dict(self) -> dict[str, Any]:
        tree = self.tree

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "tree": tree,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        tree = d.pop("tree")

        tree_input = cls(
            tree=tree,
        )

        return tree_input
