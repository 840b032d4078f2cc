"""VO isolation and quotas of pipelines and jobs, with real tokens, on SQLite and PostgreSQL.

Two VOs and three users (the conftest's, ``quota_vo_config``): alice and bob in lhcb
(alice logs in as ``lhcb_admin``, a VOAdmin, or as ``lhcb_user``), carol in dteam; and
dave, alone in the VO ``limited``, for the quotas. A user of one VO never sees or acts
on the other's pipelines and jobs: every such request answers exactly as one about an
id that does not exist. Within a VO, users act only on their own jobs unless VOAdmin.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import ByteSize

from diracx.core.config import Config
from diracx.core.derivation import (
    Derivation,
    Matcher,
    Scheduling,
    TreeInput,
    realization_ref,
)
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, TreeEntry
from diracx.db.pipelines import BuildSuccess, PipelineDB

from .conftest import LIMITED, STORE_BYTES, User, quota_vo_config
from .test_pipelines import command, submission


@pytest.fixture
def app_config() -> Config:
    """The conftest's service, with the VOs of its users (``quota_vo_config``)."""
    return quota_vo_config()


def job_ids(pipeline: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["job_id"] for s in pipeline["stages"]}


def build(
    client: TestClient,
    db: PipelineDB,
    store: LocalStore,
    job_ids: list[int],
    files: dict[str, bytes] | None = None,
) -> list[BuildSuccess]:
    """Act as a worker: claim the jobs, store an output of *files* for each and record it
    with the blobs the worker reports (``runtime.output_blobs``)."""
    from diracx.tasks.runtime import output_blobs

    tree = Tree(
        {p: TreeEntry("file", store.put_bytes(b), len(b)) for p, b in (files or {}).items()}
    )
    store.put_bytes(tree.manifest_bytes())
    assert client.portal is not None
    claimed = client.portal.call(functools.partial(db.claim, job_ids, "test-worker", start=True))
    assert sorted(c.id for c in claimed) == sorted(job_ids)
    now = datetime.now(UTC)
    successes = [
        BuildSuccess(
            job_id=job.id,
            dref=job.dref,
            output=tree.digest,
            context=job.context(),
            rref=realization_ref(job.dref, job.context(), tree.digest),
            log=None,
            started=now,
            finished=now,
            blobs=output_blobs(tree),
        )
        for job in claimed
    ]
    client.portal.call(db.finish, "test-worker", successes, [])
    return successes


def same_answer(theirs: Response, none: Response, their_id: object, none_id: object) -> None:
    """*theirs* (about another VO's object) answers exactly as *none* (about an id that
    does not exist): same status, same body once the ids are swapped."""
    assert theirs.status_code == none.status_code, (theirs.text, none.text)
    assert theirs.text.replace(str(their_id), "ID") == none.text.replace(str(none_id), "ID")


# -- isolation between VOs -------------------------------------------------------------


