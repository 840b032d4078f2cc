"""Job statuses follow DIRAC's table of legal transitions."""

from __future__ import annotations

import itertools

import pytest

from diracx.core.status import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    TRANSITIONS,
    JobStatus,
    is_legal_transition,
)

S = JobStatus


def test_every_status_is_live_or_final_and_has_a_row() -> None:
    assert set(JobStatus) == LIVE_STATUSES | FINAL_STATUSES
    assert not LIVE_STATUSES & FINAL_STATUSES
    assert set(TRANSITIONS) == set(JobStatus)
    assert {S.DONE, S.FAILED, S.KILLED, S.DELETED} == FINAL_STATUSES


def test_status_values_are_diracs_names() -> None:
    assert [s.value for s in JobStatus] == [
        "Received", "Checking", "Waiting", "Matched", "Running", "Completing",
        "Done", "Failed", "Killed", "Stalled", "Rescheduled", "Deleted",
    ]  # fmt: skip
    assert JobStatus("Waiting") is S.WAITING


@pytest.mark.parametrize(
    "path",
    [
        [S.RECEIVED, S.WAITING, S.MATCHED, S.RUNNING, S.COMPLETING, S.DONE, S.DELETED],
        [S.RECEIVED, S.CHECKING, S.WAITING, S.MATCHED, S.RUNNING, S.DONE],
        [S.RUNNING, S.STALLED, S.RESCHEDULED, S.WAITING],  # heartbeats stopped
        [S.RUNNING, S.STALLED, S.RUNNING],  # heartbeats came back
        [S.RUNNING, S.FAILED, S.RESCHEDULED, S.WAITING],
        [S.RESCHEDULED, S.CHECKING],
        [S.MATCHED, S.WAITING],  # a claim given back
    ],
)
def test_legal_paths(path: list[JobStatus]) -> None:
    for old, new in itertools.pairwise(path):
        assert is_legal_transition(old, new), f"{old} -> {new}"


@pytest.mark.parametrize("status", sorted(LIVE_STATUSES))
def test_any_live_status_can_be_killed(status: JobStatus) -> None:
    assert is_legal_transition(status, S.KILLED)


@pytest.mark.parametrize("status", [S.DONE, S.FAILED, S.KILLED])
def test_final_statuses_can_be_deleted(status: JobStatus) -> None:
    assert is_legal_transition(status, S.DELETED)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.RECEIVED, S.RUNNING),
        (S.WAITING, S.RUNNING),  # must be Matched (claimed) first
        (S.WAITING, S.DONE),
        (S.CHECKING, S.MATCHED),
        (S.DONE, S.RUNNING),
        (S.DONE, S.WAITING),
        (S.DONE, S.FAILED),
        (S.DONE, S.KILLED),
        (S.FAILED, S.WAITING),  # through Rescheduled
        (S.STALLED, S.WAITING),  # through Rescheduled
        (S.RESCHEDULED, S.RUNNING),
        (S.COMPLETING, S.RUNNING),
        (S.RUNNING, S.MATCHED),
        (S.RUNNING, S.WAITING),
    ],
)
def test_illegal_transitions(old: JobStatus, new: JobStatus) -> None:
    assert not is_legal_transition(old, new)


def test_deleted_is_the_end() -> None:
    assert all(not is_legal_transition(S.DELETED, s) for s in JobStatus)


def test_done_only_goes_to_deleted() -> None:
    assert {s for s in JobStatus if is_legal_transition(S.DONE, s)} == {S.DELETED}


def test_no_status_moves_to_itself_or_back_to_received() -> None:
    for status in JobStatus:
        assert not is_legal_transition(status, status)
        assert not is_legal_transition(status, S.RECEIVED)


def test_final_statuses_leave_only_to_rescheduled_or_deleted() -> None:
    for status in FINAL_STATUSES:
        assert TRANSITIONS[status] <= {S.RESCHEDULED, S.DELETED}


def test_every_status_is_reachable_from_received() -> None:
    seen, todo = {S.RECEIVED}, [S.RECEIVED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(JobStatus)
