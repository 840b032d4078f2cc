"""Submitting container steps that use secrets: sealed at rest, never echoed back."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from diracx.core.derivation import Derivation
from diracx.core.secrets import SecretBox, new_key
from diracx.core.settings import ServiceSettings
from diracx.core.tree import Tree, TreeEntry
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import job_secrets, jobs

from .test_pipelines import upload

VALUE = "hunter2-never-echoed"
KEY = new_key()


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    settings.secret_key = SecretStr(KEY)
    return settings


def layer_tree(client: TestClient) -> str:
    """Uploaded as a client does: the caller's VO may use it."""
    blob = upload(client, b"\0" * 1024)  # an empty tar
    tree = Tree({"layer.tar": TreeEntry("file", blob, 1024)})
    return upload(client, tree.manifest_bytes())


def step(client: TestClient, **builder: Any) -> Derivation:
    return Derivation(
        name="exec-sh",
        builder={
            "executor": "oci",
            "layers": ["layer_0"],
            "argv": ["sh", "-c", 'echo "$TOKEN"'],
            "secrets": [{"env": "TOKEN", "secret": "token"}],
            "caches": [{"path": "/cache", "name": "pip"}],
            **builder,
        },
        inputs={"layer_0": {"tree": layer_tree(client)}},
    )


def body(d: Derivation, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "derivations": {d.dref: d.model_dump(mode="json")},
        "targets": [d.dref],
    }
    if secrets is not None:
        doc["secrets"] = secrets
    return doc


def test_secrets_are_sealed_with_the_job_and_never_returned(
    client: TestClient, pipeline_db: PipelineDB
) -> None:
    d = step(client)
    response = client.post("/api/pipelines", json=body(d, {"token": VALUE}))
    assert response.status_code == 201, response.text
    assert VALUE not in response.text
    job_id = response.json()["pipeline"]["stages"][0]["job_id"]
    for url in (f"/api/jobs/{job_id}", f"/api/pipelines/{response.json()['pipeline']['id']}"):
        assert VALUE not in client.get(url).text

    def rows(conn: Any) -> tuple[Any, Any]:
        sealed = conn.execute(select(job_secrets.c.sealed)).scalar_one()
        extra = conn.execute(select(jobs.c.builder_extra)).scalar_one()
        return sealed, extra

    sealed, extra = client.portal.call(pipeline_db.engines.read, rows)  # type: ignore[union-attr]
    assert VALUE not in sealed and SecretBox(KEY).open(sealed) == {"token": VALUE}
    assert '"name": "pip"' in extra and VALUE not in extra


def test_a_missing_secret_or_key_is_a_clear_400(
    client: TestClient, settings: ServiceSettings, row_counts: Any
) -> None:
    d = step(client)
    before = row_counts()
    missing = client.post("/api/pipelines", json=body(d))
    assert missing.status_code == 400
    assert "needs the secret(s) 'token', which the submission does not carry" in missing.text
    settings.secret_key = None
    no_key = client.post("/api/pipelines", json=body(d, {"token": VALUE}))
    assert no_key.status_code == 400 and "no DIRACX_SECRET_KEY" in no_key.text
    assert VALUE not in no_key.text
    bad = client.post("/api/pipelines", json=body(d, {"bad name": VALUE}))
    assert bad.status_code == 422 and VALUE not in bad.text
    assert row_counts() == before
