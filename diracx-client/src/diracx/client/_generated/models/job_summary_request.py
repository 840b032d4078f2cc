from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.search_spec import SearchSpec


T = TypeVar("T", bound="JobSummaryRequest")


@_attrs_define
class JobSummaryRequest:
    """``POST /api/jobs/summary``: count the jobs matching *search*, grouped by attributes.

    Attributes:
        grouping (list[str]):
        search (list[SearchSpec] | Unset):
    """

    grouping: list[str]
    search: list[SearchSpec] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        grouping = self.grouping

        search: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.search, Unset):
            search = []
            for search_item_data in self.search:
                search_item = search_item_data.to_dict()
                search.append(search_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "grouping": grouping,
            }
        )
        if search is not UNSET:
            field_dict["search"] = search

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.search_spec import SearchSpec  # noqa: PLC0415

        d = dict(src_dict)
        grouping = cast(list[str], d.pop("grouping"))

        _search = d.pop("search", UNSET)
        search: list[SearchSpec] | Unset = UNSET
        if _search is not UNSET:
            search = []
            for search_item_data in _search:
                search_item = SearchSpec.from_dict(search_item_data)

                search.append(search_item)

        job_summary_request = cls(
            grouping=grouping,
            search=search,
        )

        job_summary_request.additional_properties = d
        return job_summary_request

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
