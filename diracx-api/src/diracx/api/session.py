"""Sessions: submit pipelines to an engine and follow them to the end.

``AsyncSession`` does the work; ``diracx.api.sync.Session`` offers the same
calls to code that is not async.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diracx.api.engine import ensure_engine
from diracx.api.instantiate import Instantiated, instantiate
from diracx.api.realization import AsyncRealization
from diracx.client import AsyncDiracxClient
from diracx.client.client import UploadPlan
from diracx.client.credentials import CredentialsFile
from diracx.client.jobs import JobsClient
from diracx.client.pipelines import PipelinesClient
from diracx.client.store_gc import GCClient
from diracx.client.tokens import StoredLogin
from diracx.core.derivation import forced_drefs
from diracx.core.exceptions import DiracxError, InvalidPipelineError
from diracx.core.gc import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_KEEP_DAYS,
    GCReport,
    GCRequest,
    PinInfo,
)
from diracx.core.job_search import (
    HeartbeatData,
    JobActionResponse,
    JobHeartbeatResponse,
    JobSearchPage,
    JobSearchRequest,
    JobStatusUpdate,
    JobStatusUpdateResponse,
    JobSummaryRequest,
    SearchSpec,
    SortSpec,
)
from diracx.core.matching import PipelinePlan
from diracx.core.models import (
    JobEvent,
    JobInfo,
    KillResponse,
    Metadata,
    PipelineInfo,
    PipelinePage,
    PipelineState,
    RetryResponse,
    StageInfo,
    StatusHistoryEntry,
)
from diracx.core.settings import ClientSettings
from diracx.core.store import LocalStore
from diracx.core.tree import Tree
from diracx.core.version import check_versions

if TYPE_CHECKING:
    from diracx.api.login import AuthSource, WhoAmI
    from diracx.api.store import AsyncStore

UPLOAD_CONCURRENCY = 8
EVENTS_WAIT = 10.0  # seconds one long-poll may wait for news
# Least seconds between two polls: on a busy pipeline there is always news, and each
# poll makes the server read the pipeline's state; a tenth of a second is live enough.
EVENTS_INTERVAL = 0.1
LOG_TAIL_LINES = 20


class PipelineFailedError(DiracxError):
    """A stage failed; the message names it and ends with the tail of its log."""

    def __init__(self, message: str, result: PipelineResult) -> None:
        super().__init__(message)
        self.result = result


class Progress:
    """Receives what happens to a pipeline; the CLI draws it. Methods do nothing here."""

    def instantiated(self, inst: Instantiated) -> None: ...

    def uploading(self, blobs: int, size: int) -> None: ...

    def submitted(self, pipeline: PipelineInfo) -> None: ...

    def event(self, event: JobEvent) -> None: ...


@dataclass
class PipelineResult:
    """How a pipeline ended, stage by stage."""

    pipeline: PipelineInfo
    targets: list[str]
    failures: dict[str, str] = field(default_factory=dict)  # stage name -> reason and log tail

    @property
    def ok(self) -> bool:
        return self.pipeline.status == "Done"

    @property
    def stages(self) -> list[StageInfo]:
        return self.pipeline.stages

    def built(self) -> list[StageInfo]:
        return [s for s in self.stages if not s.cached and s.status == "Done"]

    def cached(self) -> list[StageInfo]:
        return [s for s in self.stages if s.cached]

    def failed(self) -> list[StageInfo]:
        return [s for s in self.stages if s.status in ("Failed", "Killed")]

    def summary(self) -> dict[str, Any]:
        def names(stages: Iterable[StageInfo]) -> list[str]:
            return sorted(s.name for s in stages)

        return {
            "pipeline_id": self.pipeline.id,
            "status": self.pipeline.status,
            "built": names(self.built()),
            "cached": names(self.cached()),
            "failed": names(self.failed()),
            "failures": self.failures,
            "targets": {
                s.name: {"dref": s.dref, "rref": s.rref, "output": s.output}
                for s in self.stages
                if s.dref in self.targets
            },
        }


class AsyncSession:
    """A connection to an engine: the service at DIRACX_URL, or the embedded one."""

    def __init__(
        self, client: AsyncDiracxClient, cache: LocalStore, *, auth: AuthSource = "token"
    ) -> None:
        self.client = client
        self.cache = cache  # blobs downloaded from the engine, verified
        self.auth: AuthSource = auth  # where the token comes from (whoami says it)
        self._trees: dict[str, Tree] = {}

    @classmethod
    async def open(cls, url: str | None = None, token: str | None = None) -> AsyncSession:
        """A session to *url* (``DIRACX_URL``; unset: the embedded engine), with *token*
        (``DIRACX_TOKEN``; unset: the login stored by ``dirac login``, refreshed as needed)."""
        check_versions()  # a mix of diracx versions is reported before anything else
        settings = ClientSettings()
        url = url or settings.url
        auth: AuthSource = "token"
        if url is None:
            engine = await asyncio.to_thread(ensure_engine, settings.data_dir)
            url, token, auth = engine.url, engine.token, "engine"
        elif token is None and settings.token is not None:
            token = settings.token.get_secret_value()
        if token is None:
            login = StoredLogin(url, CredentialsFile(settings.credentials_path))
            client = AsyncDiracxClient(url, login)
            auth = "login"
        else:
            client = AsyncDiracxClient(url, token)
        return cls(client, LocalStore(settings.data_dir / "cache"), auth=auth)

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- running pipelines -----------------------------------------------------------

    async def run(
        self, targets: Any, progress: Progress | None = None, *, force: Iterable[Any] = ()
    ) -> tuple[Instantiated, PipelineResult]:
        """Instantiate, upload what the engine lacks, submit, and follow to the end.

        *force*: stages (Stage objects, names or DRefs) to build again although their
        matcher is satisfied; a non-deterministic build adds a realization."""
        progress = progress or Progress()
        inst = self._instantiate(targets, force)
        progress.instantiated(inst)
        secrets = secret_values(inst)
        await self._upload(inst, progress)
        pipeline = await self.client.submit_pipeline(inst.submission, secrets)
        progress.submitted(pipeline)
        if pipeline.status == "Running":
            pipeline = await self._follow(pipeline.id, progress)
        result = PipelineResult(pipeline=pipeline, targets=inst.targets)
        for stage in result.failed():
            result.failures[stage.name] = await self._failure_report(stage)
        return inst, result

    def _instantiate(self, targets: Any, force: Iterable[Any]) -> Instantiated:
        try:
            inst = instantiate(targets)
        except (OSError, ValueError, TypeError) as exc:  # a missing host file, a bad target...
            raise InvalidPipelineError(f"cannot instantiate the pipeline: {exc}") from exc
        names = [force_name(inst, item) for item in force]
        if names:
            submission = inst.submission.model_copy(update={"force": names})
            forced_drefs(submission)  # an unknown stage is reported before any upload
            inst = dataclasses.replace(inst, submission=submission)
        return inst

    async def plan(self, targets: Any, *, force: Iterable[Any] = ()) -> PipelinePlan:
        """A dry run: for every stage of *targets*, whether the engine would reuse it or
        build it, and why ("cached (RRef …)", "never built", "input 'x' changed",
        "matcher some(3): 1 of 3", "forced"). Nothing is uploaded or recorded."""
        inst = self._instantiate(targets, force)
        return await self.client.plan_pipeline(inst.submission)

    dry_run = plan

    async def realize(
        self, targets: Any, progress: Progress | None = None, *, force: Iterable[Any] = ()
    ) -> Any:
        """Realize *targets* (a stage, a list or a dict of stages); return their realizations
        in the same shape. Raises PipelineFailedError if a stage failed."""
        inst, result = await self.run(targets, progress, force=force)
        if not result.ok:
            raise PipelineFailedError(failure_message(result), result)
        by_dref = {s.dref: s for s in result.stages}
        realizations = {
            d: AsyncRealization(self, rref=s.rref or "", dref=d, name=s.name, output=s.output or "")
            for d, s in by_dref.items()
            if d in inst.targets
        }
        return inst.arrange(realizations)

    async def _upload(self, inst: Instantiated, progress: Progress) -> None:
        if not inst.uploads:
            return
        # One call says what the engine lacks and how to send it: to the service, or
        # straight to the object store through presigned URLs (digests computed already)
        plans = await self.client.plan_uploads([(d, inst.upload_size(d)) for d in inst.uploads])
        if not plans:
            return
        progress.uploading(len(plans), sum(p.size for p in plans))
        limit = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def upload(plan: UploadPlan) -> None:
            async with limit:
                await self.client.send_blob(plan, inst.uploads[plan.digest])

        await asyncio.gather(*(upload(p) for p in plans))

    async def _follow(self, pipeline_id: int, progress: Progress) -> PipelineInfo:
        after = 0
        while True:
            asked = time.monotonic()
            batch = await self.client.pipeline_events(pipeline_id, after=after, wait=EVENTS_WAIT)
            for event in batch.events:
                progress.event(event)
            after = batch.last_event_id
            if batch.finished:
                return await self.client.get_pipeline(pipeline_id)
            await asyncio.sleep(max(0.0, asked + EVENTS_INTERVAL - time.monotonic()))

    async def _failure_report(self, stage: StageInfo) -> str:
        reason = stage.minor_status or "failed"
        if stage.job_id is None:
            return reason
        job = await self.client.get_job(stage.job_id)
        if job.log is None:
            return reason
        tail = (
            (await self.fetch_blob(job.log)).decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        )
        return reason + "\n" + "\n".join(tail)

    # -- reading results -------------------------------------------------------------

    async def pipeline(self, pipeline_id: int) -> PipelineInfo:
        return await self.client.get_pipeline(pipeline_id)

    async def job(self, job_id: int) -> JobInfo:
        return await self.client.get_job(job_id)

    # -- killing -----------------------------------------------------------------------

    async def kill_job(self, job_id: int) -> KillResponse:
        """Kill a live job: it ends Killed (its build stops within about a second) and
        the jobs that need it fail. A job that already ended: DiracxError (HTTP 409)."""
        return await self.client.kill_job(job_id)

    async def kill_pipeline(self, pipeline_id: int) -> KillResponse:
        """Kill every live job of a pipeline. None is live: DiracxError (HTTP 409)."""
        return await self.cancel_pipeline(pipeline_id)

    async def cancel_pipeline(self, pipeline_id: int) -> KillResponse:
        """Kill every live job of a pipeline. None is live: DiracxError (HTTP 409)."""
        return await PipelinesClient(self.client).cancel(pipeline_id)

    async def retry_pipeline(self, pipeline_id: int) -> RetryResponse:
        """Build a pipeline's Failed and Killed jobs again (and so the stages that failed
        because of them). None can be: DiracxError (HTTP 409) with the reasons."""
        return await PipelinesClient(self.client).retry(pipeline_id)

    async def list_pipelines(
        self,
        *,
        limit: int = 50,
        cursor: int | None = None,
        owner: str | None = None,
        status: PipelineState | None = None,
    ) -> PipelinePage:
        """A page of the VO's pipelines, newest first (``next_cursor`` as *cursor*: the
        next page); only *owner*'s, only those Running, Done or Failed, if given."""
        return await PipelinesClient(self.client).list(
            limit=limit, cursor=cursor, owner=owner, status=status
        )

    # -- the jobs API (DIRAC's manner) -------------------------------------------------

    async def search_jobs(
        self,
        search: Iterable[SearchSpec | dict[str, Any]] = (),
        *,
        sort: Iterable[SortSpec | dict[str, Any]] = (),
        parameters: list[str] | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> JobSearchPage:
        """A page of the jobs matching every filter (``{"parameter": "status",
        "operator": "eq", "value": "Failed"}``), in *sort* order; ``total`` counts all."""
        request = JobSearchRequest.model_validate(
            {"search": list(search), "sort": list(sort), "parameters": parameters}
        )
        return await JobsClient(self.client).search(request, page=page, per_page=per_page)

    async def job_summary(
        self, grouping: list[str], search: Iterable[SearchSpec | dict[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        """How many jobs match, per distinct value of the *grouping* attributes."""
        request = JobSummaryRequest.model_validate({"grouping": grouping, "search": list(search)})
        return await JobsClient(self.client).summary(request)

    async def set_job_status(
        self, changes: dict[int, JobStatusUpdate | dict[str, Any]]
    ) -> JobStatusUpdateResponse:
        """Change jobs' statuses (``{id: {"Status": ..., "MinorStatus": ...}}``); the
        refused ones are in ``failed``, with the reason."""
        updates = {k: JobStatusUpdate.model_validate(v) for k, v in changes.items()}
        return await JobsClient(self.client).set_status(updates)

    async def job_heartbeat(
        self, beats: dict[int, HeartbeatData] | list[int]
    ) -> JobHeartbeatResponse:
        """Report Running jobs alive (their ids, or ``{id: {"LoadAverage": ...}}``); the
        refused ones are in ``failed``, with the reason."""
        return await JobsClient(self.client).heartbeat(beats)

    async def job_history(self, job_id: int) -> list[StatusHistoryEntry]:
        return await JobsClient(self.client).history(job_id)

    async def delete_job(self, job_id: int) -> JobActionResponse:
        """Mark an ended job Deleted (a live one: DiracxError, HTTP 409)."""
        return await JobsClient(self.client).delete(job_id)

    async def reschedule_job(self, job_id: int) -> JobActionResponse:
        """Build a Failed, Killed or Stalled job again (otherwise DiracxError, HTTP 409)."""
        return await JobsClient(self.client).reschedule(job_id)

    async def server_metadata(self) -> Metadata:
        return await self.client.metadata()

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call a route of the service that has no method here (an extension's): its JSON
        answer (see ``AsyncDiracxClient.request_json``)."""
        return await self.client.request_json(method, path, **kwargs)

    async def whoami(self) -> WhoAmI:
        """Who this session acts as (user, VO, group, properties) and until when."""
        from diracx.api.login import WhoAmI

        user = await self.client.userinfo()
        tokens = self.client.tokens
        stored = await tokens.login() if isinstance(tokens, StoredLogin) else None
        return WhoAmI(
            url=self.client.url,
            user=user,
            auth=self.auth,
            expires_at=stored.expires_at if stored else await self.client.token_expiry(),
            refresh_expires_at=stored.refresh_expires_at if stored else None,
        )

    @property
    def store(self) -> AsyncStore:
        """The engine's store: list, read, export, import, verify (diracx.api.store)."""
        from diracx.api.store import AsyncStore

        # the cache is <data dir>/cache: local copies (store.path) go beside it
        return AsyncStore(self, self.cache.root.parent)

    async def realization(self, rref: str) -> AsyncRealization:
        info = await self.client.get_realization(rref)
        return AsyncRealization(
            self, rref=info.rref, dref=info.dref, name=info.name, output=info.output
        )

    async def job_log(self, job_id: int) -> str:
        job = await self.client.get_job(job_id)
        return "" if job.log is None else (await self.fetch_blob(job.log)).decode(errors="replace")

    async def fetch_blob(self, digest: str) -> bytes:
        await self.fetch_blobs([digest])
        return self.cache.read_bytes(digest)

    async def fetch_blobs(self, digests: Iterable[str]) -> None:
        """Download into the local cache the blobs it does not have yet (verified)."""
        missing = self.cache.missing(digests)
        limit = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def fetch(digest: str) -> None:
            async with limit:
                await self.client.download_blob(digest, self.cache)

        await asyncio.gather(*(fetch(d) for d in missing))

    async def fetch_tree(self, digest: str) -> Tree:
        if digest not in self._trees:
            self._trees[digest] = Tree.from_bytes(await self.fetch_blob(digest))
        return self._trees[digest]

    # -- pins and garbage collection -------------------------------------------------

    async def pin(self, name: str, rref: str) -> PinInfo:
        """Name a realization (an RRef or a unique prefix of it): it and its whole
        closure survive garbage collection."""
        return await GCClient(self.client).pin(name, await self.store.resolve(rref))

    async def unpin(self, name: str) -> PinInfo:
        return await GCClient(self.client).unpin(name)

    async def pins(self) -> list[PinInfo]:
        return await GCClient(self.client).pins()

    async def collect_garbage(
        self,
        *,
        dry_run: bool = False,
        keep_days: float = DEFAULT_KEEP_DAYS,
        target_size: int | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> GCReport:
        """Remove what no pin, no pipeline younger than *keep_days* and no live job
        reaches (``dry_run``: only report it); see ``diracx.core.gc``."""
        request = GCRequest(
            dry_run=dry_run,
            keep_days=keep_days,
            target_size=target_size,
            grace_seconds=grace_seconds,
        )
        return await GCClient(self.client).collect(request)


def force_name(inst: Instantiated, item: Any) -> str:
    """What ``force`` names: a stage of the pipeline (its DRef), a name or a DRef."""
    if isinstance(item, str):
        return item
    for dref, stage in inst.stages.items():
        if stage is item:
            return dref
    name = getattr(item, "name", None)
    if isinstance(name, str):
        return name
    raise TypeError(f"force takes stages, stage names or DRefs, not {type(item).__name__}")


def secret_values(inst: Instantiated) -> dict[str, str]:
    """The values of the secrets the pipeline's container steps name (read now: a secret
    from an environment variable is read when the pipeline is submitted)."""
    values: dict[str, str] = {}
    for stage in inst.stages.values():
        given = getattr(stage, "secret_values", None)
        if given is None:
            continue
        for name, value in given().items():
            if values.setdefault(name, value) != value:
                raise InvalidPipelineError(
                    f"the secret {name!r} has two different values in this pipeline"
                )
    return values


def failure_message(result: PipelineResult) -> str:
    lines = [f"pipeline {result.pipeline.id} failed:"]
    for name, report in result.failures.items():
        lines.append(f"--- stage {name}: {report}")
    return "\n".join(lines)


async def aconnect(url: str | None = None, token: str | None = None) -> AsyncSession:
    """Open a session: ``async with await aconnect() as s`` or ``s = await aconnect()``."""
    return await AsyncSession.open(url, token)
