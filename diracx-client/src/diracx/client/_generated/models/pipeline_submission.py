from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.pipeline_submission_derivations import PipelineSubmissionDerivations


T = TypeVar("T", bound="PipelineSubmission")


@_attrs_define
class PipelineSubmission:
    """A set of target derivations with their closure, keyed by the client's DRefs.

    Attributes:
        derivations (PipelineSubmissionDerivations):
        targets (list[str]):
    """

    derivations: PipelineSubmissionDerivations
    targets: list[str]

    def to_dict(self) -> dict[str, Any]:
        derivations = self.derivations.to_dict()

        targets = self.targets

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "derivations": derivations,
                "targets": targets,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.pipeline_submission_derivations import (
            PipelineSubmissionDerivations,  # noqa: PLC0415
        )

        d = dict(src_dict)
        derivations = PipelineSubmissionDerivations.from_dict(d.pop("derivations"))

        targets = cast(list[str], d.pop("targets"))

        pipeline_submission = cls(
            derivations=derivations,
            targets=targets,
        )

        return pipeline_submission
