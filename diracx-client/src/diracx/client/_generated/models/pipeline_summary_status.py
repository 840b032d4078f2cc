from enum import StrEnum


class PipelineSummaryStatus(StrEnum):
    DONE = "Done"
    FAILED = "Failed"
    RUNNING = "Running"

    def __str__(self) -> str:
        return str(self.value)
