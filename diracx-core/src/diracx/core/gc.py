"""Garbage collection of the store: pins (its roots) and the plan of what may go.

The plan is pure: the database layer (``diracx.db.gc``) gathers the facts
(realizations, roots, the blobs each one refers to, the blobs in the store) and
carries the plan out. What is kept:

- the closure of the roots: pinned realizations, every realization of a
  derivation of a pipeline younger than the retention window, every realization
  a live job may take as an input, and realizations newer than the grace period,
  each with its context's input realizations, recursively;
- every blob those realizations refer to (output tree, its files, log, the trees
  of their derivation), and the blobs live jobs and young pipelines need directly
  (tree inputs, Python sources, logs);
- every blob whose modification time is within the grace period: a blob being
  uploaded or ingested now (the store refreshes the time of a blob it is asked
  for again, see ``LocalStore.refresh``) is never taken.

With a size target, the unreachable realizations and unreferenced blobs go oldest
first until the store is under the target. A realization's age is the newest
time any unreachable realization built from it was made: a realization goes only
after (or with) everything built from it, so whatever stays keeps its closure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field

# Pin names: like stage names, plus ':' and '@' ("paper:fig-3", "model@v2").
PIN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$"
PIN_NAME_RE = re.compile(PIN_NAME_PATTERN.replace("$", "\\Z"))
DEFAULT_GRACE_SECONDS = 3600.0  # an unreferenced object younger than this is never taken
DEFAULT_KEEP_DAYS = 7.0


def check_pin_name(name: str) -> str:
    if not PIN_NAME_RE.match(name):
        raise ValueError(
            f"pin name {name!r} must be 1-255 letters, digits, '.', '_', '-', ':' or '@', "
            "starting with a letter or digit"
        )
    return name


class PinInfo(BaseModel):
    """A name for a realization: a root of garbage collection."""

    name: str
    rref: str
    stage: str = Field(description="the name of the realization's stage")
    output: str = Field(description="the realization's output tree digest")
    owner: str
    created: datetime


class PinRequest(BaseModel):
    rref: str = Field(pattern=r"^[0-9a-f]{64}$", description="the realization to pin")


class GCRequest(BaseModel):
    dry_run: bool = False
    keep_days: float = Field(
        default=DEFAULT_KEEP_DAYS,
        ge=0,
        le=36500,
        description="pipelines younger than this (days) keep everything they used",
    )
    target_size: int | None = Field(
        default=None,
        ge=0,
        description="stop once the store holds at most this many bytes (oldest goes first)",
    )
    grace_seconds: float = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=365 * 86400,
        description="objects younger than this are never taken (uploads and builds in flight)",
    )


class GCRealization(BaseModel):
    rref: str
    stage: str
    created: datetime


class GCReport(BaseModel):
    """What a collection removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    realizations: list[GCRealization] = Field(description="removed, oldest first")
    blobs: list[str] = Field(description="digests of the blobs removed, sorted")
    freed: int = Field(description="bytes of the blobs removed")
    store_size: int = Field(description="bytes in the store before")
    kept_realizations: int
    kept_blobs: int
    young_blobs: int = Field(description="unreferenced blobs kept: younger than the grace period")
    target_size: int | None = None
    target_met: bool = True


@dataclass(frozen=True)
class RealizationFacts:
    """One realization row and the blobs it refers to (trees expanded)."""

    rref: str
    stage: str
    created: datetime
    inputs: frozenset[str]  # the context's realizations
    blobs: frozenset[str]


@dataclass(frozen=True)
class BlobFacts:
    size: int
    mtime: float  # seconds since the epoch


@dataclass
class Plan:
    realizations: list[RealizationFacts] = field(default_factory=list)  # to remove, in order
    blobs: list[str] = field(default_factory=list)  # to remove, sorted
    freed: int = 0
    store_size: int = 0
    kept_realizations: int = 0
    kept_blobs: int = 0
    young_blobs: int = 0
    target_met: bool = True


