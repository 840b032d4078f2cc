"""Job options left out of the DRef (cache volumes, secret variables) and sealed secrets:
stored with the jobs a submission creates, given to the worker that claims, and the
secrets deleted as soon as the job ends."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from diracx.core.derivation import Derivation, DrvInput, PipelineSubmission, plan_order
from diracx.db.migrate import upgrade
from diracx.db.pipelines import BuildFailure, BuildSuccess, ClaimedJob, PipelineDB
from diracx.db.schema import job_secrets

LAYER = hashlib.sha256(b"a layer tree").hexdigest()
EMPTY_TREE = "0" * 64
EXTRA = {
    "caches": [{"path": "/cache", "name": "pip", "sharing": "shared"}],
    "secrets": [{"env": "TOKEN", "secret": "token"}],
}


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    database = PipelineDB.from_url(db_url)
    yield database
    await database.close()


def step(name: str, *after: Derivation, **builder: Any) -> Derivation:
    inputs: dict[str, Any] = {"layer_0": {"tree": LAYER}}
    inputs.update({f"layer_{i + 1}": DrvInput(drv=d.dref) for i, d in enumerate(after)})
    return Derivation(
        name=name,
        builder={"executor": "oci", "layers": list(inputs), "argv": ["sh", name], **builder},
        inputs=inputs,
    )


def ordered(*drvs: Derivation) -> tuple[list[tuple[str, Derivation]], list[str]]:
    sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[drvs[-1].dref])
    return plan_order(sub), sub.targets


async def sealed_rows(db: PipelineDB) -> int:
    def tx(conn: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(job_secrets)).scalar_one())

    return await db.engines.read(tx)


def success(job: ClaimedJob) -> BuildSuccess:
    now = datetime.now(UTC)
    context = {name: [r.rref] for name, r in job.inputs.items()}
    return BuildSuccess(job.id, job.dref, EMPTY_TREE, context, job.dref, None, now, now)


async def test_the_claiming_worker_gets_the_options_and_sealed_secrets(db: PipelineDB) -> None:
    a = step("a", **EXTRA)
    plain = step("a")
    assert a.dref == plain.dref  # what the DB stores as the derivation is the same
    order, targets = ordered(a)
    outcome = await db.submit(
        "me", order, targets, extras={a.dref: EXTRA}, secrets={a.dref: "SEALED"}
    )
    assert await sealed_rows(db) == 1
    [job] = await db.claim(outcome.ready, "w1", start=True)
    assert job.secrets == "SEALED"
    assert job.derivation.dref == a.dref
    spec = job.derivation.builder_spec()
    assert [c.name for c in spec.caches] == ["pip"] and spec.secret_names() == {"token"}
    await db.finish("w1", [success(job)], [])
    assert await sealed_rows(db) == 0


async def test_secrets_go_when_jobs_fail_or_are_killed(db: PipelineDB) -> None:
    a = step("a")
    b = step("b", a, **EXTRA)
    order, targets = ordered(a, b)
    outcome = await db.submit(
        "me", order, targets, extras={b.dref: EXTRA}, secrets={a.dref: "A", b.dref: "B"}
    )
    assert await sealed_rows(db) == 2
    [job_a] = await db.claim(outcome.ready, "w1", start=True)
    await db.finish("w1", [], [BuildFailure(job_a.id, "it broke", None)])
    assert await sealed_rows(db) == 0  # a failed, and b (its dependent) with it
    c = step("c", **EXTRA)
    order, targets = ordered(c)
    outcome = await db.submit("me", order, targets, secrets={c.dref: "C"})
    assert await sealed_rows(db) == 1
    await db.kill_jobs(outcome.ready)
    assert await sealed_rows(db) == 0


async def test_a_joined_job_keeps_the_first_submissions_secrets(db: PipelineDB) -> None:
    a = step("a", **EXTRA)
    order, targets = ordered(a)
    first = await db.submit("me", order, targets, secrets={a.dref: "FIRST"})
    second = await db.submit("me", order, targets, secrets={a.dref: "SECOND"})
    assert second.ready == [] and await sealed_rows(db) == 1
    [job] = await db.claim(first.ready, "w1", start=True)
    assert job.secrets == "FIRST"
