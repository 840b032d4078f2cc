"""The pure plan of a garbage collection (diracx.core.gc)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diracx.core.gc import BlobFacts, RealizationFacts, check_pin_name, closure, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def chain(n: int) -> dict[str, RealizationFacts]:
    """r0 <- r1 <- ... (each built from the previous one), one blob each."""
    return {
        f"r{i}": RealizationFacts(
            rref=f"r{i}",
            stage=f"s{i}",
            created=T0 + timedelta(seconds=i),
            inputs=frozenset({f"r{i - 1}"} if i else ()),
            blobs=frozenset({f"b{i}"}),
        )
        for i in range(n)
    }


def store_of(rows: dict[str, RealizationFacts], size: int = 10) -> dict[str, BlobFacts]:
    return {b: BlobFacts(size, 0.0) for f in rows.values() for b in f.blobs}


def test_closure_of_a_deep_chain() -> None:
    rows = chain(20_000)  # no recursion: a deep chain is fine
    assert len(closure(["r19999"], {r: f.inputs for r, f in rows.items()})) == 20_000


def test_what_was_built_from_a_realization_goes_before_it() -> None:
    rows = chain(5)
    result = plan(rows, [], [], store_of(rows), blob_cutoff=1.0, row_cutoff=T0 + timedelta(days=1))
    assert [f.rref for f in result.realizations] == ["r4", "r3", "r2", "r1", "r0"]
    # with a target, the newest goes first and what stays keeps its whole closure
    result = plan(
        rows,
        [],
        [],
        store_of(rows),
        blob_cutoff=1.0,
        row_cutoff=T0 + timedelta(days=1),
        target_size=30,
    )
    assert [f.rref for f in result.realizations] == ["r4", "r3"]
    assert result.freed == 20 and result.target_met


def test_roots_young_rows_and_young_blobs_stay() -> None:
    rows = chain(3)
    store = {**store_of(rows), "orphan": BlobFacts(5, 0.0), "fresh": BlobFacts(5, 100.0)}
    result = plan(rows, ["r1"], [], store, blob_cutoff=50.0, row_cutoff=T0 + timedelta(seconds=1.5))
    # r1 is a root (with r0, its input); r2 is younger than the grace period
    assert result.realizations == [] and result.blobs == ["orphan"] and result.young_blobs == 1


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a b", "-x", "x" * 256, "a\n"])
def test_bad_pin_names(name: str) -> None:
    with pytest.raises(ValueError, match="pin name"):
        check_pin_name(name)
