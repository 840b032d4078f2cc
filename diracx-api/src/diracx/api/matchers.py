"""Matchers: which realizations of a stage count, and so what its dependents see.

A matcher is data (``diracx.core.derivation.Matcher``) evaluated by the engine, and
part of the stage's DRef: changing it makes another derivation. Give one to
``command(..., matcher=...)``, ``@stage(matcher=...)`` or ``Stage(..., matcher=...)``.

A dependent finds an input whose matcher picks at most one realization (``only()``,
``latest(1)``, ``best(..., n=1)``, ``exact(one)``) at ``inputs/<name>/``; for the
others (``all_()``, ``some(n)``, ``latest(n)``, ``best(..., n)``, ``exact(several)``)
it finds each chosen realization at ``inputs/<name>/<k>/``, k = 0, 1, ... in the
matcher's order (newest first for latest, best first for best, oldest first
otherwise). The realization it builds records all of them in its context.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from diracx.core.derivation import Matcher

__all__ = ["all_", "best", "exact", "latest", "only", "some"]


def only() -> Matcher:
    """The default: one realization; a second, different one (same inputs) is an error
    that names both (the build is not deterministic: choose another matcher)."""
    return Matcher()


def latest(n: int = 1) -> Matcher:
    """The *n* newest realizations (built once if there is none)."""
    return Matcher.of("latest", n=_count(n, "latest"))


def all_() -> Matcher:
    """Every realization (built once if there is none)."""
    return Matcher.of("all")


def some(n: int) -> Matcher:
    """Build until *n* distinct realizations exist ("train five seeds"), then all of them.
    A deterministic build yields one RRef however often it runs: it stops there."""
    return Matcher.of("some", n=_count(n, "some"))


def best(
    metric: str,
    n: int = 1,
    mode: Literal["higher", "lower"] = "higher",
    *,
    at_least: int = 1,
) -> Matcher:
    """The *n* realizations with the highest (``mode="higher"``) or lowest value of
    *metric*, which the build reports in ``out/metrics.json`` (a JSON object).

    With *at_least*, the stage is first built until that many realizations exist, as
    ``some(at_least)`` would: ``best("accuracy", at_least=5)`` trains five seeds and
    gives its dependents the most accurate model only."""
    if mode not in ("higher", "lower"):
        raise ValueError(f"best: mode must be 'higher' or 'lower', not {mode!r}")
    return Matcher.of(
        "best",
        n=_count(n, "best"),
        metric=metric,
        mode=mode,
        at_least=_count(at_least, "best's at_least"),
    )


def exact(*rrefs: Any) -> Matcher:
    """Exactly these realizations (RRefs, or realizations) of a stage of the same name
    (built under another matcher, say ``some(5)``); never builds."""
    flat: list[str] = []
    for item in rrefs:
        if isinstance(item, str):
            flat.append(item)
        elif isinstance(item, Iterable) and not isinstance(item, bytes):
            flat.extend(_rref(x) for x in item)
        else:
            flat.append(_rref(item))
    return Matcher.of("exact", rrefs=flat)


def _rref(item: Any) -> str:
    rref = item if isinstance(item, str) else getattr(item, "rref", None)
    if not isinstance(rref, str):
        raise TypeError(f"exact takes RRefs or realizations, not {type(item).__name__}")
    return rref


def _count(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what}: n must be a positive integer, not {n!r}")
    return n
