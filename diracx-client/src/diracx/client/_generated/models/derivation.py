from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.derivation_builder import DerivationBuilder
    from ..models.derivation_config import DerivationConfig
    from ..models.derivation_inputs import DerivationInputs
    from ..models.matcher import Matcher


T = TypeVar("T", bound="Derivation")


@_attrs_define
class Derivation:
    """What to build: the node of a pipeline, as sent by a client and stored by the server.

    Attributes:
        builder (DerivationBuilder):
        name (str):
        config (DerivationConfig | Unset):
        inputs (DerivationInputs | Unset):
        matcher (Matcher | Unset): Which realizations of a derivation count. ``only``: deterministic, at most one.
    """

    builder: DerivationBuilder
    name: str
    config: DerivationConfig | Unset = UNSET
    inputs: DerivationInputs | Unset = UNSET
    matcher: Matcher | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        builder = self.builder.to_dict()

        name = self.name

        config: dict[str, Any] | Unset = UNSET
        if not isinstance(self.config, Unset):
            config = self.config.to_dict()

        inputs: dict[str, Any] | Unset = UNSET
        if not isinstance(self.inputs, Unset):
            inputs = self.inputs.to_dict()

        matcher: dict[str, Any] | Unset = UNSET
        if not isinstance(self.matcher, Unset):
            matcher = self.matcher.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "builder": builder,
                "name": name,
            }
        )
        if config is not UNSET:
            field_dict["config"] = config
        if inputs is not UNSET:
            field_dict["inputs"] = inputs
        if matcher is not UNSET:
            field_dict["matcher"] = matcher

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.derivation_builder import DerivationBuilder  # noqa: PLC0415
        from ..models.derivation_config import DerivationConfig  # noqa: PLC0415
        from ..models.derivation_inputs import DerivationInputs  # noqa: PLC0415
        from ..models.matcher import Matcher  # noqa: PLC0415

        d = dict(src_dict)
        builder = DerivationBuilder.from_dict(d.pop("builder"))

        name = d.pop("name")

        _config = d.pop("config", UNSET)
        config: DerivationConfig | Unset
        if isinstance(_config, Unset):
            config = UNSET
        else:
            config = DerivationConfig.from_dict(_config)

        _inputs = d.pop("inputs", UNSET)
        inputs: DerivationInputs | Unset
        if isinstance(_inputs, Unset):
            inputs = UNSET
        else:
            inputs = DerivationInputs.from_dict(_inputs)

        _matcher = d.pop("matcher", UNSET)
        matcher: Matcher | Unset
        if isinstance(_matcher, Unset):
            matcher = UNSET
        else:
            matcher = Matcher.from_dict(_matcher)

        derivation = cls(
            builder=builder,
            name=name,
            config=config,
            inputs=inputs,
            matcher=matcher,
        )

        return derivation
