from __future__ import annotations

from collections.abc import Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    TypeVar,
    cast,
)

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.upload_part_url import UploadPartURL


T = TypeVar("T", bound="MultipartUpload")


@_attrs_define
class MultipartUpload:
    """PUT each part (in any order, in parallel) to its URL, then complete the upload.

    Attributes:
        digest (str):
        part_size (int):
        parts (list[UploadPartURL]):
        size (int):
        upload_id (str):
        kind (Literal['multipart'] | Unset):  Default: 'multipart'.
    """

    digest: str
    part_size: int
    parts: list[UploadPartURL]
    size: int
    upload_id: str
    kind: Literal["multipart"] | Unset = "multipart"
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        digest = self.digest

        part_size = self.part_size

        parts = []
        for parts_item_data in self.parts:
            parts_item = parts_item_data.to_dict()
            parts.append(parts_item)

        size = self.size

        upload_id = self.upload_id

        kind = self.kind

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "digest": digest,
                "part_size": part_size,
                "parts": parts,
                "size": size,
                "upload_id": upload_id,
            }
        )
        if kind is not UNSET:
            field_dict["kind"] = kind

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.upload_part_url import UploadPartURL  # noqa: PLC0415

        d = dict(src_dict)
        digest = d.pop("digest")

        part_size = d.pop("part_size")

        parts = []
        _parts = d.pop("parts")
        for parts_item_data in _parts:
            parts_item = UploadPartURL.from_dict(parts_item_data)

            parts.append(parts_item)

        size = d.pop("size")

        upload_id = d.pop("upload_id")

        kind = cast(Literal["multipart"] | Unset, d.pop("kind", UNSET))
        if kind != "multipart" and not isinstance(kind, Unset):
            raise ValueError(f"kind must match const 'multipart', got '{kind}'")

        multipart_upload = cls(
            digest=digest,
            part_size=part_size,
            parts=parts,
            size=size,
            upload_id=upload_id,
            kind=kind,
        )

        multipart_upload.additional_properties = d
        return multipart_upload

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
