"""Matchers evaluated, and the realize pass planned: reuse or build, and why.

Pure functions over what the database holds, shared by submission (which acts on
the plan), the dry run (which only reports it) and workers' claims (which read
the realizations each input's matcher chose).

A derivation's realizations are grouped by context (which realizations of each
input they were built from). Its matcher looks only at the realizations whose
context is the one its inputs' matchers choose now (``exact`` looks at all): when
an input's matcher picks other realizations, the stage is built again ("input 'x'
changed"), as in Pylightnix. When an input is rebuilt, the stage waits for it and is
built only if it came out different (early cutoff, ``PipelineDB._reuse_unchanged``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from diracx.core.derivation import Derivation, Matcher

Action = Literal["reuse", "build", "join", "error"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One realization of a derivation, as a matcher sees it."""

    rref: str
    output: str
    context: dict[str, list[str]]  # input name -> sorted RRefs
    metrics: dict[str, Any] = field(default_factory=dict)


def parse_context(text: str) -> dict[str, list[str]]:
    """A realizations row's context (JSON), each list sorted."""
    return {k: sorted(v) for k, v in json.loads(text).items()}


# A realization's row never changes, so neither does its candidate: a cached pipeline
# planned again parses none of its rows again. Keyed by every column it is made of;
# about 1 KiB each, so at most about 16 MB.
@lru_cache(maxsize=16384)
def candidate(rref: str, output: str, context: str, metrics: str) -> Candidate:
    """A candidate from a realizations row's columns (shared: never change it)."""
    return Candidate(rref, output, parse_context(context), json.loads(metrics or "{}"))


@dataclass
class Choice:
    """What a matcher picked among the realizations of one context."""

    chosen: list[Candidate]  # in the matcher's order (newest first, best first...)
    missing: int = 0  # realizations still to build before it is satisfied
    error: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def choose(matcher: Matcher, name: str, found: Sequence[Candidate]) -> Choice:
    """Evaluate *matcher* on *found* (oldest first) for the stage *name*."""
    kind = matcher.kind
    if kind == "exact":
        by_rref = {c.rref: c for c in found}
        absent = [r for r in matcher.rrefs or () if r not in by_rref]
        if absent:
            return Choice(
                [],
                error=f"stage {name!r}: matcher exact names RRef {absent[0]}, "
                f"which is no realization of a stage named {name!r}",
            )
        return Choice([by_rref[r] for r in matcher.rrefs or ()])
    if not found:
        return Choice([], missing=matcher.build_until)
    if kind == "only":
        if len(found) > 1:
            return Choice(
                [],
                error=f"stage {name!r} has {len(found)} different realizations built from the "
                f"same inputs, but its matcher is 'only': RRef {found[0].rref} and RRef "
                f"{found[1].rref}; its build is not deterministic: give it latest(1), all(), "
                "some(n) or best(...)",
            )
        return Choice([found[0]])
    if kind == "all":
        return Choice(list(found))
    if kind == "latest":
        return Choice(list(reversed(found))[: matcher.n])
    if kind == "some":
        n = matcher.n or 1
        return Choice(list(found), missing=max(0, n - len(found)))
    # best: realizations that report the metric as a number, best first (ties: oldest)
    scored = [
        (v, i, c)
        for i, c in enumerate(found)
        if (v := _number(c.metrics.get(matcher.metric or ""))) is not None
    ]
    if not scored:
        return Choice(
            [],
            error=f"stage {name!r}: matcher best needs the metric {matcher.metric!r}, which none "
            f"of its {len(found)} realizations reports (write it to metrics.json in out/)",
        )
    sign = -1.0 if matcher.mode == "higher" else 1.0
    scored.sort(key=lambda t: (sign * t[0], t[1]))
    missing = max(0, matcher.build_until - len(found))
    return Choice([c for _, _, c in scored[: matcher.n]], missing=missing)


def context_of(drv: Derivation, chosen: Mapping[str, Sequence[Candidate]]) -> dict[str, list[str]]:
    """The context a build of *drv* has, given what its inputs' matchers chose (by DRef)."""
    return {name: sorted(c.rref for c in chosen[dref]) for name, dref in drv.input_drefs().items()}


def in_context(
    matcher: Matcher, found: Sequence[Candidate], context: Mapping[str, list[str]] | None
) -> list[Candidate]:
    """The realizations a matcher looks at: those of *context* (``exact``: all of them)."""
    if matcher.kind == "exact" or context is None:
        return list(found)
    return [c for c in found if c.context == context]


# -- the plan --------------------------------------------------------------------------


class PlannedStage(BaseModel):
    """What a submission would do with one stage, and why."""

    dref: str
    name: str
    action: Action  # reuse: cached; build: a new job; join: a live job builds it; error
    # "cached (RRef …)", "never built", "input 'x' changed", "forced",
    # "input 'x' is rebuilt (reused if unchanged)", "matcher some(3): 1 of 3", ...
    reason: str
    matcher: str  # only, some(5), best(accuracy, 1, higher), ...
    rrefs: list[str] = []  # reuse: the realizations the matcher chose
    builds: int = 0  # build: how many realizations the job adds (at most)
    job_id: int | None = None  # join: the live job


