"""The app as a whole: spec, health, metadata, the Celery job queue, service selection."""

from __future__ import annotations

import base64
import json
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from diracx.core import extensions
from diracx.core.broker import REALIZE_BATCH, REALIZE_TASK, QueuedJob
from diracx.core.derivation import Derivation
from diracx.core.settings import ServiceSettings
from diracx.routers import create_app
from diracx.routers.queue import CeleryJobQueue

OPERATION_IDS = {
    "submit_pipeline",
    "plan_pipeline",
    "get_pipeline",
    "pipeline_events",
    "get_job",
    "kill_job",
    "kill_pipeline",
    # pipelines list, cancel (kill's new name), retry; pilots' heartbeats
    "list_pipelines",
    "cancel_pipeline",
    "retry_pipeline",
    "add_heartbeat",
    "missing_blobs",
    "upload_blob",
    "download_blob",
    "plan_blob_uploads",
    "complete_blob_upload",
    "get_realization",
    "list_realizations",
    "list_pins",
    "pin_realization",
    "unpin_realization",
    "collect_garbage",
    "store_list_realizations",
    "realization_provenance",
    "store_closure",
    "store_sizes",
    "store_import",
    "store_verify",
    "get_metadata",
    "live",
    "ready",
    # the jobs API (diracx.routers.job_search)
    "search_jobs",
    "summarize_jobs",
    "set_job_statuses",
    "get_job_history",
    "delete_job",
    "reschedule_job",
    # DiracX's own tokens (diracx.routers.token_endpoint, well_known)
    "issue_token",
    "revoke_token",
    "userinfo",
    "get_openid_configuration",
    "get_jwks",
    # dirac login's device flow (diracx.routers.device_flow)
    "device_authorization",
    "device_verification",
    "device_login",
    "device_callback",
    # the configuration and the startup probe
    "get_config",
    "startup",
    # gubbins, the example extension installed in the workspace (extensions/gubbins)
    "list_lollygags",
    "add_lollygag",
}


def test_openapi_spec_is_public_and_names_every_operation(anonymous: TestClient) -> None:
    r = anonymous.get("/api/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    ops = {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}
    assert set(ops) == OPERATION_IDS
    assert all(op["tags"] for op in ops.values())
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert "security" in ops["submit_pipeline"] and "security" not in ops["live"]
    upload = ops["upload_blob"]["requestBody"]["content"]
    assert upload == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    # errors are documented with their real shape
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert ops["submit_pipeline"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorResponse"
    }
    assert anonymous.get("/api/docs").status_code == 200


def test_health(client: TestClient, anonymous: TestClient) -> None:
    assert anonymous.get("/api/health/live").json() == {"status": "live"}
    assert anonymous.get("/api/health/ready").json() == {"status": "ready"}


# not ready while the database or the broker is away: test_health.py


def test_metadata(anonymous: TestClient, settings: ServiceSettings) -> None:
    meta = anonymous.get("/.well-known/dirac-metadata").json()
    assert {"process", "python"} <= set(meta["executors"])
    assert meta["min_client_version"] == settings.min_client_version
    assert meta["version"]


# -- the real Celery producer, on the filesystem transport ---------------------------------


def read_messages(settings: ServiceSettings) -> list[dict[str, Any]]:
    """The messages waiting in the filesystem broker, oldest first."""
    files = sorted((settings.broker_dir / "queue").iterdir())
    return [json.loads(f.read_bytes()) for f in files]


def task_of(message: dict[str, Any]) -> tuple[str, list[Any]]:
    body = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], body[0]


def test_celery_queue_writes_messages_by_task_name(tmp_path: Path) -> None:
    settings = ServiceSettings(data_dir=tmp_path)
    queue = CeleryJobQueue(settings)
    try:
        anyio.run(queue.enqueue, [QueuedJob(i, "default") for i in range(1, REALIZE_BATCH + 6)])
    finally:
        queue.close()
    # (the transport names files by millisecond: messages of the same one come in any order)
    messages = sorted(task_of(m) for m in read_messages(settings))
    assert messages == [
        (REALIZE_TASK, [list(range(1, REALIZE_BATCH + 1))]),
        (REALIZE_TASK, [list(range(REALIZE_BATCH + 1, REALIZE_BATCH + 6))]),
    ]


def test_submission_queues_a_celery_message(tmp_path: Path, db_url: str) -> None:
    from diracx.db.migrate import upgrade

    upgrade(db_url)
    settings = ServiceSettings(data_dir=tmp_path, db_url=db_url, service_token=SecretStr("t"))
    drv = Derivation(name="a", builder={"executor": "process", "argv": ["true"]})
    body = {"derivations": {drv.dref: drv.model_dump(mode="json")}, "targets": [drv.dref]}
    with TestClient(create_app(settings), headers={"Authorization": "Bearer t"}) as c:
        r = c.post("/api/pipelines", json=body)
        assert r.status_code == 201
        job_id = r.json()["pipeline"]["stages"][0]["job_id"]
        deadline = time.monotonic() + 10
        while not list((settings.broker_dir / "queue").iterdir()):
            assert time.monotonic() < deadline, "no message was queued"
            time.sleep(0.01)
    assert [task_of(m) for m in read_messages(settings)] == [(REALIZE_TASK, [[job_id]])]


# -- services from entry points ------------------------------------------------------------


def test_an_extension_overrides_a_service_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = list(entry_points(group=extensions.SERVICES))
    assert {ep.name for ep in ours} >= {"pipelines", "jobs", "blobs", "health", "well_known"}
    theirs = EntryPoint(name="jobs", value="myext.routers.jobs:router", group=extensions.SERVICES)
    monkeypatch.setattr(extensions, "entry_points", lambda group: [*ours, theirs])
    chosen = extensions.select_entry_points(extensions.SERVICES)
    assert chosen["jobs"].value == "myext.routers.jobs:router"
    assert chosen["pipelines"].value == "diracx.routers.pipelines:router"

    twice = EntryPoint(name="jobs", value="other.jobs:router", group=extensions.SERVICES)
    monkeypatch.setattr(extensions, "entry_points", lambda group: [*ours, theirs, twice])
    with pytest.raises(RuntimeError, match=r"extensions provide 'jobs' in diracx\.services"):
        extensions.select_entry_points(extensions.SERVICES)