def test_another_vo_cannot_see_or_touch_a_pipeline_or_its_jobs(
    bob: User, carol: User, chain: list[Derivation]
) -> None:
    pipeline = bob.submit(*chain)
    pid, ids = pipeline["id"], job_ids(pipeline)
    jid = ids["a"]
    absent_pipeline, absent_job = pid + 1000, max(ids.values()) + 1000
    # bob sees his own
    assert bob.get(f"/api/pipelines/{pid}").json()["owner"] == "bob"
    assert bob.get(f"/api/jobs/{jid}").status_code == 200

    for method, path, kwargs in [
        ("GET", "/api/pipelines/{p}", {}),
        ("GET", "/api/pipelines/{p}/events", {}),
        ("POST", "/api/pipelines/{p}/kill", {}),
    ]:
        theirs = carol.request(method, path.format(p=pid), **kwargs)
        none = carol.request(method, path.format(p=absent_pipeline), **kwargs)
        assert theirs.status_code == 404
        assert theirs.json() == {"detail": f"pipeline {pid} does not exist"}
        same_answer(theirs, none, pid, absent_pipeline)
    for method, path in [
        ("GET", "/api/jobs/{j}"),
        ("GET", "/api/jobs/{j}/history"),
        ("POST", "/api/jobs/{j}/kill"),
        ("POST", "/api/jobs/{j}/reschedule"),
        ("DELETE", "/api/jobs/{j}"),
    ]:
        theirs = carol.request(method, path.format(j=jid))
        none = carol.request(method, path.format(j=absent_job))
        assert theirs.status_code == 404
        assert theirs.json() == {"detail": f"job {jid} does not exist"}
        same_answer(theirs, none, jid, absent_job)
    theirs = carol.request("PATCH", "/api/jobs/status", json={str(jid): {"Status": "Killed"}})
    none = carol.request("PATCH", "/api/jobs/status", json={str(absent_job): {"Status": "Killed"}})
    assert theirs.status_code == 200
    assert theirs.json() == {"success": {}, "failed": {str(jid): f"job {jid} does not exist"}}
    same_answer(theirs, none, jid, absent_job)

    # searches: nothing of lhcb, whatever the filters say
    assert carol.search({}) == []
    assert carol.search({"search": [{"parameter": "id", "operator": "eq", "value": jid}]}) == []
    assert carol.search({"search": [{"parameter": "VO", "operator": "eq", "value": "lhcb"}]}) == []
    summary = carol.post("/api/jobs/summary", json={"grouping": ["status"]})
    assert summary.status_code == 200 and summary.json() == []
    # ... and bob's jobs are untouched
    assert {j["status"] for j in bob.search({})} == {"Waiting", "Checking"}
    assert bob.get(f"/api/jobs/{jid}").json()["history"][-1]["status"] == "Waiting"


def test_searches_and_summaries_are_per_vo(
    alice: User, bob: User, carol: User, chain: list[Derivation]
) -> None:
    bob.submit(*chain)
    alice.submit(command("alone", "echo", "alice"))
    carol.submit(*chain)  # the same derivations: dteam's own jobs
    lhcb = bob.search({"sort": [{"parameter": "id", "direction": "asc"}]})
    assert [(j["name"], j["vo"], j["owner"]) for j in lhcb] == [
        ("a", "lhcb", "bob"),
        ("b", "lhcb", "bob"),
        ("c", "lhcb", "bob"),
        ("alone", "lhcb", "alice"),
    ]
    assert alice.search({}) == lhcb  # the same VO sees the same jobs
    dteam = carol.search({"parameters": ["name", "vo", "owner"]})
    assert sorted((j["name"], j["vo"], j["owner"]) for j in dteam) == [
        ("a", "dteam", "carol"),
        ("b", "dteam", "carol"),
        ("c", "dteam", "carol"),
    ]
    mine = bob.search({"search": [{"parameter": "Owner", "operator": "eq", "value": "alice"}]})
    assert [j["name"] for j in mine] == ["alone"]
    counts = bob.post("/api/jobs/summary", json={"grouping": ["owner", "status"]}).json()
    assert counts == [
        {"owner": "alice", "status": "Waiting", "count": 1},
        {"owner": "bob", "status": "Checking", "count": 2},
        {"owner": "bob", "status": "Waiting", "count": 1},
    ]
    page = bob.post("/api/jobs/search", json={}, params={"per_page": 2})
    assert page.status_code == 206 and page.headers["Content-Range"] == "jobs 0-1/4"


# -- within a VO: owners and VOAdmins ---------------------------------------------------


