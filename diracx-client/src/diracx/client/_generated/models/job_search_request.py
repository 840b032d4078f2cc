from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.search_spec import SearchSpec
    from ..models.sort_spec import SortSpec


T = TypeVar("T", bound="JobSearchRequest")


@_attrs_define
class JobSearchRequest:
    """``POST /api/jobs/search``: the attributes to return (all if none), filters, order.

    Attributes:
        parameters (list[str] | None | Unset):
        search (list[SearchSpec] | Unset):
        sort (list[SortSpec] | Unset):
    """

    parameters: list[str] | None | Unset = UNSET
    search: list[SearchSpec] | Unset = UNSET
    sort: list[SortSpec] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        parameters: list[str] | None | Unset
        if isinstance(self.parameters, Unset):
            parameters = UNSET
        elif isinstance(self.parameters, list):
            parameters = self.parameters

        else:
            parameters = self.parameters

        search: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.search, Unset):
            search = []
            for search_item_data in self.search:
                search_item = search_item_data.to_dict()
                search.append(search_item)

        sort: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.sort, Unset):
            sort = []
            for sort_item_data in self.sort:
                sort_item = sort_item_data.to_dict()
                sort.append(sort_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if parameters is not UNSET:
            field_dict["parameters"] = parameters
        if search is not UNSET:
            field_dict["search"] = search
        if sort is not UNSET:
            field_dict["sort"] = sort

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.search_spec import SearchSpec  # noqa: PLC0415
        from ..models.sort_spec import SortSpec  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_parameters(data: object) -> list[str] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                parameters_type_0 = cast(list[str], data)

                return parameters_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None | Unset, data)

        parameters = _parse_parameters(d.pop("parameters", UNSET))

        _search = d.pop("search", UNSET)
        search: list[SearchSpec] | Unset = UNSET
        if _search is not UNSET:
            search = []
            for search_item_data in _search:
                search_item = SearchSpec.from_dict(search_item_data)

                search.append(search_item)

        _sort = d.pop("sort", UNSET)
        sort: list[SortSpec] | Unset = UNSET
        if _sort is not UNSET:
            sort = []
            for sort_item_data in _sort:
                sort_item = SortSpec.from_dict(sort_item_data)

                sort.append(sort_item)

        job_search_request = cls(
            parameters=parameters,
            search=search,
            sort=sort,
        )

        job_search_request.additional_properties = d
        return job_search_request

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
