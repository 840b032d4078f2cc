"""The dry run: what a submission would reuse and build, and why; nothing is recorded."""

from __future__ import annotations

import anyio.to_thread

from diracx.core.derivation import PipelineSubmission, forced_drefs, plan_order
from diracx.core.matching import PipelinePlan
from diracx.db.pipelines import PipelineDB


async def plan_pipeline(submission: PipelineSubmission, db: PipelineDB, *, vo: str) -> PipelinePlan:
    """Check a submission's graph and hashes as ``submit`` does, and ``force``; then say
    for every stage, inputs first, what *vo* would do (it reuses only its realizations
    and joins only its jobs): reuse ("cached (RRef …)"), build ("never built",
    "input 'x' changed", "matcher some(3): 1 of 3", "forced"), join (a live job builds
    it) or error (a matcher that cannot choose, as submitting would report it).

    Nothing is recorded, and nothing needs uploading first: the trees a pipeline uses
    are not looked at (submitting checks them), nor are secrets.
    """
    ordered = await anyio.to_thread.run_sync(plan_order, submission)
    return await db.plan(ordered, force=forced_drefs(submission), vo=vo)
