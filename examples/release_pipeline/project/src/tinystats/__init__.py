"""tinystats: small descriptive statistics without dependencies."""

from __future__ import annotations

import math
from collections.abc import Sequence

__version__ = "1.0.0"


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean of a non-empty sequence."""
    if not values:
        raise ValueError("mean of an empty sequence")
    return math.fsum(values) / len(values)


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("median of an empty sequence")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def stdev(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator)."""
    if len(values) < 2:
        raise ValueError("stdev needs at least two values")
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def zscores(values: Sequence[float]) -> list[float]:
    """How many standard deviations each value lies from the mean."""
    m, s = mean(values), stdev(values)
    return [(v - m) / s for v in values]
