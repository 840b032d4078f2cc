"""The documents the service and its clients exchange (the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from diracx.core.status import JobStatus

StageState = Literal["cached", "queued", "waiting", "running", "done", "failed", "killed"]


class StageInfo(BaseModel):
    """One derivation of a pipeline: reused from the store, or built by a job."""

    dref: str
    name: str
    cached: bool = Field(description="true if an existing realization was reused, no job needed")
    job_id: int | None = None
    status: JobStatus | None = None  # the job's status, None when cached
    minor_status: str | None = None
    rref: str | None = None  # the realization, once there is one
    output: str | None = None  # the realization's output tree digest


class PipelineInfo(BaseModel):
    id: int
    owner: str
    created: datetime
    targets: list[str]
    status: Literal["Running", "Done", "Failed"]
    counts: dict[str, int] = Field(
        description="number of stages per state: cached, or a job status"
    )
    stages: list[StageInfo]


class SubmitResponse(BaseModel):
    pipeline: PipelineInfo


class StatusHistoryEntry(BaseModel):
    status: JobStatus
    minor_status: str
    timestamp: datetime
    source: str


class JobInfo(BaseModel):
    id: int
    pipeline_id: int
    dref: str
    name: str
    status: JobStatus
    minor_status: str
    worker: str | None = None
    attempt: int
    created: datetime
    updated: datetime
    rref: str | None = None
    log: str | None = Field(default=None, description="digest of the build log blob")
    history: list[StatusHistoryEntry] = []


class KillResponse(BaseModel):
    """What a kill did: the jobs it killed, and the jobs that fail because an input was killed."""

    killed: list[int]
    failed: list[int]


# A pipeline's state, from its jobs: Failed if one failed or was killed, Done if all are
# Done (or every stage was cached), Running otherwise (as PipelineInfo.status).
PipelineState = Literal["Running", "Done", "Failed"]


class PipelineSummary(BaseModel):
    """A pipeline in a list: who submitted it, when, and how far its jobs are."""

    id: int
    owner: str
    created: datetime
    status: PipelineState
    target_count: int = Field(description="how many stages the submission asked for")
    counts: dict[str, int] = Field(
        description="number of stages per state: cached, or a job status"
    )


class PipelinePage(BaseModel):
    """Pipelines, newest first; ``next_cursor`` asks for the next (older) page."""

    pipelines: list[PipelineSummary]
    next_cursor: int | None = Field(
        default=None,
        description="pass it as `cursor` for the next page; null when this is the last one",
    )


class RetriedJob(BaseModel):
    """A job a retry rescheduled: Waiting (queued) or Checking (its inputs are rebuilt)."""

    id: int
    name: str
    status: JobStatus


class RetryResponse(BaseModel):
    """What a pipeline retry did: the jobs rescheduled, and the failed or killed jobs
    left as they are, with the reason."""

    retried: list[RetriedJob]
    skipped: dict[int, str] = {}


class JobEvent(BaseModel):
    """A status change of a pipeline's job, for following progress."""

    id: int
    job_id: int
    dref: str
    name: str
    status: JobStatus
    minor_status: str
    timestamp: datetime


class PipelineEvents(BaseModel):
    events: list[JobEvent]
    last_event_id: int
    finished: bool = Field(description="true once every stage of the pipeline is final")


class RealizationInfo(BaseModel):
    rref: str
    dref: str
    name: str
    output: str = Field(description="digest of the output tree")
    context: dict[str, list[str]] = Field(
        description="input name -> realizations it was built from"
    )
    log: str | None = None
    metrics: dict[str, Any] = {}
    job_id: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    created: datetime


class MissingBlobsRequest(BaseModel):
    digests: list[str] = Field(max_length=100_000)


class MissingBlobsResponse(BaseModel):
    missing: list[str]


class BlobInfo(BaseModel):
    digest: str
    size: int


MAX_BLOB_SIZE = 5 * 1024**4  # 5 TiB: the largest object S3 keeps


class BlobUpload(BaseModel):
    """A blob a client wants to upload: ``POST /api/blobs/uploads`` takes a list of them."""

    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the blob")
    size: int = Field(ge=0, le=MAX_BLOB_SIZE, description="its size in bytes")


class SingleUpload(BaseModel):
    """Send the whole blob with one request; then, if ``upload_id`` is set, complete it."""

    kind: Literal["single"] = "single"
    digest: str
    size: int
    method: Literal["PUT"] = "PUT"
    # Relative (``/api/...``): the service itself, with the usual credentials.
    # Absolute: the object store (a presigned URL): send no credentials.
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    # None: the PUT stores the blob. Else ``POST /api/blobs/uploads/{digest}/complete``.
    upload_id: str | None = None


class UploadPartURL(BaseModel):
    number: int  # from 1; part n holds bytes [(n-1)*part_size, n*part_size)
    url: str


class MultipartUpload(BaseModel):
    """PUT each part (in any order, in parallel) to its URL, then complete the upload."""

    kind: Literal["multipart"] = "multipart"
    digest: str
    size: int
    upload_id: str
    part_size: int
    parts: list[UploadPartURL]


UploadPlan = Annotated[SingleUpload | MultipartUpload, Field(discriminator="kind")]


class UploadPlans(BaseModel):
    """One plan per blob the store lacks (blobs it has are left out)."""

    uploads: list[UploadPlan]


class CompleteUpload(BaseModel):
    upload_id: str = Field(min_length=1, max_length=2048)


class Metadata(BaseModel):
    """What ``/.well-known/dirac-metadata`` tells clients before they log in."""

    version: str
    min_client_version: str
    executors: list[str]
    auth: Literal["static-token"] = "static-token"