def test_a_user_acts_only_on_their_own_jobs_unless_vo_admin(
    client: TestClient,
    alice: User,
    alice_user: User,
    bob: User,
    pipeline_db: PipelineDB,
    chain: list[Derivation],
) -> None:
    pipeline = bob.submit(*chain)
    pid, ids = pipeline["id"], job_ids(pipeline)
    # alice, without VOAdmin, reads bob's jobs but may not act on them
    assert alice_user.get(f"/api/jobs/{ids['a']}").status_code == 200
    assert alice_user.get(f"/api/pipelines/{pid}/events").status_code == 200
    refusal = (
        "belongs to user 'bob': only its owner or a user with the VOAdmin property may {verb} it"
    )
    for method, path, verb in [
        ("POST", f"/api/jobs/{ids['a']}/kill", "kill"),
        ("POST", f"/api/jobs/{ids['a']}/reschedule", "reschedule"),
        ("DELETE", f"/api/jobs/{ids['a']}", "delete"),
        ("POST", f"/api/pipelines/{pid}/kill", "kill"),
    ]:
        r = alice_user.request(method, path)
        assert r.status_code == 403, r.text
        what = f"pipeline {pid}" if "pipelines" in path else f"job {ids['a']}"
        assert r.json()["detail"] == f"{what} {refusal.format(verb=verb)}"
    r = alice_user.request("PATCH", "/api/jobs/status", json={str(ids["a"]): {"Status": "Killed"}})
    assert r.status_code == 200
    assert r.json()["failed"] == {
        str(ids["a"]): f"job {ids['a']} {refusal.format(verb='change the status of')}"
    }
    assert bob.get(f"/api/jobs/{ids['a']}").json()["status"] == "Waiting"  # untouched

    # alice as a VOAdmin may: kill, reschedule, change the status, delete
    r = alice.post(f"/api/jobs/{ids['a']}/kill")
    assert r.status_code == 200, r.text
    assert r.json() == {"killed": [ids["a"]], "failed": sorted([ids["b"], ids["c"]])}
    assert bob.get(f"/api/jobs/{ids['a']}").json()["minor_status"] == "Killed by alice"
    r = alice.post(f"/api/jobs/{ids['a']}/reschedule")
    assert r.status_code == 200 and r.json()["status"] == "Waiting", r.text
    r = alice.request("PATCH", "/api/jobs/status", json={str(ids["a"]): {"Status": "Killed"}})
    assert r.json()["success"] == {
        str(ids["a"]): {"status": "Killed", "minor_status": "Rescheduled by alice"}
    }
    assert alice.request("DELETE", f"/api/jobs/{ids['a']}").json()["status"] == "Deleted"

    # bob acts on his own without VOAdmin
    other = bob.submit(command("mine", "echo", "bob"))
    r = bob.post(f"/api/pipelines/{other['id']}/kill")
    assert r.status_code == 200 and r.json()["killed"] == [job_ids(other)["mine"]]


def test_killing_a_pipeline_spares_another_users_joined_jobs(
    alice: User, alice_user: User, bob: User, chain: list[Derivation]
) -> None:
    theirs = bob.submit(*chain)
    joined = alice_user.submit(*chain)  # the same derivations: bob's live jobs are joined
    assert job_ids(joined) == job_ids(theirs)
    assert alice_user.get(f"/api/pipelines/{joined['id']}").json()["owner"] == "alice"
    r = alice_user.post(f"/api/pipelines/{joined['id']}/kill")
    assert r.status_code == 409
    spared = ", ".join(str(j) for j in sorted(job_ids(theirs).values()))
    assert r.json()["detail"] == (
        f"pipeline {joined['id']} has no live job of yours to kill: job(s) {spared} it shares "
        "with another user's pipeline are left running (only their owner or a user with the "
        "VOAdmin property may kill them)"
    )
    assert {j["status"] for j in bob.search({})} == {"Waiting", "Checking"}
    r = alice.post(f"/api/pipelines/{joined['id']}/kill")  # a VOAdmin kills them
    assert r.status_code == 200 and r.json()["killed"] == sorted(job_ids(theirs).values())


# -- reuse and dedup are per VO ----------------------------------------------------------


