"""PipelineDB within VOs: reuse, live jobs and claims per VO; the running-jobs check under
concurrent submissions (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from diracx.core.exceptions import ForbiddenError, ObjectNotFoundError
from diracx.db.pipelines import Actor, BuildFailure, PipelineDB

from .test_pipelines import db, drv, submission, success  # noqa: F401  (db: a fixture)


class Refused(Exception):
    pass


def admit_up_to(limit: int):  # type: ignore[no-untyped-def]
    def admit(running: int, adding: int) -> None:
        if adding and running + adding > limit:
            raise Refused(f"{running} + {adding} > {limit}")

    return admit


async def test_realizations_and_live_jobs_are_per_vo(db: PipelineDB) -> None:  # noqa: F811
    a = drv("a")
    b = drv("b", a)
    lhcb = await db.submit("bob", *submission(a, b), vo="lhcb")
    dteam = await db.submit("carol", *submission(a, b), vo="dteam")
    lhcb_jobs = {s.name: s.job_id for s in lhcb.pipeline.stages}
    dteam_jobs = {s.name: s.job_id for s in dteam.pipeline.stages}
    assert set(lhcb_jobs.values()).isdisjoint(dteam_jobs.values())  # no cross-VO join
    [job] = await db.claim([lhcb_jobs["a"]], "w", start=True)
    built = success(job, "1" * 64)
    finished = await db.finish("w", [built], [])
    assert finished.released == [lhcb_jobs["b"]]
    assert [r.rref for r in await db.realizations_of(a.dref, vo="lhcb")] == [built.rref]
    assert await db.realizations_of(a.dref, vo="dteam") == []
    assert await db.get_realization(built.rref, vo="dteam") is None
    plan = await db.plan(*submission(a)[:1], vo="dteam")
    assert [s.action for s in plan.stages] == ["join"]  # its own live job, not lhcb's result
    # dteam's b, claimed after its a is built with another output (non-deterministic),
    # gets dteam's realization as input: lhcb's is not considered ("only" sees one)
    [job] = await db.claim([dteam_jobs["a"]], "w", start=True)
    other = success(job, "2" * 64)
    await db.finish("w", [other], [])
    [job_b] = await db.claim([dteam_jobs["b"]], "w", start=True)
    assert job_b.inputs["in0"].rref == other.rref and not job_b.input_errors


async def test_reads_and_actions_are_scoped(db: PipelineDB) -> None:  # noqa: F811
    outcome = await db.submit("bob", *submission(drv("a")), vo="lhcb")
    pid = outcome.pipeline.id
    [jid] = outcome.ready
    assert await db.get_pipeline(pid, vo="dteam") is None
    assert await db.get_job(jid, vo="dteam") is None
    assert await db.pipeline_events(pid, vo="dteam") is None
    assert (await db.get_job(jid, vo="lhcb")) is not None
    assert await db.kill_pipeline(pid, actor=Actor("dteam", "carol", vo_admin=True)) is None
    with pytest.raises(ObjectNotFoundError, match=f"job {jid} does not exist"):
        await db.kill_jobs([jid], actor=Actor("dteam", "carol", vo_admin=True))
    with pytest.raises(ForbiddenError, match="VOAdmin"):
        await db.kill_jobs([jid], actor=Actor("lhcb", "alice"))
    killed = await db.kill_jobs([jid], actor=Actor("lhcb", "alice", vo_admin=True))
    assert killed.killed == [jid]


async def test_finish_claims_blobs_and_logs_for_the_jobs_vo(db: PipelineDB) -> None:  # noqa: F811
    ok, bad = drv("ok"), drv("bad")
    outcome = await db.submit("bob", *submission(ok), vo="lhcb")
    failing = await db.submit("bob", *submission(bad), vo="lhcb")
    claimed = await db.claim([*outcome.ready, *failing.ready], "w", start=True)
    by_name = {c.derivation.name: c for c in claimed}
    built = success(by_name["ok"], "3" * 64)
    built = type(built)(**{**built.__dict__, "blobs": {"3" * 64: 10, "4" * 64: 5}})
    failed = BuildFailure(by_name["bad"].id, "exit status 1", "5" * 64, {"5" * 64: 7})
    await db.finish("w", [built], [failed])
    assert await db.visible_blobs("lhcb", ["3" * 64, "4" * 64, "5" * 64, "6" * 64]) == {
        "3" * 64,
        "4" * 64,
        "5" * 64,
    }
    assert await db.vo_store_bytes("lhcb") == 22
    assert await db.visible_blobs("dteam", ["3" * 64]) == set()


async def test_running_jobs_check_holds_under_concurrent_submissions(
    db: PipelineDB,  # noqa: F811
    db_url: str,
) -> None:
    """Eight services each submit a new one-job pipeline of the same VO at the same
    instant, with room for three: exactly three pass (on PostgreSQL a lock per VO
    serializes the counts; SQLite has one writer)."""
    services = [PipelineDB.from_url(db_url) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(
                s.submit("bob", *submission(drv(f"s{i}")), vo="lhcb", admit=admit_up_to(3))
                for i, s in enumerate(services)
            ),
            return_exceptions=True,
        )
    finally:
        for service in services:
            await service.close()
    refused = [r for r in results if isinstance(r, Refused)]
    passed = [r for r in results if not isinstance(r, BaseException)]
    assert (len(passed), len(refused)) == (3, 5), results
    assert await db.running_jobs("lhcb") == 3
    # another VO is counted apart
    await db.submit("carol", *submission(drv("x")), vo="dteam", admit=admit_up_to(1))
