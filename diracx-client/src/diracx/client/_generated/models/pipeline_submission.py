from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.pipeline_submission_derivations import PipelineSubmissionDerivations
    from ..models.pipeline_submission_secrets import PipelineSubmissionSecrets


T = TypeVar("T", bound="PipelineSubmission")


@_attrs_define
class PipelineSubmission:
    """A set of target derivations with their closure, keyed by the client's DRefs.

    ``secrets`` carries the values of the secrets its container steps name (never
    part of a derivation, a hash, a log or a response: see ``diracx.core.secrets``).

        Attributes:
            derivations (PipelineSubmissionDerivations):
            targets (list[str]):
            force (list[str] | Unset): stages (by name or DRef) to build again even if their matcher is satisfied
            secrets (PipelineSubmissionSecrets | Unset): secret name -> value, for the steps that name secrets
    """

    derivations: PipelineSubmissionDerivations
    targets: list[str]
    force: list[str] | Unset = UNSET
    secrets: PipelineSubmissionSecrets | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        derivations = self.derivations.to_dict()

        targets = self.targets

        force: list[str] | Unset = UNSET
        if not isinstance(self.force, Unset):
            force = self.force

        secrets: dict[str, Any] | Unset = UNSET
        if not isinstance(self.secrets, Unset):
            secrets = self.secrets.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "derivations": derivations,
                "targets": targets,
            }
        )
        if force is not UNSET:
            field_dict["force"] = force
        if secrets is not UNSET:
            field_dict["secrets"] = secrets

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.pipeline_submission_derivations import (
            PipelineSubmissionDerivations,  # noqa: PLC0415
        )
        from ..models.pipeline_submission_secrets import PipelineSubmissionSecrets  # noqa: PLC0415

        d = dict(src_dict)
        derivations = PipelineSubmissionDerivations.from_dict(d.pop("derivations"))

        targets = cast(list[str], d.pop("targets"))

        force = cast(list[str], d.pop("force", UNSET))

        _secrets = d.pop("secrets", UNSET)
        secrets: PipelineSubmissionSecrets | Unset
        if isinstance(_secrets, Unset):
            secrets = UNSET
        else:
            secrets = PipelineSubmissionSecrets.from_dict(_secrets)

        pipeline_submission = cls(
            derivations=derivations,
            targets=targets,
            force=force,
            secrets=secrets,
        )

        return pipeline_submission
