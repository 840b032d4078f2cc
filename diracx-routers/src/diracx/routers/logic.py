"""What the service does with pipelines, apart from HTTP: submissions, following events,
kills (blobs: ``diracx.routers.blob_logic``).

The handlers only parse, call these functions and shape responses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from diracx.core.builders import unhashed_fields
from diracx.core.config import VO_ADMIN, VOConfig
from diracx.core.derivation import (
    Derivation,
    PipelineSubmission,
    TreeInput,
    forced_drefs,
    plan_order,
)
from diracx.core.exceptions import (
    ConflictError,
    InvalidPipelineError,
    InvalidTreeError,
    ObjectNotFoundError,
)
from diracx.core.models import KillResponse, PipelineEvents, PipelineInfo
from diracx.core.secrets import SecretBox
from diracx.core.store import BlobStore
from diracx.core.tree import load_tree
from diracx.db.pipelines import Actor, PipelineDB
from diracx.routers.auth import AuthorizedUser
from diracx.routers.queue import JobQueue
from diracx.routers.quotas import admit_submission

MAX_WAIT = 30.0  # seconds a long poll may last
POLL_INTERVAL = 0.01  # seconds between two looks at the newest event id while long-polling


class PipelineNotFoundError(ObjectNotFoundError):
    """No pipeline has this id (a 404)."""


# -- submission ------------------------------------------------------------------------


def actor(user: AuthorizedUser) -> Actor:
    """What the database needs to know of a user: VO, subject, and whether VOAdmin."""
    return Actor(vo=user.vo, sub=user.sub, vo_admin=VO_ADMIN in user.properties)


async def submit(
    submission: PipelineSubmission,
    user: AuthorizedUser,
    db: PipelineDB,
    store: BlobStore,
    queue: JobQueue,
    *,
    limits: VOConfig | None,
    secret_key: str | None = None,
) -> PipelineInfo:
    """Check a submission without trusting the client, record it, queue its ready jobs.

    Nothing is stored for a rejected pipeline: every check happens before (or, for the
    running-jobs quota, inside) the single transaction of ``PipelineDB.submit``. The
    pipeline and its jobs are *user*'s, in their VO; everything it uses from the store
    must be the VO's, and it must fit the VO's *limits* (``diracx.routers.quotas``).
    The secrets its container steps need are sealed with *secret_key* and stored with
    their jobs.
    """
    vo = user.vo

    def visible(digests: Iterable[str]) -> set[str]:  # from check_trees_present's thread
        return anyio.from_thread.run(db.visible_blobs, vo, list(digests))

    ordered = await anyio.to_thread.run_sync(plan_order, submission)
    admit = await admit_submission(db, vo, limits, ordered)  # the VO's limits first
    await anyio.to_thread.run_sync(check_trees_present, store, ordered, visible)
    forced = forced_drefs(submission)
    extras, sealed = job_extras(ordered, submission, secret_key)
    outcome = await db.submit(
        user.sub,
        ordered,
        submission.targets,
        vo=vo,
        extras=extras,
        secrets=sealed,
        force=forced,
        admit=admit,
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


# Which of these digests the submitter's VO has a claim on (blocking).
Visible = Callable[[Iterable[str]], set[str]]


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


def _more(n: int) -> str:
    return f" (and {n} more)" if n else ""


def check_trees_present(
    store: BlobStore, ordered: list[tuple[str, Derivation]], visible: Visible
) -> None:
    """Blocking: every tree the derivations use, and every blob it lists, must be the VO's
    (*visible*: it uploaded them, or its jobs made them) and in the store.

    A digest the VO has no claim on is refused whether another VO stored it or nobody
    did, with the same message: a guessed digest reveals nothing, and builds nothing
    from another VO's data.
    """
    where: dict[str, str] = {}  # tree digest -> who needs it first, for messages
    for _, drv in ordered:
        if not drv.tree_digests():
            continue
        for digest, label in tree_labels(drv).items():
            where.setdefault(digest, f"stage {drv.name!r} {label}")
    if not where:  # a pipeline of commands only: nothing to look up
        return
    seen = visible(where)
    for digest, needed_by in where.items():
        if digest not in seen:
            raise InvalidPipelineError(
                f"{needed_by}: blob {digest} (its tree) is not in your VO's store: upload it first"
            )
    trees = {}
    for digest, needed_by in where.items():
        if not store.has(digest):
            raise InvalidPipelineError(
                f"{needed_by}: tree {digest} is not in the store: upload it first"
            )
        try:
            trees[digest] = load_tree(store, digest)
        except InvalidTreeError as exc:
            raise InvalidPipelineError(f"{needed_by}: blob {digest} is not a tree: {exc}") from None
    seen = visible({d for tree in trees.values() for d in tree.blob_digests()})
    for digest, tree in trees.items():
        paths = {e.digest: p for p, e in sorted(tree.entries.items()) if e.digest}
        listed = sorted(tree.blob_digests())
        lacking = [d for d in listed if d not in seen]
        if lacking:
            raise InvalidPipelineError(
                f"{where[digest]}: blob {lacking[0]} ({paths[lacking[0]]!r} in tree {digest}) "
                f"is not in your VO's store{_more(len(lacking) - 1)}: upload it first"
            )
        missing = store.missing(listed)
        if missing:
            raise InvalidPipelineError(
                f"{where[digest]}: tree {digest} lists blob {missing[0]} "
                f"({paths[missing[0]]!r}), which is not in the store{_more(len(missing) - 1)}: "
                "upload it first"
            )


# -- following a pipeline ----------------------------------------------------------------


async def wait_for_events(
    db: PipelineDB, pipeline_id: int, after: int, wait: float, *, vo: str
) -> PipelineEvents:
    """Events after *after* of a pipeline of *vo*; with *wait*, a long poll: return as
    soon as there are new events or the pipeline is finished, else an empty list after
    *wait* seconds."""
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    while True:
        # Until any job anywhere changes, nothing new can be found: between queries of
        # the pipeline's events, poll the cheap newest-event id (read first: no race).
        newest = await db.last_event_id()
        events = await db.pipeline_events(pipeline_id, after=after, vo=vo)
        if events is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} does not exist")
        if events.events or events.finished or time.monotonic() >= deadline:
            return events
        while await db.last_event_id() == newest and time.monotonic() < deadline:
            await anyio.sleep(POLL_INTERVAL)


# -- kill --------------------------------------------------------------------------------


async def kill_job(db: PipelineDB, job_id: int, user: AuthorizedUser) -> KillResponse:
    """Kill a live job (its worker stops the build within a second); its dependents fail.

    ObjectNotFoundError (404) for an unknown job or one of another VO, ForbiddenError
    (403) for another user's without VOAdmin, ConflictError (409) for one that ended.
    """
    outcome = await db.kill_jobs([job_id], f"Killed by {user.sub}", actor=actor(user))
    if not outcome.killed:
        job = await db.get_job(job_id, vo=user.vo)
        if job is None:
            raise ObjectNotFoundError(f"job {job_id} does not exist")
        raise ConflictError(
            f"job {job_id} already ended ({job.status}: {job.minor_status}): nothing to kill"
        )
    return KillResponse(killed=outcome.killed, failed=outcome.failed)


async def kill_pipeline(db: PipelineDB, pipeline_id: int, user: AuthorizedUser) -> KillResponse:
    """Kill every live job of a pipeline that *user* may kill (404 if unknown or of another
    VO, 403 if another user's without VOAdmin, 409 if none is live)."""
    outcome = await db.kill_pipeline(
        pipeline_id, f"Pipeline {pipeline_id} killed by {user.sub}", actor=actor(user)
    )
    if outcome is None:
        raise PipelineNotFoundError(f"pipeline {pipeline_id} does not exist")
    if not outcome.killed:
        if outcome.spared:
            raise ConflictError(
                f"pipeline {pipeline_id} has no live job of yours to kill: job(s) "
                f"{', '.join(map(str, outcome.spared))} it shares with another user's pipeline "
                f"are left running (only their owner or a user with the {VO_ADMIN} property "
                "may kill them)"
            )
        info = await db.get_pipeline(pipeline_id, vo=user.vo)
        state = info.status if info is not None else "ended"
        raise ConflictError(f"pipeline {pipeline_id} has no live job to kill (it is {state})")
    return KillResponse(killed=outcome.killed, failed=outcome.failed)
