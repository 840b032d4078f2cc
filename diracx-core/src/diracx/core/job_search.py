"""The jobs API in DIRAC's manner: search, summary and status updates (models only).

A search names job attributes by their column name (``status``, ``minor_status``)
or by DIRAC's name (``Status``, ``MinorStatus``, ``JobID``...); ``attribute_name``
turns either into the column name, and refuses anything else. Searches see only the
caller's VO: the service adds that condition itself, whatever the filters say.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from diracx.core.exceptions import DiracxError
from diracx.core.status import JobStatus

# The attributes a search may filter, sort, group and return, with their type.
JOB_ATTRIBUTES: dict[str, type] = {
    "id": int,
    "pipeline_id": int,
    "dref": str,
    "name": str,
    "vo": str,  # always the caller's: the service adds that condition to every search
    "owner": str,  # the subject of the user who submitted it
    "status": str,
    "minor_status": str,
    "worker": str,
    "attempt": int,
    "queue": str,
    "cpus": int,
    "memory_mb": int,
    "gpus": int,
    "retries": int,
    "failures": int,
    "reschedules": int,
    "created": datetime,
    "updated": datetime,
    "heartbeat": datetime,
    "not_before": datetime,
    "rref": str,
    "log": str,
}
# DIRAC's names for the same attributes
DIRAC_NAMES: dict[str, str] = {
    "JobID": "id",
    "JobName": "name",
    "Owner": "owner",
    "VO": "vo",
    "Status": "status",
    "MinorStatus": "minor_status",
    "Site": "worker",
    "Queue": "queue",
    "RescheduleCounter": "reschedules",
    "SubmissionTime": "created",
    "LastUpdateTime": "updated",
    "HeartBeatTime": "heartbeat",
}
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 10_000
MAX_PAGE = 1_000_000_000  # the offset stays a 64-bit integer
MAX_VALUES = 1000  # values of one "in" filter
MAX_FILTERS = 50


class InvalidSearchError(DiracxError):
    """A search, summary or sort naming an unknown attribute or operator (a 400)."""


def text_problem(text: str) -> str | None:
    """Why a database cannot store *text* (None if it can)."""
    if "\x00" in text:
        return "contains a NUL character"  # PostgreSQL's text cannot
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def attribute_name(name: str) -> str:
    """The column name of a job attribute, given its column name or DIRAC's name."""
    if name in JOB_ATTRIBUTES:
        return name
    if name in DIRAC_NAMES:
        return DIRAC_NAMES[name]
    # forgiving spellings: "Name", "minorStatus", "MINOR_STATUS", "jobid"
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    if snake in JOB_ATTRIBUTES:
        return snake
    aliases = {k.lower(): v for k, v in DIRAC_NAMES.items()}
    if name.lower() in aliases:
        return aliases[name.lower()]
    raise InvalidSearchError(
        f"unknown job attribute {name!r}: use one of {', '.join(JOB_ATTRIBUTES)}"
    )


def check_filter(spec: SearchSpec) -> tuple[str, Operator]:
    """The column and operator of a filter, or InvalidSearchError saying what is wrong."""
    column = attribute_name(spec.parameter)
    try:
        op = Operator(spec.operator)
    except ValueError:
        ops = ", ".join(o.value for o in Operator)
        raise InvalidSearchError(
            f"unknown operator {spec.operator!r} for {spec.parameter!r}: use one of {ops}"
        ) from None
    if op in (Operator.IN, Operator.NOT_IN):
        if spec.values is None:
            raise InvalidSearchError(f"operator {op.value!r} needs 'values' (a list)")
    elif spec.values is not None:
        raise InvalidSearchError(f"operator {op.value!r} takes 'value', not 'values'")
    elif spec.value is None and op not in (Operator.EQ, Operator.NEQ):
        raise InvalidSearchError(f"operator {op.value!r} needs a 'value'")
    if op is Operator.LIKE and not isinstance(spec.value, str):
        raise InvalidSearchError(f"operator 'like' needs a text value, not {spec.value!r}")
    return column, op


def check_sort(spec: SortSpec) -> tuple[str, bool]:
    """The column of a sort, and whether it is descending."""
    if spec.direction not in ("asc", "desc"):
        raise InvalidSearchError(f"unknown sort direction {spec.direction!r}: use asc or desc")
    return attribute_name(spec.parameter), spec.direction == "desc"


class Operator(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    NOT_IN = "not in"
    LIKE = "like"
    LT = "lt"
    GT = "gt"


Scalar = str | int | float | bool | None


class SearchSpec(BaseModel):
    """One filter: ``parameter operator value`` (``values`` for ``in`` and ``not in``).

    ``like`` takes SQL's wildcards: ``%`` any text, ``_`` one character (``\\%``,
    ``\\_`` match them literally); it is case-sensitive on every database.
    """

    parameter: str
    operator: str = Field(description="eq, neq, in, not in, like, lt or gt")
    value: Scalar = None
    # bound parameters are limited (SQLite: 32 766 per statement, asyncpg: 32 767)
    values: list[Scalar] | None = Field(default=None, max_length=MAX_VALUES)


class SortSpec(BaseModel):
    parameter: str
    direction: str = Field(default="asc", description="asc or desc")


class JobSearchRequest(BaseModel):
    """``POST /api/jobs/search``: the attributes to return (all if none), filters, order."""

    parameters: list[str] | None = Field(default=None, max_length=100)
    search: list[SearchSpec] = Field(default=[], max_length=MAX_FILTERS)
    sort: list[SortSpec] = Field(default=[], max_length=20)


class JobSummaryRequest(BaseModel):
    """``POST /api/jobs/summary``: count the jobs matching *search*, grouped by attributes."""

    grouping: list[str] = Field(min_length=1, max_length=10)
    search: list[SearchSpec] = Field(default=[], max_length=MAX_FILTERS)


class JobSearchPage(BaseModel):
    """One page of a search: the rows, and where they sit among all matches."""

    jobs: list[dict[str, Any]]
    total: int
    first: int  # index of the first row among the matches (0-based)


class JobStatusUpdate(BaseModel):
    """A status change asked for one job (DIRAC's field names)."""

    Status: JobStatus | None = Field(
        default=None, description="the new status (none: only the minor status changes)"
    )
    MinorStatus: str | None = Field(default=None, max_length=512)
    Source: str = Field(default="user", min_length=1, max_length=64)

    @field_validator("MinorStatus", "Source")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        why = text_problem(value) if value is not None else None
        if why:
            raise ValueError(f"the text {why}")
        return value


class JobStatusResult(BaseModel):
    status: JobStatus
    minor_status: str


class JobStatusUpdateResponse(BaseModel):
    """Per job id: the status it now has, or why nothing changed."""

    success: dict[int, JobStatusResult] = {}
    failed: dict[int, str] = {}


class JobActionResponse(BaseModel):
    """What a delete or a reschedule did to a job."""

    id: int
    status: JobStatus
    minor_status: str


# -- heartbeats (PATCH /api/jobs/heartbeat) ------------------------------------------------

MAX_HEARTBEATS = 10_000  # jobs in one heartbeat request
# What a pilot reports with a heartbeat (DIRAC's LoadAverage, MemoryUsed, CPUConsumed...):
# accepted for compatibility, not kept: only the heartbeat's time is.
HeartbeatData = dict[str, float | int | str | bool | None]


class JobHeartbeatResponse(BaseModel):
    """The jobs whose heartbeat was recorded, and why the others were not."""

    success: list[int] = []
    failed: dict[int, str] = {}