class PipelinePlan(BaseModel):
    """A dry run: every stage of the pipeline, inputs first. Nothing was recorded."""

    stages: list[PlannedStage]
    reuse: int
    build: int
    errors: int = 0


@dataclass
class StagePlan:
    """The planner's decision for one derivation."""

    action: Action
    reason: str
    chosen: list[Candidate] = field(default_factory=list)
    builds: int = 0
    job_id: int | None = None


def _short(rref: str) -> str:
    return rref[:12] + "…"


def _cached_reason(chosen: Sequence[Candidate], matcher: Matcher) -> str:
    if len(chosen) == 1 and matcher.kind in ("only", "latest", "best", "exact"):
        return f"cached (RRef {_short(chosen[0].rref)})"
    rrefs = ", ".join(_short(c.rref) for c in chosen[:5])
    more = f" and {len(chosen) - 5} more" if len(chosen) > 5 else ""
    return f"cached ({matcher.describe()}: {len(chosen)} RRefs {rrefs}{more})"


def _changed_inputs(
    drv: Derivation, found: Sequence[Candidate], context: Mapping[str, list[str]]
) -> list[str]:
    """Inputs whose chosen realizations differ from those of the newest realization."""
    newest = found[-1].context
    return sorted(name for name in drv.input_drefs() if newest.get(name) != context.get(name))


def plan(
    ordered: Sequence[tuple[str, Derivation]],
    realizations: Mapping[str, Sequence[Candidate]],
    *,
    live: Mapping[str, int] | None = None,
    forced: set[str] | frozenset[str] = frozenset(),
) -> dict[str, StagePlan]:
    """For each derivation (inputs first), reuse or build, and why.

    *realizations*: DRef -> its realizations, oldest first; *live*: DRef -> a live job
    that builds it (joined rather than duplicated); *forced*: DRefs built anyway. A stage
    whose input is built (or in error) is built too: its context will change.
    """
    live = live or {}
    plans: dict[str, StagePlan] = {}
    chosen: dict[str, list[Candidate]] = {}
    for dref, drv in ordered:
        found = realizations.get(dref, ())
        inputs = drv.input_drefs()
        blocked = sorted(n for n, d in inputs.items() if plans[d].action != "reuse")
        if blocked:
            errors = [n for n in blocked if plans[inputs[n]].action == "error"]
            if errors:
                decision = StagePlan("error", f"input {errors[0]!r} is in error")
            else:
                # built once the input is, unless it comes out as it was (early cutoff)
                why = (
                    "never built"
                    if not found
                    else f"input {blocked[0]!r} is rebuilt (reused if unchanged)"
                )
                if dref in forced:
                    why = "forced"
                decision = StagePlan("build", why, builds=1)
        else:
            context = context_of(drv, chosen)
            considered = in_context(drv.matcher, found, context)
            choice = choose(drv.matcher, drv.name, considered)
            if choice.error is not None:
                decision = StagePlan("error", choice.error)
            elif dref in forced:
                decision = StagePlan("build", "forced", builds=max(1, choice.missing))
            elif choice.missing:
                if not found:
                    why = "never built"
                elif not considered:
                    changed = _changed_inputs(drv, found, context)
                    why = f"input {changed[0]!r} changed" if changed else "never built"
                else:
                    n = drv.matcher.build_until
                    why = f"matcher {drv.matcher.describe()}: {len(considered)} of {n}"
                decision = StagePlan("build", why, builds=choice.missing)
            else:
                decision = StagePlan(
                    "reuse", _cached_reason(choice.chosen, drv.matcher), choice.chosen
                )
                chosen[dref] = choice.chosen
        if decision.action == "build" and dref in live:
            decision.action = "join"
            decision.job_id = live[dref]
            decision.reason += f" (job {live[dref]} is building it)"
        plans[dref] = decision
    return plans


def to_pipeline_plan(
    ordered: Sequence[tuple[str, Derivation]], plans: Mapping[str, StagePlan]
) -> PipelinePlan:
    stages = [
        PlannedStage(
            dref=dref,
            name=drv.name,
            action=plans[dref].action,
            reason=plans[dref].reason,
            matcher=drv.matcher.describe(),
            rrefs=[c.rref for c in plans[dref].chosen],
            builds=plans[dref].builds,
            job_id=plans[dref].job_id,
        )
        for dref, drv in ordered
    ]
    actions = [s.action for s in stages]
    return PipelinePlan(
        stages=stages,
        reuse=actions.count("reuse"),
        build=actions.count("build") + actions.count("join"),
        errors=actions.count("error"),
    )


__all__ = [
    "Candidate",
    "Choice",
    "PipelinePlan",
    "PlannedStage",
    "StagePlan",
    "candidate",
    "choose",
    "context_of",
    "in_context",
    "parse_context",
    "plan",
    "to_pipeline_plan",
]
