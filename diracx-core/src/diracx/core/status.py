"""Job statuses and DIRAC's table of legal transitions."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    RECEIVED = "Received"
    CHECKING = "Checking"  # inputs not yet built
    WAITING = "Waiting"  # ready, queued
    MATCHED = "Matched"  # claimed by a worker
    RUNNING = "Running"
    COMPLETING = "Completing"  # uploading outputs
    DONE = "Done"
    FAILED = "Failed"
    KILLED = "Killed"
    STALLED = "Stalled"
    RESCHEDULED = "Rescheduled"
    DELETED = "Deleted"


S = JobStatus
FINAL_STATUSES = frozenset({S.DONE, S.FAILED, S.KILLED, S.DELETED})
LIVE_STATUSES = frozenset(
    {
        S.RECEIVED,
        S.CHECKING,
        S.WAITING,
        S.MATCHED,
        S.RUNNING,
        S.COMPLETING,
        S.STALLED,
        S.RESCHEDULED,
    }
)

# from -> the statuses it may move to (DIRAC's JobStatus state machine)
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.RECEIVED: frozenset({S.CHECKING, S.WAITING, S.FAILED, S.KILLED, S.DELETED}),
    S.CHECKING: frozenset({S.WAITING, S.FAILED, S.KILLED, S.DELETED}),
    S.WAITING: frozenset({S.MATCHED, S.FAILED, S.KILLED, S.DELETED, S.RESCHEDULED}),
    S.MATCHED: frozenset({S.RUNNING, S.WAITING, S.FAILED, S.KILLED, S.STALLED, S.RESCHEDULED}),
    S.RUNNING: frozenset({S.COMPLETING, S.DONE, S.FAILED, S.KILLED, S.STALLED, S.RESCHEDULED}),
    S.COMPLETING: frozenset({S.DONE, S.FAILED, S.KILLED, S.STALLED, S.RESCHEDULED}),
    S.STALLED: frozenset({S.RUNNING, S.FAILED, S.KILLED, S.RESCHEDULED}),
    S.RESCHEDULED: frozenset({S.WAITING, S.CHECKING, S.KILLED, S.DELETED}),
    S.DONE: frozenset({S.DELETED}),
    S.FAILED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.KILLED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.DELETED: frozenset(),
}


def is_legal_transition(old: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[old]
