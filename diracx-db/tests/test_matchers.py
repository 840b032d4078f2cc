"""Matchers, some(n) builds, force and the dry run in PipelineDB, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from diracx.core.config import LOCAL_VO
from diracx.core.derivation import (
    Derivation,
    DrvInput,
    Matcher,
    PipelineSubmission,
    plan_order,
    realization_ref,
)
from diracx.core.exceptions import ConflictError
from diracx.core.status import JobStatus
from diracx.db.migrate import upgrade
from diracx.db.pipeline_list import list_pipelines
from diracx.db.pipelines import BuildSuccess, ClaimedJob, PipelineDB


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    database = PipelineDB.from_url(db_url)
    yield database
    await database.close()


def drv(name: str, *inputs: Derivation, matcher: Matcher | None = None) -> Derivation:
    return Derivation(
        name=name,
        builder={"executor": "process", "argv": ["true", name]},
        inputs={f"in{i}": DrvInput(drv=d.dref) for i, d in enumerate(inputs)},
        matcher=matcher or Matcher(),
    )


def ordered(*drvs: Derivation) -> list[tuple[str, Derivation]]:
    sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[drvs[-1].dref])
    return plan_order(sub)


def out(i: int) -> str:
    return f"{i:064x}"


def success(job: ClaimedJob, output: str, **metrics: Any) -> BuildSuccess:
    context = job.context()
    now = datetime.now(UTC)
    rref = realization_ref(job.dref, context, output)
    return BuildSuccess(
        job.id, job.dref, output, context, rref, None, now, now, metrics, job.derivation.matcher
    )


async def build(db: PipelineDB, job_ids: list[int], output: str, **metrics: Any) -> Any:
    """Claim the one job, build it to *output*; the finish outcome."""
    [job] = await db.claim(job_ids, "w1", start=True)
    return job, await db.finish("w1", [success(job, output, **metrics)], [])


async def submit(db: PipelineDB, *drvs: Derivation, force: tuple[str, ...] = ()) -> Any:
    return await db.submit("me", ordered(*drvs), [drvs[-1].dref], force=force)


async def build_chain(db: PipelineDB, *drvs: Derivation) -> Any:
    """Submit a chain (each stage the input of the next) and build its stages in order,
    to out(1), out(2)...; the submission."""
    outcome = await submit(db, *drvs)
    ready = outcome.ready
    for i in range(len(drvs)):
        _, finished = await build(db, ready, out(i + 1))
        ready = finished.released
    return outcome


async def test_some_builds_until_n_distinct_then_reuses(db: PipelineDB) -> None:
    a = drv("a", matcher=Matcher.of("some", n=3))
    plan = await db.plan(ordered(a))
    assert (plan.stages[0].action, plan.stages[0].reason, plan.stages[0].builds) == (
        "build",
        "never built",
        3,
    )
    outcome = await submit(db, a)
    [job_id] = outcome.ready
    for i in (1, 2):
        _, finished = await build(db, [job_id], out(i))
        assert finished.released == [job_id]  # the same job builds again
        info = await db.get_job(job_id)
        assert info is not None and info.status == JobStatus.WAITING
        assert info.minor_status.startswith(f"Built {i} of 3")
        plan = await db.plan(ordered(a))
        assert plan.stages[0].action == "join"
        assert plan.stages[0].reason.startswith(f"matcher some(3): {i} of 3")
    _, finished = await build(db, [job_id], out(3))
    assert finished.released == []
    info = await db.get_job(job_id)
    assert info is not None and info.status == JobStatus.DONE and info.attempt == 3
    assert len(await db.realizations_of(a.dref)) == 3
    again = await submit(db, a)
    assert again.ready == [] and again.pipeline.counts == {"cached": 1}
    [stage] = (await db.plan(ordered(a))).stages
    assert stage.action == "reuse" and len(stage.rrefs) == 3


async def test_some_stops_on_a_deterministic_build(db: PipelineDB) -> None:
    a = drv("a", matcher=Matcher.of("some", n=5))
    outcome = await submit(db, a)
    [job_id] = outcome.ready
    _, finished = await build(db, [job_id], out(1))
    assert finished.released == [job_id]
    _, finished = await build(db, [job_id], out(1))  # the same RRef: not counted twice
    assert finished.released == []
    assert len(await db.realizations_of(a.dref)) == 1
    info = await db.get_job(job_id)
    assert info is not None and info.status == JobStatus.DONE


async def test_dependents_see_every_chosen_realization(db: PipelineDB) -> None:
    a = drv("a", matcher=Matcher.of("some", n=2))
    b = drv("b", a)
    outcome = await submit(db, a, b)
    [job_id] = outcome.ready
    first, _ = await build(db, [job_id], out(1))
    second, finished = await build(db, [job_id], out(2))
    [job_b] = await db.claim(finished.released, "w1", start=True)
    assert job_b.derivation.name == "b"
    rrefs = sorted(r.rref for r in job_b.choices["in0"])
    assert rrefs == sorted([success(first, out(1)).rref, success(second, out(2)).rref])
    assert job_b.context() == {"in0": rrefs}


async def test_only_conflict_shows_both_rrefs(db: PipelineDB) -> None:
    a = drv("a")
    b = drv("b", a)
    outcome = await submit(db, a, b)
    job, finished = await build(db, outcome.ready, out(1))
    first = success(job, out(1)).rref
    assert (await submit(db, a)).ready == []
    forced = await submit(db, a, force=(a.dref,))
    assert len(forced.ready) == 1
    job, _ = await build(db, forced.ready, out(2))  # not deterministic
    second = success(job, out(2)).rref
    with pytest.raises(ConflictError) as info:
        await submit(db, a)
    assert first in str(info.value) and second in str(info.value)
    [stage] = (await db.plan(ordered(a))).stages
    assert stage.action == "error" and first in stage.reason and second in stage.reason
    # b, released by the first build, cannot choose its input now: its build fails
    [job_b] = await db.claim(finished.released, "w1", start=True)
    assert job_b.inputs == {} and second in job_b.input_errors["in0"]


async def test_force_a_deterministic_build_adds_no_row(db: PipelineDB) -> None:
    a = drv("a")
    outcome = await submit(db, a)
    await build(db, outcome.ready, out(1))
    [stage] = (await db.plan(ordered(a), force=[a.dref])).stages
    assert (stage.action, stage.reason) == ("build", "forced")
    forced = await submit(db, a, force=(a.dref,))
    await build(db, forced.ready, out(1))
    assert len(await db.realizations_of(a.dref)) == 1
    assert (await submit(db, a)).ready == []


async def test_best_and_latest_choose_for_dependents(db: PipelineDB) -> None:
    best = drv("a", matcher=Matcher.of("best", n=1, metric="acc", mode="higher"))
    b = drv("b", best)
    outcome = await submit(db, best, b)
    built: dict[float, str] = {}
    job, finished = await build(db, outcome.ready, out(1), acc=0.5)
    built[0.5] = success(job, out(1)).rref
    for i, acc in ((2, 0.9), (3, 0.7)):
        forced = await submit(db, best, force=(best.dref,))
        job, _ = await build(db, forced.ready, out(i), acc=acc)
        built[acc] = success(job, out(i)).rref
    [job_b] = await db.claim(finished.released, "w1", start=True)
    # b's job was released by the first build; it takes the best of the three now
    assert job_b.inputs["in0"].rref == built[0.9] and job_b.choices == {}
    stages = (await db.plan(ordered(best, b))).stages
    assert stages[0].reason == f"cached (RRef {built[0.9][:12]}…)"
    assert stages[1].reason.startswith("never built (job ")  # b is running

    latest = drv("l", matcher=Matcher.of("latest", n=2))
    c = drv("c", latest)
    outcome = await submit(db, latest, c)
    _, finished = await build(db, outcome.ready, out(11))
    rrefs = []
    for i in (12, 13):
        forced = await submit(db, latest, force=(latest.dref,))
        job, _ = await build(db, forced.ready, out(i))
        rrefs.append(success(job, out(i)).rref)
    [job_c] = await db.claim(finished.released, "w1", start=True)
    assert [r.rref for r in job_c.choices["in0"]] == [rrefs[1], rrefs[0]]  # newest first


async def test_exact_and_all(db: PipelineDB) -> None:
    a = drv("a", matcher=Matcher.of("all"))
    outcome = await submit(db, a)
    job, _ = await build(db, outcome.ready, out(1))
    one = success(job, out(1)).rref
    forced = await submit(db, a, force=(a.dref,))
    job, _ = await build(db, forced.ready, out(2))
    two = success(job, out(2)).rref
    [stage] = (await db.plan(ordered(a))).stages
    assert stage.action == "reuse" and stage.rrefs == [one, two]

    pinned = drv("a", matcher=Matcher.of("exact", rrefs=[two]))
    user = drv("u", pinned)
    plan = await db.plan(ordered(pinned, user))
    assert plan.stages[0].action == "reuse" and plan.stages[0].rrefs == [two]
    outcome = await submit(db, pinned, user)
    [job_u] = await db.claim(outcome.ready, "w1", start=True)
    assert job_u.inputs["in0"].rref == two and job_u.context() == {"in0": [two]}

    other = drv("other", matcher=Matcher.of("exact", rrefs=[two]))  # not a realization of it
    plan = await db.plan(ordered(other))
    assert plan.stages[0].action == "error" and two in plan.stages[0].reason
    with pytest.raises(ConflictError):
        await submit(db, other)


async def test_plan_records_nothing_and_explains_inputs(db: PipelineDB) -> None:
    a = drv("a", matcher=Matcher.of("latest", n=1))
    b = drv("b", a)
    await build_chain(db, a, b)
    plan = await db.plan(ordered(a, b))
    assert [s.action for s in plan.stages] == ["reuse", "reuse"]
    assert (plan.reuse, plan.build) == (2, 0)
    plan = await db.plan(ordered(a, b), force=[a.dref])
    assert [(s.action, s.reason) for s in plan.stages] == [
        ("build", "forced"),
        ("build", "input 'in0' is rebuilt (reused if unchanged)"),
    ]
    forced = await submit(db, a, force=(a.dref,))
    await build(db, forced.ready, out(3))  # a new realization of a: the latest
    plan = await db.plan(ordered(a, b))
    assert [(s.action, s.reason) for s in plan.stages][1] == ("build", "input 'in0' changed")
    pipelines_before = (await db.get_pipeline(forced.pipeline.id + 1)) is None
    assert pipelines_before  # the dry runs recorded no pipeline


async def test_an_input_rebuilt_the_same_builds_nothing_after_it(db: PipelineDB) -> None:
    """Early cutoff: a forced rebuild of a deterministic stage gives the RRef it gave
    before; its dependents, and theirs, are reused as they were, not built again."""
    a = drv("a")
    b = drv("b", a)
    c = drv("c", b)
    first = await build_chain(db, a, b, c)
    built = await db.get_pipeline(first.pipeline.id)
    assert built is not None and built.counts == {"Done": 3}

    forced = await submit(db, a, b, c, force=(a.dref,))
    assert len(forced.ready) == 1  # a; b and c wait for it
    _, done = await build(db, forced.ready, out(1))  # the same output: the same RRef
    assert done.released == [] and done.claimed == []
    info = await db.get_pipeline(forced.pipeline.id)
    assert info is not None and info.status == "Done"
    assert info.counts == {"Done": 1, "cached": 2}
    stages = {s.name: s for s in info.stages}
    assert [stages[n].cached for n in "abc"] == [False, True, True]
    assert {s.name: s.rref for s in info.stages} == {s.name: s.rref for s in built.stages}
    for d in (b, c):
        assert len(await db.realizations_of(d.dref)) == 1
    job_b = await db.get_job(stages["b"].job_id or 0)
    assert job_b is not None and job_b.status == JobStatus.DONE
    assert job_b.minor_status.startswith("Reused")
    [summary] = (await list_pipelines(db.engines, vo=LOCAL_VO, limit=1)).pipelines
    assert summary.counts == {"Done": 1, "cached": 2} and summary.status == "Done"


async def test_a_forced_stage_and_a_changed_input_are_built(db: PipelineDB) -> None:
    """Early cutoff spares neither a stage forced itself nor one whose input changed."""
    a = drv("a", matcher=Matcher.of("latest", n=1))
    b = drv("b", a)
    await build_chain(db, a, b)

    both = await submit(db, a, b, force=(a.dref, b.dref))
    _, done = await build(db, both.ready, out(1))  # a as it was, but b is forced itself
    [job_b] = await db.claim(done.released, "w1", start=True)
    assert job_b.derivation.name == "b"
    await db.finish("w1", [success(job_b, out(2))], [])

    changed = await submit(db, a, b, force=(a.dref,))
    _, done = await build(db, changed.ready, out(9))  # a new realization of a: latest
    [job_b] = await db.claim(done.released, "w1", start=True)
    assert job_b.inputs["in0"].output == out(9)
    await db.finish("w1", [success(job_b, out(2))], [])
    assert len(await db.realizations_of(b.dref)) == 2  # built from out(1), and from out(9)
