"""Path parameters shared by several routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

DIGEST_PATTERN = r"^[0-9a-f]{64}$"

BlobDigest = Annotated[
    str, Path(pattern=DIGEST_PATTERN, description="SHA-256 of the blob (64 lowercase hex digits)")
]
RRefPath = Annotated[
    str, Path(pattern=DIGEST_PATTERN, description="the realization's RRef (64 hex digits)")
]
DRefPath = Annotated[
    str, Path(pattern=DIGEST_PATTERN, description="the derivation's DRef (64 hex digits)")
]
# ids are 64-bit: a larger one is a 422, not a database overflow
PipelineId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the pipeline's id")]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the job's id")]
