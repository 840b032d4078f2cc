from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.matcher_kind import MatcherKind
from ..models.matcher_mode_type_0 import MatcherModeType0
from ..types import UNSET, Unset

T = TypeVar("T", bound="Matcher")


@_attrs_define
class Matcher:
    """Which realizations of a derivation count: data, evaluated on the server
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

        Attributes:
            at_least (int | None | Unset):
            kind (MatcherKind | Unset):  Default: MatcherKind.ONLY.
            metric (None | str | Unset):
            mode (MatcherModeType0 | None | Unset):
            n (int | None | Unset):
            rrefs (list[str] | None | Unset):
    """

    at_least: int | None | Unset = UNSET
    kind: MatcherKind | Unset = MatcherKind.ONLY
    metric: None | str | Unset = UNSET
    mode: MatcherModeType0 | None | Unset = UNSET
    n: int | None | Unset = UNSET
    rrefs: list[str] | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        at_least: int | None | Unset
        if isinstance(self.at_least, Unset):
            at_least = UNSET
        else:
            at_least = self.at_least

        kind: str | Unset = UNSET
        if not isinstance(self.kind, Unset):
            kind = self.kind.value

        metric: None | str | Unset
        if isinstance(self.metric, Unset):
            metric = UNSET
        else:
            metric = self.metric

        mode: None | str | Unset
        if isinstance(self.mode, Unset):
            mode = UNSET
        elif isinstance(self.mode, MatcherModeType0):
            mode = self.mode.value
        else:
            mode = self.mode

        n: int | None | Unset
        if isinstance(self.n, Unset):
            n = UNSET
        else:
            n = self.n

        rrefs: list[str] | None | Unset
        if isinstance(self.rrefs, Unset):
            rrefs = UNSET
        elif isinstance(self.rrefs, list):
            rrefs = self.rrefs

        else:
            rrefs = self.rrefs

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if at_least is not UNSET:
            field_dict["at_least"] = at_least
        if kind is not UNSET:
            field_dict["kind"] = kind
        if metric is not UNSET:
            field_dict["metric"] = metric
        if mode is not UNSET:
            field_dict["mode"] = mode
        if n is not UNSET:
            field_dict["n"] = n
        if rrefs is not UNSET:
            field_dict["rrefs"] = rrefs

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_at_least(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        at_least = _parse_at_least(d.pop("at_least", UNSET))

        _kind = d.pop("kind", UNSET)
        kind: MatcherKind | Unset
        if isinstance(_kind, Unset):
            kind = UNSET
        else:
            kind = MatcherKind(_kind)

        def _parse_metric(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        metric = _parse_metric(d.pop("metric", UNSET))

        def _parse_mode(data: object) -> MatcherModeType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                mode_type_0 = MatcherModeType0(data)

                return mode_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(MatcherModeType0 | None | Unset, data)

        mode = _parse_mode(d.pop("mode", UNSET))

        def _parse_n(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        n = _parse_n(d.pop("n", UNSET))

        def _parse_rrefs(data: object) -> list[str] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                rrefs_type_0 = cast(list[str], data)

                return rrefs_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None | Unset, data)

        rrefs = _parse_rrefs(d.pop("rrefs", UNSET))

        matcher = cls(
            at_least=at_least,
            kind=kind,
            metric=metric,
            mode=mode,
            n=n,
            rrefs=rrefs,
        )

        return matcher
