"""The worker runtime: claim jobs, build them, ingest outputs, record the results.

One runtime per worker process, on its own event loop thread. Celery tasks hand
it batches of job ids; it claims those it can serve (a conditional update: exactly
one worker wins each), runs builds on its slots (a stage with ``cpus=N`` takes N),
and commits finished builds in batches. A commit releases dependents whose inputs are now all
realized and claims as many as there are free slots, so a chain runs on without
a round trip through the broker; the rest go back to the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diracx.core.broker import QueuedJob, WorkerCapacity
from diracx.core.derivation import TreeInput, realization_ref
from diracx.core.secrets import SecretBox, SecretsError
from diracx.core.settings import ServiceSettings
from diracx.core.store import BlobStore
from diracx.core.tree import (
    Tree,
    TreeEntry,
    ingest_directory,
    load_tree,
    materialize_tree,
    remove_tree,
)
from diracx.db.migrate import wait_for_schema
from diracx.db.os import S3Store, open_store
from diracx.db.pipelines import BuildFailure, BuildSuccess, ClaimedJob, PipelineDB
from diracx.tasks.cache import BlobCache
from diracx.tasks.cleanup import kill_builds, reap_dead_workers
from diracx.tasks.executors.base import (
    BuildRequest,
    get_executor,
    prepare_scratch,
    remove_scratch,
)

log = logging.getLogger(__name__)

Enqueue = Callable[[Sequence[QueuedJob]], None]
# A job this worker cannot serve goes back to the broker after this pause, so that it
# does not bounce between workers that cannot serve it as fast as they can take it.
PASS_ON_DELAY = 1.0
# How often a worker looks whether the jobs it builds are still its own (a kill, or a
# reschedule after it was thought lost): a killed build stops within about this long.
HELD_POLL_SECONDS = 0.5
BuildOutcome = BuildSuccess | BuildFailure
# A build reports metrics (for ``best`` matchers) as a JSON object in out/metrics.json.
METRICS_FILE = "metrics.json"
METRICS_MAX_BYTES = 1 << 20


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WeightedSlots:
    """A semaphore whose holders take several units (a build with ``cpus=N`` takes N).

    First come, first served: a build that needs many slots waits at the head of the
    line until enough are free, instead of being starved by a stream of small ones.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _units(self, n: int) -> int:
        # claims never give a worker more than it has; never wait forever if one did
        return max(1, min(n, self.total))

    async def acquire(self, n: int = 1) -> None:
        n = self._units(n)
        if not self._waiters and self.free >= n:
            self.free -= n
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(n)  # granted, but the waiter went away: give the units back
            else:
                self._waiters.remove((n, future))
                self._wake()  # the head may have left: the next ones may fit now
            raise

    def release(self, n: int = 1) -> None:
        self.free += self._units(n)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.free:
            n, future = self._waiters.popleft()
            if future.done():
                continue
            self.free -= n
            future.set_result(None)


