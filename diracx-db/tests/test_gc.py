"""Pins and garbage collection on a real database (SQLite, PostgreSQL) and a local store."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

from diracx.core.config import LOCAL_VO
from diracx.core.derivation import Derivation, DrvInput, PipelineSubmission, plan_order
from diracx.core.derivation import realization_ref as rref_of
from diracx.core.exceptions import (
    ConflictError,
    DiracxError,
    ForbiddenError,
    ObjectNotFoundError,
)
from diracx.core.gc import GCReport, GCRequest
from diracx.core.store import LocalStore
from diracx.core.tree import ingest_directory, load_tree
from diracx.db import gc
from diracx.db.migrate import upgrade
from diracx.db.os import S3Store
from diracx.db.pipelines import BuildSuccess, ClaimedJob, PipelineDB
from diracx.db.schema import blob_vos, realization_vos
from diracx.db.visibility import claim_blobs

VO = LOCAL_VO


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    database = PipelineDB.from_url(db_url)
    yield database
    await database.close()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def drv(name: str, *inputs: Derivation) -> Derivation:
    return Derivation(
        name=name,
        builder={"executor": "process", "argv": ["true", name]},
        inputs={f"in{i}": DrvInput(drv=d.dref) for i, d in enumerate(inputs)},
    )


class World:
    """Builds pipelines for real: outputs ingested into the store, realizations recorded."""

    def __init__(
        self, db: PipelineDB, store: LocalStore | S3Store, tmp: Path, vo: str = VO
    ) -> None:
        self.db, self.store, self.tmp, self.vo = db, store, tmp, vo
        self.rrefs: dict[str, str] = {}  # stage name -> rref
        self.outputs: dict[str, str] = {}  # stage name -> output tree
        self.logs: dict[str, str] = {}  # stage name -> log blob

    def output(self, name: str, files: dict[str, bytes]) -> str:
        out = self.tmp / f"out-{name}-{len(self.outputs)}"
        out.mkdir()
        for path, data in files.items():
            (out / path).write_bytes(data)
        return ingest_directory(self.store, out).digest

    def success(self, job: ClaimedJob, files: dict[str, bytes]) -> BuildSuccess:
        output = self.output(job.derivation.name, files)
        context = {n: [r.rref] for n, r in job.inputs.items()}
        log = self.store.put_bytes(f"log of {job.derivation.name} {output}".encode())
        ts = datetime.now(UTC)
        rref = rref_of(job.dref, context, output)
        self.rrefs[job.derivation.name] = rref
        self.outputs[job.derivation.name] = output
        self.logs[job.derivation.name] = log
        blobs = {d: self.store.size(d) for d in self.blobs_of(job.derivation.name)}
        return BuildSuccess(job.id, job.dref, output, context, rref, log, ts, ts, blobs=blobs)

    async def submit(self, *drvs: Derivation) -> list[int]:
        sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[drvs[-1].dref])
        outcome = await self.db.submit("me", plan_order(sub), sub.targets, vo=self.vo)
        return outcome.ready

    async def run(self, *drvs: Derivation, files: dict[str, dict[str, bytes]]) -> None:
        """Submit and build everything (each stage's files by name)."""
        ready = await self.submit(*drvs)
        while ready:
            claimed = await self.db.claim(ready, "w", start=True)
            outcome = await self.db.finish(
                "w", [self.success(j, files[j.derivation.name]) for j in claimed], []
            )
            ready = outcome.released

    def blobs_of(self, name: str) -> set[str]:
        """The output tree of stage *name*, its files and its log."""
        tree = load_tree(self.store, self.outputs[name])
        return {self.outputs[name], self.logs[name], *tree.blob_digests()}


@pytest.fixture
def world(db: PipelineDB, store: LocalStore, tmp_path: Path) -> World:
    return World(db, store, tmp_path)


def later(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


async def collect(world: World, *, days: float = 30, **options: object) -> GCReport:
    """A collection as seen *days* from now (every pipeline older than a week then)."""
    request = GCRequest.model_validate({"keep_days": 7, "grace_seconds": 0, **options})
    return await gc.collect(world.db, world.store, request, now=later(days))


def removed(report: GCReport) -> tuple[list[str], list[str]]:
    return [r.rref for r in report.realizations], report.blobs


# --------------------------------------------------------------------------- pins


async def test_pins_name_realizations(world: World) -> None:
    a = drv("a")
    await world.run(a, files={"a": {"x": b"a"}})
    info = await gc.pin(world.db, VO, "result:v1", world.rrefs["a"], owner="me")
    assert (info.name, info.rref, info.stage, info.output) == (
        "result:v1",
        world.rrefs["a"],
        "a",
        world.outputs["a"],
    )
    assert [p.name for p in await gc.list_pins(world.db, VO)] == ["result:v1"]
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        await gc.pin(world.db, VO, "other", "f" * 64, owner="me")
    with pytest.raises(DiracxError, match="pin name"):
        await gc.pin(world.db, VO, "../x", world.rrefs["a"], owner="me")
    gone = await gc.unpin(world.db, VO, "result:v1", "me")
    assert gone.rref == world.rrefs["a"]
    assert await gc.list_pins(world.db, VO) == []
    with pytest.raises(ObjectNotFoundError, match="no pin named 'result:v1'"):
        await gc.unpin(world.db, VO, "result:v1", "me")


async def test_pins_belong_to_a_vo_and_to_their_owner(db: PipelineDB, store: LocalStore, tmp_path):
    ours, theirs = (
        World(db, store, tmp_path / "a", "alpha"),
        World(db, store, tmp_path / "b", "beta"),
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = drv("a"), drv("b")
    await ours.run(a, files={"a": {"x": b"a"}})
    await theirs.run(b, files={"b": {"x": b"b"}})
    rref_a, rref_b = ours.rrefs["a"], theirs.rrefs["b"]
    # a VO pins only what it may see; another VO's realization does not exist for it
    with pytest.raises(ObjectNotFoundError, match=f"realization {rref_b} does not exist"):
        await gc.pin(db, "alpha", "x", rref_b, owner="alice")
    await gc.pin(db, "alpha", "same-name", rref_a, owner="alice")
    await gc.pin(db, "beta", "same-name", rref_b, owner="carol")  # names are per VO
    assert [p.rref for p in await gc.list_pins(db, "alpha")] == [rref_a]
    assert [p.rref for p in await gc.list_pins(db, "beta")] == [rref_b]
    with pytest.raises(ObjectNotFoundError):
        await gc.unpin(db, "gamma", "same-name", "carol")
    # only its owner, or an administrator of the VO, moves or removes a pin
    await ours.run(drv("a2"), files={"a2": {"y": b"a2"}})
    with pytest.raises(ForbiddenError, match=r"belongs to 'alice'.*VOAdmin"):
        await gc.unpin(db, "alpha", "same-name", "bob")
    with pytest.raises(ForbiddenError, match="may move it"):
        await gc.pin(db, "alpha", "same-name", ours.rrefs["a2"], owner="bob")
    await gc.pin(db, "alpha", "same-name", rref_a, owner="bob")  # the same: nothing moves
    moved = await gc.pin(db, "alpha", "same-name", ours.rrefs["a2"], owner="bob", admin=True)
    assert (moved.rref, moved.owner) == (ours.rrefs["a2"], "bob")
    gone = await gc.unpin(db, "alpha", "same-name", "alice", admin=True)
    assert gone.rref == ours.rrefs["a2"]
    assert [p.rref for p in await gc.list_pins(db, "beta")] == [rref_b]


# --------------------------------------------------------------------------- collect


async def test_gc_keeps_the_pinned_closure_and_dry_run_matches(world: World) -> None:
    a = drv("a")
    b = drv("b", a)
    c = drv("c")
    shared = b"shared by b and c"
    await world.run(a, b, files={"a": {"a.txt": b"from a"}, "b": {"b.txt": shared}})
    await world.run(c, files={"c": {"c.txt": shared, "only-c.txt": b"c alone"}})
    orphan = world.store.put_bytes(b"uploaded, never used")
    await gc.pin(world.db, VO, "keep-b", world.rrefs["b"], owner="me")

    dry = await collect(world, dry_run=True)
    assert dry.dry_run
    # c goes with what only it refers to; b's closure (a, the shared file) stays
    only_c = world.blobs_of("c") - world.blobs_of("b")
    assert len(only_c) == 3  # its tree, its own file, its log
    assert [r.stage for r in dry.realizations] == ["c"]
    assert set(dry.blobs) == only_c | {orphan}
    assert all(world.store.has(d) for d in dry.blobs)  # a dry run removes nothing

    real = await collect(world)
    assert not real.dry_run
    assert removed(real) == removed(dry)
    assert real.freed == dry.freed > 0
    assert not any(world.store.has(d) for d in real.blobs)
    kept = world.blobs_of("a") | world.blobs_of("b")
    assert all(world.store.has(d) for d in kept)
    assert await world.db.get_realization(world.rrefs["c"]) is None
    assert await world.db.get_realization(world.rrefs["a"]) is not None  # b's input

    again = await collect(world)  # nothing left to collect
    assert removed(again) == ([], [])

    await gc.unpin(world.db, VO, "keep-b", "me")
    last = await collect(world)
    assert sorted(r.stage for r in last.realizations) == ["a", "b"]
    assert not any(world.store.has(d) for d in kept)


async def vo_claims(db: PipelineDB) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(rref, vo) of every realization claim, (digest, vo) of every blob claim."""

    def tx(conn: Connection) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        rs = {(r.rref, r.vo) for r in conn.execute(select(realization_vos))}
        bs = {(r.digest, r.vo) for r in conn.execute(select(blob_vos))}
        return rs, bs

    return await db.engines.read(tx)


async def test_gc_is_global_and_removes_the_vos_claims_with_the_objects(
    db: PipelineDB, store: LocalStore, tmp_path: Path
) -> None:
    alpha, beta = World(db, store, tmp_path, "alpha"), World(db, store, tmp_path, "beta")
    await alpha.run(drv("a"), files={"a": {"a.txt": b"a"}})
    await beta.run(drv("c"), files={"c": {"c.txt": b"c"}})
    await beta.run(drv("kept"), files={"kept": {"k.txt": b"k"}})
    orphan = store.put_bytes(b"uploaded by beta, never used")
    await db.engines.write(claim_blobs, "beta", {orphan: store.size(orphan)})
    # every VO's pins are roots
    await gc.pin(db, "alpha", "keep", alpha.rrefs["a"], owner="alice")
    await gc.pin(db, "beta", "keep", beta.rrefs["kept"], owner="carol")
    rs, bs = await vo_claims(db)
    only_c = beta.blobs_of("c")
    assert (beta.rrefs["c"], "beta") in rs
    assert {(d, "beta") for d in only_c} | {(orphan, "beta")} <= bs

    report = await collect(alpha)
    assert [r.stage for r in report.realizations] == ["c"]
    assert set(report.blobs) == only_c | {orphan}
    rs, bs = await vo_claims(db)
    assert rs == {(alpha.rrefs["a"], "alpha"), (beta.rrefs["kept"], "beta")}
    assert bs == {(d, "alpha") for d in alpha.blobs_of("a")} | {
        (d, "beta") for d in beta.blobs_of("kept")
    }


async def test_blob_claims_of_realizations_made_before_vos_are_backfilled(world: World) -> None:
    await world.run(drv("a"), drv("b", drv("a")), files={"a": {"a": b"a"}, "b": {"b": b"b"}})
    _, before = await vo_claims(world.db)
    assert before == {(d, VO) for n in ("a", "b") for d in world.blobs_of(n)}

    def forget(conn: Connection) -> None:  # as migration 0006 left an old store
        conn.execute(blob_vos.delete())

    await world.db.engines.write(forget)
    assert await gc.backfill_blob_claims(world.db, world.store) == len(before)
    assert (await vo_claims(world.db))[1] == before
    assert await gc.backfill_blob_claims(world.db, world.store) == 0


async def test_an_unreadable_tree_that_stays_stops_the_collection(world: World) -> None:
    a = drv("a")
    c = drv("c")
    await world.run(a, files={"a": {"a.txt": b"a"}})
    await world.run(c, files={"c": {"c.txt": b"c"}})
    await gc.pin(world.db, VO, "a", world.rrefs["a"], owner="me")
    assert isinstance(world.store, LocalStore)
    world.store.path(world.outputs["a"]).unlink()  # the manifest is lost: its files unknown
    with pytest.raises(ConflictError, match=f"tree {world.outputs['a']}, which must stay"):
        await collect(world)
    assert world.store.has(world.outputs["c"])  # nothing was removed
    assert await world.db.get_realization(world.rrefs["c"]) is not None


async def test_retention_window_keeps_young_pipelines(world: World) -> None:
    a = drv("a")
    await world.run(a, files={"a": {"a.txt": b"a"}})
    young = await collect(world, days=6, dry_run=True)  # the pipeline is 6 days old
    assert removed(young) == ([], [])
    old = await collect(world, days=8, dry_run=True)
    assert [r.rref for r in old.realizations] == [world.rrefs["a"]]
    assert set(old.blobs) >= world.blobs_of("a")
    # a pipeline reusing it makes it young again
    await world.submit(a)
    assert removed(await collect(world, days=6)) == ([], [])


async def test_live_jobs_keep_their_inputs(world: World) -> None:
    a = drv("a")
    b = drv("b", a)
    await world.run(a, files={"a": {"a.txt": b"input of b"}})
    ready = await world.submit(a, b)  # a cached, b Waiting
    report = await collect(world, days=30)  # both pipelines are old: only b's job protects a
    assert removed(report) == ([], [])
    [job] = await world.db.claim(ready, "w", start=True)  # Running
    assert removed(await collect(world, days=30)) == ([], [])
    assert job.inputs["in0"].rref == world.rrefs["a"]
    await world.db.finish("w", [world.success(job, {"b.txt": b"b"})], [])
    report = await collect(world, days=30)  # b's job ended: nothing needs a or b now
    assert sorted(r.stage for r in report.realizations) == ["a", "b"]


async def test_grace_period_keeps_young_blobs(world: World, store: LocalStore) -> None:
    young = store.put_bytes(b"being uploaded")
    old = store.put_bytes(b"abandoned long ago")
    past = time.time() - 7200
    os.utime(store.path(old), (past, past))
    request = GCRequest(keep_days=7, grace_seconds=3600)
    report = await gc.collect(world.db, store, request)
    assert report.blobs == [old] and report.young_blobs == 1
    assert store.has(young) and not store.has(old)


async def test_a_blob_found_again_is_not_removed(world: World, store: LocalStore) -> None:
    digest = store.put_bytes(b"old, unreferenced")
    past = time.time() - 7200
    os.utime(store.path(digest), (past, past))
    cutoff = time.time() - 3600
    # a writer finds the blob already stored (dedup) just before the collection reaches it
    assert store.put_bytes(b"old, unreferenced") == digest
    assert not gc.remove_blob(store, digest, cutoff)
    assert store.missing([digest]) == []  # "present" refreshes it too
    os.utime(store.path(digest), (past, past))
    assert gc.remove_blob(store, digest, cutoff)
    assert store.missing([digest]) == [digest]


def test_a_file_moved_in_is_new(store: LocalStore, tmp_path: Path) -> None:
    """A build's output written long ago gets the time of its ingest: a collection
    running before its realization is recorded spares it (the grace period)."""
    src = tmp_path / "written-long-ago"
    src.write_bytes(b"output")
    past = time.time() - 7200
    os.utime(src, (past, past))
    digest, _ = store.put_file(src, move=True)
    assert store.path(digest).stat().st_mtime > time.time() - 60
    assert not gc.remove_blob(store, digest, time.time() - 3600)


async def test_target_size_removes_oldest_first_and_keeps_closures(world: World) -> None:
    stages = [drv(f"s{i}") for i in range(3)]
    for i, s in enumerate(stages):
        await world.run(s, files={s.name: {"data": bytes([i]) * 10_000 * (i + 1)}})
    a = drv("a")
    b = drv("b", a)
    await world.run(a, b, files={"a": {"a": b"A" * 5000}, "b": {"b": b"B" * 5000}})
    everything = await collect(world, dry_run=True)
    assert everything.store_size > 70_000
    # just enough to need s0 and s1 to go (the oldest): 30 000 bytes of data
    target = everything.store_size - 25_000
    dry = await collect(world, dry_run=True, target_size=target)
    assert [r.stage for r in dry.realizations] == ["s0", "s1"]
    assert dry.target_met and dry.store_size - dry.freed <= target
    real = await collect(world, target_size=target)
    assert removed(real) == removed(dry)
    # b was built from a: b goes first, and a never goes while b stays
    dry = await collect(world, dry_run=True, target_size=real.store_size - real.freed - 32_000)
    assert [r.stage for r in dry.realizations] == ["s2", "b"]
    unreachable = await collect(world, dry_run=True, target_size=0)
    assert [r.stage for r in unreachable.realizations] == ["s2", "b", "a"]
    assert unreachable.target_met and unreachable.freed == unreachable.store_size


# --------------------------------------------------------------------------- S3


async def test_gc_on_an_s3_store(db: PipelineDB, s3_store_url: dict[str, str], tmp_path: Path):
    from diracx.core.settings import ServiceSettings
    from diracx.db.os import open_store

    fields = {k.removeprefix("DIRACX_").lower(): v for k, v in s3_store_url.items()}
    s3 = open_store(ServiceSettings(data_dir=tmp_path, **fields))
    assert isinstance(s3, S3Store)
    world = World(db, s3, tmp_path)
    a = drv("a")
    b = drv("b", a)
    c = drv("c")
    await world.run(a, b, files={"a": {"a": b"a"}, "b": {"b": b"b"}})
    await world.run(c, files={"c": {"c": b"only c"}})
    orphan = s3.put_bytes(b"never used")
    await gc.pin(db, VO, "b", world.rrefs["b"], owner="me")
    dry = await collect(world, dry_run=True)
    real = await collect(world)
    assert removed(real) == removed(dry)
    assert [r.stage for r in real.realizations] == ["c"]
    assert orphan in real.blobs and world.outputs["c"] in real.blobs
    assert s3.missing(real.blobs) == real.blobs
    assert s3.missing([world.outputs["a"], world.outputs["b"], world.logs["b"]]) == []
