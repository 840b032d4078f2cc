from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.served_config_vos import ServedConfigVos


T = TypeVar("T", bound="ServedConfig")


@_attrs_define
class ServedConfig:
    """The VOs the caller may see, and the revision of the configuration they come from.

    Attributes:
        revision (str):
        vos (ServedConfigVos):
    """

    revision: str
    vos: ServedConfigVos

    def to_dict(self) -> dict[str, Any]:
        revision = self.revision

        vos = self.vos.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "revision": revision,
                "vos": vos,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.served_config_vos import ServedConfigVos  # noqa: PLC0415

        d = dict(src_dict)
        revision = d.pop("revision")

        vos = ServedConfigVos.from_dict(d.pop("vos"))

        served_config = cls(
            revision=revision,
            vos=vos,
        )

        return served_config
