from enum import StrEnum


class ListPipelinesStatusType0(StrEnum):
    DONE = "Done"
    FAILED = "Failed"
    RUNNING = "Running"

    def __str__(self) -> str:
        return str(self.value)
