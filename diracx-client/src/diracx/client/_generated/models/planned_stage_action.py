from enum import StrEnum


class PlannedStageAction(StrEnum):
    BUILD = "build"
    ERROR = "error"
    JOIN = "join"
    REUSE = "reuse"

    def __str__(self) -> str:
        return str(self.value)
