from enum import StrEnum


class MatcherKind(StrEnum):
    ALL = "all"
    BEST = "best"
    EXACT = "exact"
    LATEST = "latest"
    ONLY = "only"
    SOME = "some"

    def __str__(self) -> str:
        return str(self.value)
