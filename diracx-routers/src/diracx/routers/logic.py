"""What the service does, apart from HTTP: submissions, following events, receiving blobs.

The handlers only parse, call these functions and shape responses.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread

from diracx.core.builders import unhashed_fields
from diracx.core.derivation import (
    Derivation,
    PipelineSubmission,
    TreeInput,
    forced_drefs,
    plan_order,
)
from diracx.core.exceptions import (
    ConflictError,
    CorruptObjectError,
    DiracxError,
    InvalidPipelineError,
    InvalidTreeError,
    ObjectNotFoundError,
)
from diracx.core.models import (
    BlobInfo,
    BlobUpload,
    KillResponse,
    PipelineEvents,
    PipelineInfo,
    SingleUpload,
    UploadPlans,
)
from diracx.core.secrets import SecretBox
from diracx.core.store import CHUNK_SIZE, BlobStore, BlobWriter, LocalStore
from diracx.core.tree import load_tree
from diracx.db.os import S3Store
from diracx.db.pipelines import PipelineDB
from diracx.routers.queue import JobQueue

MAX_WAIT = 30.0  # seconds a long poll may last
POLL_INTERVAL = 0.01  # seconds between two looks at the newest event id while long-polling


class PipelineNotFoundError(ObjectNotFoundError):
    """No pipeline has this id (a 404)."""


class InvalidUploadError(DiracxError):
    """An upload whose bytes do not hash to the digest in its URL (a 400)."""


# -- submission ------------------------------------------------------------------------


async def submit(
    submission: PipelineSubmission,
    owner: str,
    db: PipelineDB,
    store: BlobStore,
    queue: JobQueue,
    *,
    secret_key: str | None = None,
) -> PipelineInfo:
    """Check a submission without trusting the client, record it, queue its ready jobs.

    Nothing is stored for a rejected pipeline: every check happens before the
    single transaction of ``PipelineDB.submit``. The secrets its container steps
    need are sealed with *secret_key* and stored with their jobs.
    """
    ordered = await anyio.to_thread.run_sync(instantiate, submission, store)
    forced = forced_drefs(submission)
    extras, sealed = job_extras(ordered, submission, secret_key)
    outcome = await db.submit(
        owner, ordered, submission.targets, extras=extras, secrets=sealed, force=forced
    )
    await queue.enqueue(outcome.to_queue())
    return outcome.pipeline


def job_extras(
    ordered: list[tuple[str, Derivation]], submission: PipelineSubmission, secret_key: str | None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Per DRef, the builder fields left out of the DRef (cache volumes, secret variables),
    and the values of the secrets its build needs, sealed. A secret a stage names
    must come with the submission."""
    extras: dict[str, dict[str, Any]] = {}
    sealed: dict[str, str] = {}
    box: SecretBox | None = None
    for dref, drv in ordered:
        spec = drv.builder_spec()
        extra = unhashed_fields(spec)
        if extra:
            extras[dref] = extra
        names = spec.secret_names()
        if not names:
            continue
        missing = sorted(names - set(submission.secrets))
        if missing:
            raise InvalidPipelineError(
                f"stage {drv.name!r} needs the secret(s) {', '.join(map(repr, missing))}, "
                "which the submission does not carry"
            )
        if box is None:
            if not secret_key:
                raise InvalidPipelineError(
                    f"stage {drv.name!r} uses secrets, but this service cannot keep them: "
                    "it has no DIRACX_SECRET_KEY (ask its operator to set one)"
                )
            box = SecretBox(secret_key)
        sealed[dref] = box.seal(
            {n: submission.secrets[n].get_secret_value() for n in sorted(names)}
        )
    return extras, sealed


def instantiate(submission: PipelineSubmission, store: BlobStore) -> list[tuple[str, Derivation]]:
    """Blocking: re-derive every DRef, check the graph, check the store has every tree."""
    ordered = plan_order(submission)
    check_trees_present(store, ordered)
    return ordered


def tree_labels(drv: Derivation) -> dict[str, str]:
    """How to name each tree a derivation needs, for error messages."""
    labels = {
        inp.tree: f"input {name!r}"
        for name, inp in sorted(drv.inputs.items())
        if isinstance(inp, TreeInput)
    }
    source = drv.builder.get("source")
    if isinstance(source, str):
        labels.setdefault(source, "python source")
    return {digest: labels.get(digest, "tree") for digest in sorted(drv.tree_digests())}


def check_trees_present(store: BlobStore, ordered: list[tuple[str, Derivation]]) -> None:
    """Every tree the derivations use, and every blob it lists, must be in the store."""
    checked: set[str] = set()
    for _, drv in ordered:
        for digest, label in tree_labels(drv).items():
            if digest in checked:
                continue
            where = f"stage {drv.name!r} {label}"
            if not store.has(digest):
                raise InvalidPipelineError(
                    f"{where}: tree {digest} is not in the store: upload it first"
                )
            try:
                tree = load_tree(store, digest)
            except InvalidTreeError as exc:
                raise InvalidPipelineError(f"{where}: blob {digest} is not a tree: {exc}") from None
            paths = {e.digest: p for p, e in sorted(tree.entries.items()) if e.digest}
            missing = store.missing(sorted(tree.blob_digests()))
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise InvalidPipelineError(
                    f"{where}: tree {digest} lists blob {missing[0]} ({paths[missing[0]]!r}), "
                    f"which is not in the store{more}: upload it first"
                )
            checked.add(digest)


