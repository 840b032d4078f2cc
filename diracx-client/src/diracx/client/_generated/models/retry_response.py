from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.retried_job import RetriedJob
    from ..models.retry_response_skipped import RetryResponseSkipped


T = TypeVar("T", bound="RetryResponse")


@_attrs_define
class RetryResponse:
    """What a pipeline retry did: the jobs rescheduled, and the failed or killed jobs
    left as they are, with the reason.

        Attributes:
            retried (list[RetriedJob]):
            skipped (RetryResponseSkipped | Unset):
    """

    retried: list[RetriedJob]
    skipped: RetryResponseSkipped | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        retried = []
        for retried_item_data in self.retried:
            retried_item = retried_item_data.to_dict()
            retried.append(retried_item)

        skipped: dict[str, Any] | Unset = UNSET
        if not isinstance(self.skipped, Unset):
            skipped = self.skipped.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "retried": retried,
            }
        )
        if skipped is not UNSET:
            field_dict["skipped"] = skipped

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.retried_job import RetriedJob  # noqa: PLC0415
        from ..models.retry_response_skipped import RetryResponseSkipped  # noqa: PLC0415

        d = dict(src_dict)
        retried = []
        _retried = d.pop("retried")
        for retried_item_data in _retried:
            retried_item = RetriedJob.from_dict(retried_item_data)

            retried.append(retried_item)

        _skipped = d.pop("skipped", UNSET)
        skipped: RetryResponseSkipped | Unset
        if isinstance(_skipped, Unset):
            skipped = UNSET
        else:
            skipped = RetryResponseSkipped.from_dict(_skipped)

        retry_response = cls(
            retried=retried,
            skipped=skipped,
        )

        retry_response.additional_properties = d
        return retry_response

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