def test_reuse_and_live_jobs_are_per_vo(
    client: TestClient,
    bob: User,
    carol: User,
    pipeline_db: PipelineDB,
    store: LocalStore,
    chain: list[Derivation],
) -> None:
    a = chain[0]
    first = bob.submit(a)
    # a live job of lhcb is not joined by dteam: dteam builds it itself
    carol_first = carol.submit(a)
    assert job_ids(carol_first)["a"] != job_ids(first)["a"]
    [lhcb_built] = build(client, pipeline_db, store, [job_ids(first)["a"]], {"out": b"same"})
    rref = lhcb_built.rref

    again = bob.submit(a)  # lhcb reuses its realization
    assert again["stages"][0]["cached"] and again["stages"][0]["rref"] == rref
    # dteam is not offered lhcb's: its plan and its submission build
    plan = carol.post("/api/pipelines/plan", json=submission(a)).json()
    assert [(s["action"], s["rrefs"]) for s in plan["stages"]] == [("join", [])]
    assert carol.submit(a)["stages"][0]["job_id"] == job_ids(carol_first)["a"]
    # the deterministic rebuild in dteam: the same RRef, now dteam's too
    [dteam_built] = build(client, pipeline_db, store, [job_ids(carol_first)["a"]], {"out": b"same"})
    assert dteam_built.rref == rref
    cached = carol.submit(a)
    assert cached["stages"][0]["cached"] and cached["stages"][0]["rref"] == rref

    # an exact matcher naming another VO's realization: as if it did not exist
    pinned = command("p", "echo", "pinned")
    [p_built] = build(client, pipeline_db, store, [job_ids(bob.submit(pinned))["p"]])
    exact = command("p", "echo", "pinned", matcher=Matcher.of("exact", rrefs=[p_built.rref]))
    ghost = command("p", "echo", "pinned", matcher=Matcher.of("exact", rrefs=["e" * 64]))
    assert bob.submit(exact)["stages"][0]["rref"] == p_built.rref
    theirs = carol.post("/api/pipelines", json=submission(exact))
    none = carol.post("/api/pipelines", json=submission(ghost))
    assert theirs.status_code == 409 and p_built.rref in theirs.json()["detail"]
    assert theirs.json()["detail"].replace(p_built.rref, "R") == none.json()["detail"].replace(
        "e" * 64, "R"
    )


def test_finish_gives_the_jobs_vo_its_claims(
    client: TestClient,
    bob: User,
    carol: User,
    pipeline_db: PipelineDB,
    store: LocalStore,
) -> None:
    pipeline = bob.submit(command("maker", "echo", "made"))
    [made] = build(client, pipeline_db, store, [job_ids(pipeline)["maker"]], {"f": b"x" * 10})
    assert client.portal is not None
    visible = client.portal.call(pipeline_db.visible_blobs, "lhcb", list(made.blobs))
    assert visible == set(made.blobs) and made.output in visible
    assert client.portal.call(pipeline_db.vo_store_bytes, "lhcb") == sum(made.blobs.values())
    assert client.portal.call(pipeline_db.visible_blobs, "dteam", list(made.blobs)) == set()
    # lhcb builds on its output; dteam may not, as if the tree did not exist
    uses = command("uses", inputs={"in": TreeInput(tree=made.output)})
    assert bob.post("/api/pipelines", json=submission(uses)).status_code == 201
    theirs = carol.post("/api/pipelines", json=submission(uses))
    ghost = command("uses", inputs={"in": TreeInput(tree="f" * 64)})
    none = carol.post("/api/pipelines", json=submission(ghost))
    assert theirs.status_code == 400
    assert theirs.json()["detail"] == (
        f"stage 'uses' input 'in': blob {made.output} (its tree) is not in your VO's store: "
        "upload it first"
    )
    same_answer(theirs, none, made.output, "f" * 64)