def closure(roots: Iterable[str], inputs: Mapping[str, Iterable[str]]) -> set[str]:
    """*roots* and every realization their contexts reach (*inputs*: rref -> the
    realizations of its context; those missing from *inputs* do not exist)."""
    seen: set[str] = set()
    stack = [r for r in roots if r in inputs]
    while stack:
        rref = stack.pop()
        if rref in seen:
            continue
        seen.add(rref)
        stack.extend(i for i in inputs[rref] if i in inputs and i not in seen)
    return seen


def _ages(
    doomed: Mapping[str, RealizationFacts],
) -> dict[str, tuple[datetime, int]]:
    """(age, level) of each unreachable realization: its age is the newest creation time
    among it and what was built from it; its level is 0 for one nothing was built from,
    else one more than the highest level of those. Sorting by (age, level) puts what was
    built from a realization before it."""
    users: dict[str, list[str]] = {r: [] for r in doomed}
    for facts in doomed.values():
        for i in facts.inputs:
            if i in users:
                users[i].append(facts.rref)
    result: dict[str, tuple[datetime, int]] = {}
    for start in doomed:
        if start in result:
            continue
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:  # iterative post-order: deep chains do not hit the recursion limit
            rref, expanded = stack.pop()
            if rref in result:
                continue
            if not expanded:
                stack.append((rref, True))
                stack.extend((u, False) for u in users[rref] if u not in result)
                continue
            age, level = doomed[rref].created, 0
            for u in users[rref]:
                u_age, u_level = result.get(u, (doomed[u].created, 0))  # a cycle: not expected
                age = max(age, u_age)
                level = max(level, u_level + 1)
            result[rref] = (age, level)
    return result


def plan(
    realizations: Mapping[str, RealizationFacts],
    roots: Iterable[str],
    protected_blobs: Iterable[str],
    store: Mapping[str, BlobFacts],
    *,
    blob_cutoff: float,
    row_cutoff: datetime,
    target_size: int | None = None,
) -> Plan:
    """What to remove. *roots*: realizations to keep with their closure; *protected_blobs*:
    blobs to keep whatever refers to them; *store*: every blob in the store. A blob
    modified after *blob_cutoff* and a realization created after *row_cutoff* stay."""
    young_rows = [r for r, f in realizations.items() if f.created > row_cutoff]
    kept = closure([*roots, *young_rows], {r: f.inputs for r, f in realizations.items()})
    protected = set(protected_blobs)
    for rref in kept:
        protected |= realizations[rref].blobs
    doomed = {r: f for r, f in realizations.items() if r not in kept}
    refs: dict[str, int] = {}
    for doomed_facts in doomed.values():
        for b in doomed_facts.blobs:
            refs[b] = refs.get(b, 0) + 1

    def removable(digest: str) -> bool:
        blob = store.get(digest)
        return blob is not None and digest not in protected and blob.mtime <= blob_cutoff

    result = Plan(store_size=sum(b.size for b in store.values()))
    ages = _ages(doomed)
    # (age, level, kind, key): kind 0 a realization, 1 an unreferenced blob
    items: list[tuple[float, int, int, str]] = [
        (ages[r][0].timestamp(), ages[r][1], 0, r) for r in doomed
    ]
    for digest, blob in store.items():
        if digest in protected or digest in refs:
            continue
        if blob.mtime > blob_cutoff:
            result.young_blobs += 1
            continue
        items.append((blob.mtime, 0, 1, digest))
    items.sort()
    size = result.store_size
    removed_rows: set[str] = set()
    removed_blobs: list[str] = []
    for _, _, kind, key in items:
        if target_size is not None and size <= target_size:
            break
        if kind == 1:
            removed_blobs.append(key)
            size -= store[key].size
            continue
        removed_rows.add(key)
        result.realizations.append(doomed[key])
        for b in doomed[key].blobs:
            refs[b] -= 1
            if refs[b] == 0 and removable(b):
                removed_blobs.append(b)
                size -= store[b].size
    result.blobs = sorted(removed_blobs)
    result.freed = result.store_size - size
    result.kept_realizations = len(realizations) - len(removed_rows)
    result.kept_blobs = len(store) - len(removed_blobs)
    result.target_met = target_size is None or size <= target_size
    return result