class WorkerRuntime:
    """Builds jobs for one worker process."""

    def __init__(
        self,
        settings: ServiceSettings,
        enqueue: Enqueue,
        worker_id: str | None = None,
        capacity: WorkerCapacity | None = None,
    ):
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.db = PipelineDB.from_settings(settings)
        self.store = open_store(settings)
        # With an S3 store, builds read inputs and write outputs through a bounded local
        # cache (inputs used again are not downloaded again)
        self.cache = (
            BlobCache.open(settings.worker_cache_dir, self.store, settings.worker_cache_bytes)
            if isinstance(self.store, S3Store)
            else None
        )
        self.scratch_root = settings.scratch_dir / self.worker_id
        # what this worker serves (default: the default queue, worker_slots slots)
        self.capacity = capacity or WorkerCapacity(slots=settings.worker_slots)
        self.slots = self.capacity.slots
        self.enqueue = enqueue
        self.max_held = 2 * self.slots
        self._slots = WeightedSlots(self.slots)
        self._held = 0  # slots of the jobs this worker holds: building or waiting for slots
        self._held_cpus: dict[int, int] = {}  # the slots of each held job
        self._capacity = asyncio.Condition()
        self._builds: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # jobs passed on to other workers
        self._outcomes: asyncio.Queue[BuildOutcome] = asyncio.Queue()
        self._committer: asyncio.Task[None] | None = None
        self._running: set[int] = set()
        self._build_tasks: dict[int, asyncio.Task[None]] = {}  # held job -> its build
        self._stopping: set[int] = set()  # builds cancelled because the job is not ours any more
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A worker started beside its service may come up before the service migrated.
        await asyncio.to_thread(wait_for_schema, self.settings.resolved_db_url())
        await asyncio.to_thread(reap_dead_workers, self.settings.scratch_dir)
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        await self.db.register_worker(
            self.worker_id, socket.gethostname(), os.getpid(), self.capacity
        )
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())
        self._committer = asyncio.create_task(self._commit_loop())

    async def close(self) -> None:
        for task in (self._heartbeat, self._committer, *self._builds, *self._tasks):
            if task is not None:
                task.cancel()
        try:  # it serves nothing any more (unserved work says so at once)
            await self.db.mark_workers_stopped(worker_id=self.worker_id)
        except Exception:
            log.warning("could not record that worker %s stopped", self.worker_id, exc_info=True)
        await self.db.close()
        remove_tree(self.scratch_root)

    async def _heartbeat_loop(self) -> None:
        """Stop the builds of jobs that are no longer this worker's (every half second);
        report the jobs it holds and that it is alive (every ``heartbeat_interval``);
        clean up after this machine's dead workers (every ``scratch_cleanup_interval``)."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        beat_at = loop.time() + settings.heartbeat_interval
        reap_at = loop.time() + settings.scratch_cleanup_interval
        while True:
            await asyncio.sleep(min(HELD_POLL_SECONDS, settings.heartbeat_interval))
            try:
                await self._stop_lost_builds()
            except Exception:  # the next poll may pass
                log.warning("looking for killed jobs failed", exc_info=True)
            if loop.time() >= beat_at:
                beat_at = loop.time() + settings.heartbeat_interval
                try:  # every held job, building or waiting for slots
                    await self.db.heartbeat(sorted(self._held_cpus), worker=self.worker_id)
                except Exception:  # a missed heartbeat is not fatal; the next one may pass
                    log.warning("heartbeat failed", exc_info=True)
            if loop.time() >= reap_at:
                reap_at = loop.time() + settings.scratch_cleanup_interval
                try:
                    reaped = await asyncio.to_thread(reap_dead_workers, settings.scratch_dir)
                    if reaped:
                        log.warning("removed the scratch directories of dead workers %s", reaped)
                except Exception:
                    log.warning("cleaning up after dead workers failed", exc_info=True)

    async def _stop_lost_builds(self) -> None:
        """Cancel the builds of jobs this worker no longer holds: killed, or rescheduled
        after it was thought lost (another worker builds them now)."""
        building = list(self._build_tasks)
        if not building:
            return
        held = await self.db.held_by(self.worker_id, building)
        for job_id in building:
            task = self._build_tasks.get(job_id)
            if job_id in held or task is None or task.done():
                continue
            log.warning("job %s is no longer held by this worker: stopping its build", job_id)
            self._stopping.add(job_id)
            task.cancel()

    async def realize(self, job_ids: Sequence[int]) -> None:
        """Claim the jobs no other worker took, as fast as this worker can take them on.

        Returns once every id is claimed (here or elsewhere); the builds go on in
        the background. A worker holds jobs for at most ``2 * slots`` slots, so a busy
        one leaves the rest of a batch to idle workers instead of hoarding it. Jobs it
        cannot serve (too many cpus, memory or gpus for it) go back to the broker for
        a worker that can, if one is alive.
        """
        remaining = list(job_ids)
        while remaining:
            async with self._capacity:
                await self._capacity.wait_for(lambda: self._held < self.max_held)
                outcome = await self.db.claim_batch(
                    remaining, self.worker_id, start=True, budget=self.max_held - self._held
                )
                self._hold(outcome.claimed)
            self._start_builds(outcome.claimed)
            if outcome.passed:
                self._spawn(self._pass_on(outcome.passed))
            remaining = outcome.rest

    def _hold(self, claimed: Sequence[ClaimedJob]) -> None:
        for job in claimed:
            self._held_cpus[job.id] = job.cpus
            self._held += job.cpus

    def _release_held(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self._held -= self._held_cpus.pop(job_id, 1)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pass_on(self, jobs: Sequence[QueuedJob]) -> None:
        await asyncio.sleep(PASS_ON_DELAY)
        try:
            await asyncio.to_thread(self.enqueue, jobs)
        except Exception:  # they stay Waiting; the periodic requeue sends them again
            log.warning("could not queue jobs %s again", [j.id for j in jobs], exc_info=True)

    def _start_builds(self, claimed: Sequence[ClaimedJob]) -> None:
        for job in claimed:
            task = asyncio.create_task(self._build_and_report(job))
            self._builds.add(task)
            task.add_done_callback(self._builds.discard)

    async def _build_and_report(self, job: ClaimedJob) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._build_tasks[job.id] = task
        try:
            outcome = await self._build(job)
        except asyncio.CancelledError:
            if job.id not in self._stopping:
                raise  # the worker stops
            task.uncancel()
            # Not recorded (the job is not held by this worker any more); it frees the slots.
            outcome = BuildFailure(job.id, "stopped: the job is no longer this worker's", None)
        finally:
            if self._build_tasks.get(job.id) is task:
                del self._build_tasks[job.id]
            self._stopping.discard(job.id)
        await self._outcomes.put(outcome)

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
                    self._release_held([o.job_id for o in outcomes])
                    result = await self.db.finish(
                        self.worker_id,
                        [o for o in outcomes if isinstance(o, BuildSuccess)],
                        [o for o in outcomes if isinstance(o, BuildFailure)],
                        claim_released=max(0, self.slots - self._held),  # free slots
                    )
                    self._hold(result.claimed)
                    self._capacity.notify_all()
                self._start_builds(result.claimed)
                if result.released:
                    await asyncio.to_thread(self.enqueue, result.to_queue())
            except Exception:  # the jobs stay Running; recovery reschedules them
                log.exception("recording %d build results failed", len(outcomes))

    async def _build(self, job: ClaimedJob) -> BuildOutcome:
        """Materialize inputs, run the executor, ingest outputs; never raises."""
        scratch = self.scratch_root / f"{job.id}-{job.attempt}"
        if job.input_errors:  # an input's matcher failed: nothing to build from
            name, why = sorted(job.input_errors.items())[0]
            return BuildFailure(job.id, f"input {name!r}: {why}"[:512], None)
        await self._slots.acquire(job.cpus)
        started = datetime.now(UTC)
        self._running.add(job.id)
        try:
            executor = get_executor(job.derivation.builder["executor"])
            inputs = await asyncio.to_thread(
                self._prepare, job, scratch, not executor.materializes_inputs
            )
            request = BuildRequest(
                job.id,
                job.dref,
                job.derivation,
                scratch,
                store=self.store,
                inputs=inputs,
                data_dir=self.settings.data_dir,
                secrets=self._open_secrets(job),
            )
            result = await executor.build(request)
            return await asyncio.to_thread(
                self._ingest, job, scratch, result.ok, result.reason, started
            )
        except Exception as exc:  # an infrastructure error fails this job, not the worker
            log.exception("job %s failed in the worker", job.id)
            await asyncio.to_thread(remove_scratch, scratch)
            return BuildFailure(job.id, f"worker error: {exc}", None)
        except asyncio.CancelledError:
            if job.id in self._stopping:  # (when the worker stops, close() removes it all)
                # The executor killed the build's process group; kill_builds also finds
                # what left the group (setsid), by its TMPDIR in the scratch directory.
                await asyncio.to_thread(kill_builds, scratch)
                await asyncio.to_thread(remove_scratch, scratch)
            raise
        finally:
            self._running.discard(job.id)
            self._slots.release(job.cpus)

    def _open_secrets(self, job: ClaimedJob) -> dict[str, str]:
        """The values of the secrets the job's build needs (sealed by the service)."""
        if job.secrets is None:
            return {}
        if self.settings.secret_key is None:
            raise SecretsError(
                "this worker has no DIRACX_SECRET_KEY, so it cannot open the job's secrets: "
                "give it the service's key"
            )
        return SecretBox(self.settings.secret_key.get_secret_value()).open(job.secrets)

    def _prepare(self, job: ClaimedJob, scratch: Path, materialize: bool = True) -> dict[str, str]:
        """Make the scratch directory, materialize the inputs; return the tree of each."""
        if scratch.exists():  # left by an earlier attempt of this worker
            remove_tree(scratch)
        prepare_scratch(scratch, job.derivation)
        inputs = input_trees(job, self.store)
        if not materialize:  # the executor reads what it needs from the store itself
            return inputs
        trees = {scratch / "inputs" / name: tree for name, tree in inputs.items()}
        source = job.derivation.builder.get("source")
        if job.derivation.builder["executor"] == "python" and isinstance(source, str):
            trees[scratch / "source"] = source
        if self.cache is not None:  # fetched into the cache once, materialized from it
            self.cache.materialize(trees)
            return inputs
        for dest, tree in trees.items():
            materialize_tree(self.store, load_tree(self.store, tree), dest)
        return inputs

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
        # with an S3 store: ingested into the cache, then uploaded before the job is done
        store = self.store if self.cache is None else self.cache.local
        log_path = scratch / "log"
        log_digest, log_size = (
            store.put_file(log_path, move=True) if log_path.exists() else (None, 0)
        )
        # the job's VO gets a claim on every blob it made (PipelineDB.finish)
        made = {log_digest: log_size} if log_digest is not None else {}
        if not ok:
            if self.cache is not None and log_digest is not None:
                self.cache.publish([log_digest])
            return BuildFailure(job.id, reason, log_digest, made)
        try:
            metrics = read_metrics(scratch / "out" / METRICS_FILE)
        except ValueError as exc:
            if self.cache is not None and log_digest is not None:
                self.cache.publish([log_digest])
            return BuildFailure(job.id, str(exc)[:512], log_digest, made)
        tree = ingest_directory(store, scratch / "out", move=True)
        if self.cache is not None:
            logs = [log_digest] if log_digest is not None else []
            self.cache.publish([*logs, *sorted(tree.blob_digests()), tree.digest])
        made.update(output_blobs(tree))
        context = job.context()
        return BuildSuccess(
            job_id=job.id,
            dref=job.dref,
            output=tree.digest,
            context=context,
            rref=realization_ref(job.dref, context, tree.digest),
            log=log_digest,
            started=started,
            finished=datetime.now(UTC),
            metrics=metrics,
            matcher=job.derivation.matcher,
            blobs=made,
        )