def test_blobs_uploaded_by_another_vo_must_be_uploaded_again(bob: User, carol: User) -> None:
    data = b"lhcb's data\n"
    blob = bob.upload(data)
    tree = Tree({"data.txt": TreeEntry("file", blob, len(data))})
    bob.upload(tree.manifest_bytes())
    stage = command("read", "cat", "inputs/in/data.txt", inputs={"in": TreeInput(tree=tree.digest)})
    assert bob.post("/api/pipelines", json=submission(stage)).status_code == 201
    r = carol.post("/api/pipelines", json=submission(stage))
    assert r.status_code == 400
    assert f"blob {tree.digest} (its tree) is not in your VO's store" in r.json()["detail"]
    carol.upload(tree.manifest_bytes())  # the tree, but not the file it lists
    r = carol.post("/api/pipelines", json=submission(stage))
    assert r.status_code == 400
    assert r.json()["detail"] == (
        f"stage 'read' input 'in': blob {blob} ('data.txt' in tree {tree.digest}) is not in "
        "your VO's store: upload it first"
    )
    carol.upload(data)  # proving she has the bytes
    assert carol.post("/api/pipelines", json=submission(stage)).status_code == 201


# -- quotas and allowed executors and queues ----------------------------------------------


def test_running_jobs_quota(dave: User, chain: list[Derivation]) -> None:
    pipeline = dave.submit(*chain)  # 3 live jobs: the quota
    one_more = command("more", "echo", "more")
    r = dave.post("/api/pipelines", json=submission(one_more))
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "VO 'limited' may run 3 jobs at once; 3 are running and this pipeline adds 1: wait "
        "for some to finish or ask your VO admin to raise quotas.running_jobs"
    )
    assert dave.search({"search": [{"parameter": "name", "operator": "eq", "value": "more"}]}) == []
    assert job_ids(dave.submit(*chain)) == job_ids(pipeline)  # joins them all: adds none
    ids = job_ids(pipeline)
    assert dave.post(f"/api/jobs/{ids['a']}/kill").status_code == 200  # a killed, b, c fail
    done = dave.submit(one_more, command("two", "echo", "2"), command("three", "echo", "3"))
    assert len(done["stages"]) == 3
    r = dave.post(f"/api/jobs/{ids['a']}/reschedule")  # it would be a 4th
    assert r.status_code == 403
    assert r.json()["detail"].startswith(
        "VO 'limited' may run 3 jobs at once; 3 are running and rescheduling it adds 1"
    )


def test_store_bytes_quota(
    client: TestClient, dave: User, pipeline_db: PipelineDB, store: LocalStore
) -> None:
    first = dave.submit(command("big", "echo", "big"))
    build(client, pipeline_db, store, [job_ids(first)["big"]], {"big": b"x" * 2 * STORE_BYTES})
    r = dave.post("/api/pipelines", json=submission(command("next", "echo", "next")))
    assert r.status_code == 403
    detail = r.json()["detail"]
    used = client.portal.call(pipeline_db.vo_store_bytes, LIMITED)  # type: ignore[union-attr]
    assert used > 2 * STORE_BYTES
    assert detail.startswith(
        f"VO 'limited' stores {ByteSize(used).human_readable()} ({used} bytes)"
    )
    assert ", over its quota of 1000B (1000 bytes): " in detail
    assert detail.endswith(
        "unpin what it no longer needs and collect garbage, or ask your VO admin to raise "
        "quotas.store_bytes"
    )


def test_allowed_executors_and_queues(dave: User, carol: User) -> None:
    python = Derivation(
        name="py", builder={"executor": "python", "function": "mod:fn", "source": "9" * 64}
    )
    r = dave.post("/api/pipelines", json=submission(command("ok"), python))
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "stage 'py' uses the executor 'python', which VO 'limited' may not use (allowed: "
        "process): use one of those, or ask your VO admin to add it to executors"
    )
    gpu = command("train", scheduling=Scheduling(queue="gpu"))
    r = dave.post("/api/pipelines", json=submission(gpu))
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "stage 'train' asks for the queue 'gpu', which VO 'limited' may not use (allowed: "
        "default): use one of those, or ask your VO admin to add it to queues"
    )
    assert dave.search({}) == []
    # another VO has no such limits
    assert carol.post("/api/pipelines", json=submission(gpu)).status_code == 201