# -- following a pipeline ----------------------------------------------------------------


async def wait_for_events(
    db: PipelineDB, pipeline_id: int, after: int, wait: float
) -> PipelineEvents:
    """Events after *after*; with *wait*, a long poll: return as soon as there are new
    events or the pipeline is finished, else an empty list after *wait* seconds."""
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    while True:
        # Until any job anywhere changes, nothing new can be found: between queries of
        # the pipeline's events, poll the cheap newest-event id (read first: no race).
        newest = await db.last_event_id()
        events = await db.pipeline_events(pipeline_id, after=after)
        if events is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} does not exist")
        if events.events or events.finished or time.monotonic() >= deadline:
            return events
        while await db.last_event_id() == newest and time.monotonic() < deadline:
            await anyio.sleep(POLL_INTERVAL)


# -- blobs -------------------------------------------------------------------------------


def _open_upload(store: LocalStore, digest: str) -> BlobInfo | BlobWriter:
    """The blob if the store has it, else a writer for it."""
    if store.has(digest):
        return BlobInfo(digest=digest, size=store.size(digest))
    return store.writer()


async def receive_blob(
    store: LocalStore, digest: str, chunks: AsyncIterator[bytes]
) -> tuple[BlobInfo, bool]:
    """Store an upload if its bytes hash to *digest*; return the blob and whether it is new.

    The body is written in chunks of about ``CHUNK_SIZE`` off the event loop; a
    body that hashes to anything else is refused and nothing is stored.
    """
    existing = await anyio.to_thread.run_sync(_open_upload, store, digest)
    if isinstance(existing, BlobInfo):
        async for _ in chunks:  # drain the body: the blob is already there
            pass
        return existing, False
    with existing as writer:
        pending: list[bytes] = []
        pending_size = 0
        async for chunk in chunks:
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= CHUNK_SIZE:
                await anyio.to_thread.run_sync(writer.write, b"".join(pending))
                pending, pending_size = [], 0
        data = b"".join(pending)

        def finish() -> tuple[str, int]:
            writer.write(data)
            return writer.commit(digest)

        try:
            _, size = await anyio.to_thread.run_sync(finish)
        except CorruptObjectError as exc:
            raise InvalidUploadError(f"upload refused, nothing stored: {exc}") from None
    return BlobInfo(digest=digest, size=size), True


class ObjectStoreUploadError(DiracxError):
    """A blob sent through the service although the store is S3 (a 400: use the plans)."""


def local_upload_url(digest: str) -> str:
    """The service's own upload URL, relative to the service URL (``DIRACX_URL``)."""
    return f"/api/blobs/{digest}"


def _plan(store: LocalStore | S3Store, blobs: list[BlobUpload]) -> UploadPlans:
    sizes = {b.digest: b.size for b in blobs}
    missing = store.missing(sizes)
    if isinstance(store, S3Store):
        return UploadPlans(uploads=[store.plan_upload(d, sizes[d]) for d in missing])
    return UploadPlans(
        uploads=[
            SingleUpload(
                digest=d,
                size=sizes[d],
                url=local_upload_url(d),
                headers={"Content-Type": "application/octet-stream"},
            )
            for d in missing
        ]
    )


async def plan_uploads(store: LocalStore | S3Store, blobs: list[BlobUpload]) -> UploadPlans:
    """How to upload each of *blobs* the store lacks: presigned URLs to the object store,
    or the service's own PUT for a local store (the client does the same either way)."""
    return await anyio.to_thread.run_sync(_plan, store, blobs)


async def complete_upload(
    store: LocalStore | S3Store, digest: str, upload_id: str
) -> tuple[BlobInfo, bool]:
    """Check a finished upload (its bytes must hash to *digest*) and put the blob in place."""
    if not isinstance(store, S3Store):
        raise InvalidUploadError(
            "this service keeps blobs in a local directory: PUT /api/blobs/{digest} "
            "stores a blob, and there is no upload to complete"
        )
    size, created = await anyio.to_thread.run_sync(store.complete_upload, digest, upload_id)
    return BlobInfo(digest=digest, size=size), created


# -- kill --------------------------------------------------------------------------------


async def kill_job(db: PipelineDB, job_id: int, by: str) -> KillResponse:
    """Kill a live job (its worker stops the build within a second); its dependents fail.

    ObjectNotFoundError (404) for an unknown job, ConflictError (409) for one that ended.
    """
    outcome = await db.kill_jobs([job_id], f"Killed by {by}")
    if not outcome.killed:
        job = await db.get_job(job_id)
        if job is None:
            raise ObjectNotFoundError(f"job {job_id} does not exist")
        raise ConflictError(
            f"job {job_id} already ended ({job.status}: {job.minor_status}): nothing to kill"
        )
    return KillResponse(killed=outcome.killed, failed=outcome.failed)


async def kill_pipeline(db: PipelineDB, pipeline_id: int, by: str) -> KillResponse:
    """Kill every live job of a pipeline (404 if unknown, 409 if none is live)."""
    outcome = await db.kill_pipeline(pipeline_id, f"Pipeline {pipeline_id} killed by {by}")
    if outcome is None:
        raise PipelineNotFoundError(f"pipeline {pipeline_id} does not exist")
    if not outcome.killed:
        info = await db.get_pipeline(pipeline_id)
        state = info.status if info is not None else "ended"
        raise ConflictError(f"pipeline {pipeline_id} has no live job to kill (it is {state})")
    return KillResponse(killed=outcome.killed, failed=outcome.failed)
