"""The worker runtime: claim jobs, build them, ingest outputs, record the results.

One runtime per worker process, on its own event loop thread. Celery tasks hand
it batches of job ids; it claims them (a conditional update: exactly one worker
wins each), runs up to ``worker_slots`` builds at once, and commits finished
builds in batches. A commit releases dependents whose inputs are now all
realized and claims as many as there are free slots, so a chain runs on without
a round trip through the broker; the rest go back to the broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from diracx.core.derivation import TreeInput, realization_ref
from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.core.tree import ingest_directory, load_tree, materialize_tree, remove_tree
from diracx.db.migrate import wait_for_schema
from diracx.db.pipelines import BuildFailure, BuildSuccess, ClaimedJob, PipelineDB
from diracx.tasks.cleanup import reap_dead_workers
from diracx.tasks.executors.base import (
    BuildRequest,
    get_executor,
    prepare_scratch,
    remove_scratch,
)

log = logging.getLogger(__name__)

Enqueue = Callable[[Sequence[int]], None]
HEARTBEAT_SECONDS = 10.0
BuildOutcome = BuildSuccess | BuildFailure


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerRuntime:
    """Builds jobs for one worker process."""

    def __init__(self, settings: ServiceSettings, enqueue: Enqueue, worker_id: str | None = None):
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.db = PipelineDB.from_url(settings.resolved_db_url())
        self.store = LocalStore(settings.resolved_store_path())
        self.scratch_root = settings.scratch_dir / self.worker_id
        self.slots = settings.worker_slots
        self.enqueue = enqueue
        self.max_held = 2 * self.slots
        self._slots = asyncio.Semaphore(self.slots)
        self._held = 0  # jobs this worker holds: building or waiting for a slot
        self._capacity = asyncio.Condition()
        self._builds: set[asyncio.Task[None]] = set()
        self._outcomes: asyncio.Queue[BuildOutcome] = asyncio.Queue()
        self._committer: asyncio.Task[None] | None = None
        self._running: set[int] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A worker started beside its service may come up before the service migrated.
        await asyncio.to_thread(wait_for_schema, self.settings.resolved_db_url())
        await asyncio.to_thread(reap_dead_workers, self.settings.scratch_dir)
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        await self.db.register_worker(self.worker_id, socket.gethostname(), os.getpid())
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())
        self._committer = asyncio.create_task(self._commit_loop())

    async def close(self) -> None:
        for task in (self._heartbeat, self._committer, *self._builds):
            if task is not None:
                task.cancel()
        await self.db.close()
        remove_tree(self.scratch_root)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.db.heartbeat(sorted(self._running))
            except Exception:  # a missed heartbeat is not fatal; the next one may pass
                log.warning("heartbeat failed", exc_info=True)

    async def realize(self, job_ids: Sequence[int]) -> None:
        """Claim the jobs no other worker took, as fast as this worker can take them on.

        Returns once every id is claimed (here or elsewhere); the builds go on in
        the background. A worker holds at most ``2 * slots`` jobs, so a busy one
        leaves the rest of a batch to idle workers instead of hoarding it.
        """
        remaining = list(job_ids)
        while remaining:
            async with self._capacity:
                await self._capacity.wait_for(lambda: self._held < self.max_held)
                take = remaining[: self.max_held - self._held]
                remaining = remaining[len(take) :]
                claimed = await self.db.claim(take, self.worker_id, start=True)
                self._held += len(claimed)
            self._start_builds(claimed)

    def _start_builds(self, claimed: Sequence[ClaimedJob]) -> None:
        for job in claimed:
            task = asyncio.create_task(self._build_and_report(job))
            self._builds.add(task)
            task.add_done_callback(self._builds.discard)

    async def _build_and_report(self, job: ClaimedJob) -> None:
        await self._outcomes.put(await self._build(job))

    async def _commit_loop(self) -> None:
        """Record finished builds: everything that finished since the last commit goes
        into one transaction (group commit), which also claims released dependents
        for the free slots and queues the others through the broker."""
        while True:
            outcomes = [await self._outcomes.get()]
            while not self._outcomes.empty():
                outcomes.append(self._outcomes.get_nowait())
            try:
                async with self._capacity:
                    self._held -= len(outcomes)
                    result = await self.db.finish(
                        self.worker_id,
                        [o for o in outcomes if isinstance(o, BuildSuccess)],
                        [o for o in outcomes if isinstance(o, BuildFailure)],
                        claim_released=max(0, self.slots - self._held),
                    )
                    self._held += len(result.claimed)
                    self._capacity.notify_all()
                self._start_builds(result.claimed)
                if result.released:
                    await asyncio.to_thread(self.enqueue, result.released)
            except Exception:  # the jobs stay Running; recovery reschedules them
                log.exception("recording %d build results failed", len(outcomes))

    async def _build(self, job: ClaimedJob) -> BuildOutcome:
        """Materialize inputs, run the executor, ingest outputs; never raises."""
        scratch = self.scratch_root / f"{job.id}-{job.attempt}"
        await self._slots.acquire()
        started = datetime.now(UTC)
        self._running.add(job.id)
        try:
            executor = get_executor(job.derivation.builder["executor"])
            await asyncio.to_thread(self._prepare, job, scratch)
            result = await executor.build(BuildRequest(job.id, job.dref, job.derivation, scratch))
            return await asyncio.to_thread(
                self._ingest, job, scratch, result.ok, result.reason, started
            )
        except Exception as exc:  # an infrastructure error fails this job, not the worker
            log.exception("job %s failed in the worker", job.id)
            await asyncio.to_thread(remove_scratch, scratch)
            return BuildFailure(job.id, f"worker error: {exc}", None)
        finally:
            self._running.discard(job.id)
            self._slots.release()

    def _prepare(self, job: ClaimedJob, scratch: Path) -> None:
        if scratch.exists():  # left by an earlier attempt of this worker
            remove_tree(scratch)
        prepare_scratch(scratch, job.derivation)
        for name, tree in input_trees(job).items():
            materialize_tree(self.store, load_tree(self.store, tree), scratch / "inputs" / name)
        source = job.derivation.builder.get("source")
        if job.derivation.builder["executor"] == "python" and isinstance(source, str):
            materialize_tree(self.store, load_tree(self.store, source), scratch / "source")

    def _ingest(
        self, job: ClaimedJob, scratch: Path, ok: bool, reason: str, started: datetime
    ) -> BuildOutcome:
        """Store the log and the outputs, then remove the scratch directory."""
        try:
            return self._store_results(job, scratch, ok, reason, started)
        finally:
            remove_scratch(scratch)

    def _store_results(
        self, job: ClaimedJob, scratch: Path, ok: bool, reason: str, started: datetime
    ) -> BuildOutcome:
        log_path = scratch / "log"
        log_digest = self.store.put_file(log_path, move=True)[0] if log_path.exists() else None
        if not ok:
            return BuildFailure(job.id, reason, log_digest)
        tree = ingest_directory(self.store, scratch / "out", move=True)
        context = {name: [r.rref] for name, r in job.inputs.items()}
        return BuildSuccess(
            job_id=job.id,
            dref=job.dref,
            output=tree.digest,
            context=context,
            rref=realization_ref(job.dref, context, tree.digest),
            log=log_digest,
            started=started,
            finished=datetime.now(UTC),
        )


def input_trees(job: ClaimedJob) -> dict[str, str]:
    """The tree each input of the job is materialized from: a tree input as given,
    a derivation input as the output of the realization its matcher chose."""
    trees: dict[str, str] = {}
    for name, value in job.derivation.inputs.items():
        if isinstance(value, TreeInput):
            trees[name] = value.tree
        else:
            trees[name] = job.inputs[name].output
    return trees