def output_blobs(tree: Tree) -> dict[str, int]:
    """Digest -> size of every blob of an output: its files (and symlink targets) and the
    tree's manifest. Trees are flat (one manifest lists every path): nothing nests."""
    blobs = {e.digest: e.size for e in tree.entries.values() if e.digest is not None}
    blobs[tree.digest] = len(tree.manifest_bytes())
    return blobs


def read_metrics(path: Path) -> dict[str, Any]:
    """The metrics a build reported (``out/metrics.json``, a JSON object; {} if absent).
    The file stays in the outputs."""
    if not path.is_file() or path.is_symlink():
        return {}
    if path.stat().st_size > METRICS_MAX_BYTES:
        raise ValueError(f"{METRICS_FILE} is larger than {METRICS_MAX_BYTES} bytes")
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{METRICS_FILE} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{METRICS_FILE} must hold a JSON object (metric name -> value)")
    return doc


def stacked_tree(store: BlobStore, outputs: Sequence[str]) -> str:
    """One tree holding each of *outputs* under ``0/``, ``1/``...: an input whose
    matcher chose several realizations (stored, so every executor can read it)."""
    entries: dict[str, TreeEntry] = {}
    for k, digest in enumerate(outputs):
        tree = load_tree(store, digest)
        entries.update((f"{k}/{path}", entry) for path, entry in tree.entries.items())
        if not tree.entries:
            entries[str(k)] = TreeEntry("directory")
    stacked = Tree(entries)
    store.put_bytes(stacked.manifest_bytes())
    return stacked.digest


def input_trees(job: ClaimedJob, store: BlobStore | None = None) -> dict[str, str]:
    """The tree each input of the job is materialized from: a tree input as given, a
    derivation input as the output of the realization its matcher chose, or, when its
    matcher may choose several, the outputs of all it chose stacked (*store* needed)."""
    trees: dict[str, str] = {}
    for name, value in job.derivation.inputs.items():
        if isinstance(value, TreeInput):
            trees[name] = value.tree
        elif name in job.choices:
            if store is None:
                raise ValueError(f"input {name!r} has several realizations: a store is needed")
            trees[name] = stacked_tree(store, [r.output for r in job.choices[name]])
        else:
            trees[name] = job.inputs[name].output
    return trees
