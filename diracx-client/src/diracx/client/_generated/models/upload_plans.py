from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.multipart_upload import MultipartUpload
    from ..models.single_upload import SingleUpload


T = TypeVar("T", bound="UploadPlans")


@_attrs_define
class UploadPlans:
    """One plan per blob the store lacks (blobs it has are left out).

    Attributes:
        uploads (list[MultipartUpload | SingleUpload]):
    """

    uploads: list[MultipartUpload | SingleUpload]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.single_upload import SingleUpload  # noqa: PLC0415

        uploads = []
        for uploads_item_data in self.uploads:
            uploads_item: dict[str, Any]
            if isinstance(uploads_item_data, SingleUpload):
                uploads_item = uploads_item_data.to_dict()
            else:
                uploads_item = uploads_item_data.to_dict()

            uploads.append(uploads_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "uploads": uploads,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.multipart_upload import MultipartUpload  # noqa: PLC0415
        from ..models.single_upload import SingleUpload  # noqa: PLC0415

        d = dict(src_dict)
        uploads = []
        _uploads = d.pop("uploads")
        for uploads_item_data in _uploads:

            def _parse_uploads_item(data: object) -> MultipartUpload | SingleUpload:
                try:
                    if not isinstance(data, dict):
                        raise TypeError()
                    uploads_item_type_0 = SingleUpload.from_dict(data)

                    return uploads_item_type_0
                except (TypeError, ValueError, AttributeError, KeyError):
                    pass
                if not isinstance(data, dict):
                    raise TypeError()
                uploads_item_type_1 = MultipartUpload.from_dict(data)

                return uploads_item_type_1

            uploads_item = _parse_uploads_item(uploads_item_data)

            uploads.append(uploads_item)

        upload_plans = cls(
            uploads=uploads,
        )

        upload_plans.additional_properties = d
        return upload_plans

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
