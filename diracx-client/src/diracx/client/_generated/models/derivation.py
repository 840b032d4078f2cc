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
    from ..models.scheduling import Scheduling


T = TypeVar("T", bound="Derivation")


@_attrs_define
class Derivation:
    """What to build: the node of a pipeline, as sent by a client and stored by the server.

    ``scheduling`` travels with it but is not hashed (see :class:`Scheduling`).

        Attributes:
            builder (DerivationBuilder):
            name (str):
            config (DerivationConfig | Unset):
            inputs (DerivationInputs | Unset):
            matcher (Matcher | Unset): Which realizations of a derivation count: data, evaluated on the server
                (``diracx.core.matching``). Part of the DRef: a changed matcher is another derivation.

                - ``only`` (default): deterministic, exactly one; a second, different realization
                  (same inputs) is an error that shows both.
                - ``latest(n)``: the newest *n* (at least one, built if there is none).
                - ``all``: every realization (at least one).
                - ``some(n)``: built until *n* distinct realizations exist; picks all of them.
                - ``best(metric, n, mode, at_least)``: the *n* with the highest (``mode="higher"``) or
                  lowest value of a metric the builder reported in ``metrics.json``, once at least
                  ``at_least`` realizations (default 1) exist: "train five seeds, keep the best".
                - ``exact(rrefs)``: exactly these realizations of a stage of the same name (built
                  under another matcher: the RRefs cannot be of this very DRef); never builds.
            scheduling (Scheduling | Unset): Where and how a derivation's job runs: not what it builds, so not part of the
                DRef.

                ``queue`` names the Celery queue (a site, ``gpu``, ...): only workers that serve it
                take the job. ``cpus`` is how many of a worker's slots the build takes; ``memory_mb``
                and ``gpus`` must fit what the worker declared. ``retries`` is how many times a
                failing build is tried again, ``retry_backoff`` the wait before the first retry
                (doubled for each next one). A lost worker never counts against ``retries``.
    """

    builder: DerivationBuilder
    name: str
    config: DerivationConfig | Unset = UNSET
    inputs: DerivationInputs | Unset = UNSET
    matcher: Matcher | Unset = UNSET
    scheduling: Scheduling | Unset = UNSET

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

        scheduling: dict[str, Any] | Unset = UNSET
        if not isinstance(self.scheduling, Unset):
            scheduling = self.scheduling.to_dict()

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
        if scheduling is not UNSET:
            field_dict["scheduling"] = scheduling

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.derivation_builder import DerivationBuilder  # noqa: PLC0415
        from ..models.derivation_config import DerivationConfig  # noqa: PLC0415
        from ..models.derivation_inputs import DerivationInputs  # noqa: PLC0415
        from ..models.matcher import Matcher  # noqa: PLC0415
        from ..models.scheduling import Scheduling  # noqa: PLC0415

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

        _scheduling = d.pop("scheduling", UNSET)
        scheduling: Scheduling | Unset
        if isinstance(_scheduling, Unset):
            scheduling = UNSET
        else:
            scheduling = Scheduling.from_dict(_scheduling)

        derivation = cls(
            builder=builder,
            name=name,
            config=config,
            inputs=inputs,
            matcher=matcher,
            scheduling=scheduling,
        )

        return derivation
