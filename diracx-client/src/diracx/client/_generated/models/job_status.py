from enum import StrEnum


class JobStatus(StrEnum):
    CHECKING = "Checking"
    COMPLETING = "Completing"
    DELETED = "Deleted"
    DONE = "Done"
    FAILED = "Failed"
    KILLED = "Killed"
    MATCHED = "Matched"
    RECEIVED = "Received"
    RESCHEDULED = "Rescheduled"
    RUNNING = "Running"
    STALLED = "Stalled"
    WAITING = "Waiting"

    def __str__(self) -> str:
        return str(self.value)
