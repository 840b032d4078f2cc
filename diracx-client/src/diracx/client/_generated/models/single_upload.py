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
    from ..models.single_upload_headers import SingleUploadHeaders


T = TypeVar("T", bound="SingleUpload")


@_attrs_define
class SingleUpload:
    """Send the whole blob with one request; then, if ``upload_id`` is set, complete it.

    Attributes:
        digest (str):
        size (int):
        url (str):
        headers (SingleUploadHeaders | Unset):
        kind (Literal['single'] | Unset):  Default: 'single'.
        method (Literal['PUT'] | Unset):  Default: 'PUT'.
        upload_id (None | str | Unset):
    """

    digest: str
    size: int
    url: str
    headers: SingleUploadHeaders | Unset = UNSET
    kind: Literal["single"] | Unset = "single"
    method: Literal["PUT"] | Unset = "PUT"
    upload_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        digest = self.digest

        size = self.size

        url = self.url

        headers: dict[str, Any] | Unset = UNSET
        if not isinstance(self.headers, Unset):
            headers = self.headers.to_dict()

        kind = self.kind

        method = self.method

        upload_id: None | str | Unset
        if isinstance(self.upload_id, Unset):
            upload_id = UNSET
        else:
            upload_id = self.upload_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "digest": digest,
                "size": size,
                "url": url,
            }
        )
        if headers is not UNSET:
            field_dict["headers"] = headers
        if kind is not UNSET:
            field_dict["kind"] = kind
        if method is not UNSET:
            field_dict["method"] = method
        if upload_id is not UNSET:
            field_dict["upload_id"] = upload_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.single_upload_headers import SingleUploadHeaders  # noqa: PLC0415

        d = dict(src_dict)
        digest = d.pop("digest")

        size = d.pop("size")

        url = d.pop("url")

        _headers = d.pop("headers", UNSET)
        headers: SingleUploadHeaders | Unset
        if isinstance(_headers, Unset):
            headers = UNSET
        else:
            headers = SingleUploadHeaders.from_dict(_headers)

        kind = cast(Literal["single"] | Unset, d.pop("kind", UNSET))
        if kind != "single" and not isinstance(kind, Unset):
            raise ValueError(f"kind must match const 'single', got '{kind}'")

        method = cast(Literal["PUT"] | Unset, d.pop("method", UNSET))
        if method != "PUT" and not isinstance(method, Unset):
            raise ValueError(f"method must match const 'PUT', got '{method}'")

        def _parse_upload_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        upload_id = _parse_upload_id(d.pop("upload_id", UNSET))

        single_upload = cls(
            digest=digest,
            size=size,
            url=url,
            headers=headers,
            kind=kind,
            method=method,
            upload_id=upload_id,
        )

        single_upload.additional_properties = d
        return single_upload

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
