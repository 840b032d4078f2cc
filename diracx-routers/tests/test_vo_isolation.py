"""Two VOs and three users: no route lets one VO read or act on another VO's objects.

VO ``alpha`` has alice (VOAdmin) and bob; VO ``beta`` has carol (VOAdmin of beta).
Alice fills alpha with real objects: blobs, a pipeline whose first stage a worker
built, a second built pipeline, a pin. Then :func:`test_every_route_keeps_alpha_from_carol`
walks EVERY route of the app: each one is in :data:`CASES` (how carol calls it with
alpha's ids, digests and names, and what she must get) or in :data:`PUBLIC`. A new
route fails the walk until its isolation case is written.

Carol must be refused (403/404, answered exactly as for an id that does not exist:
guessing proves nothing) or answered without alpha's data. Every answer she gets is
also scanned for alpha's identifiers (digests, RRefs, DRefs, the pin's name) that her
request did not contain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from diracx.core.canonical import canonical_json
from diracx.core.config import (
    NORMAL_USER,
    VO_ADMIN,
    Config,
    GroupConfig,
    QuotaConfig,
    UserConfig,
    VOConfig,
)
from diracx.core.derivation import Derivation, DrvInput, TreeInput, realization_ref
from diracx.core.tree import Tree, TreeEntry
from diracx.db.pipelines import BuildSuccess, PipelineDB
from diracx.routers.auth import PublicAccess
from diracx.routers.routing import RouteView, iter_routes
from diracx.testing.auth import bearer, mint_token

ALPHA, BETA = "alpha", "beta"
BETA_QUOTA = 64 * 1024  # bytes carol's VO may keep in the store
ABSENT_ID = 10**9  # a pipeline or job id that does not exist
PIN = "alpha-pin"

# Starlette routes FastAPI adds itself (no policy): the spec and its UI.
DOCS = {"openapi", "swagger_ui_html", "swagger_ui_redirect"}
# Routes anyone may call without a token: they serve no VO's objects.
PUBLIC = {
    "live": "health probe",
    "ready": "health probe",
    "startup": "health probe",
    "get_metadata": "discovery metadata",
    "get_openid_configuration": "OpenID discovery",
    "get_jwks": "the token signing keys (public)",
    "issue_token": "OAuth token endpoint: the grant itself authenticates",
    "revoke_token": "OAuth revocation: possessing the token is the authority",
    "device_authorization": "device flow: starts a login",
    "device_verification": "device flow: the browser page",
    "device_login": "device flow: built-in account login form",
    "device_callback": "device flow: the identity provider's redirect",
}


def vo_config() -> Config:
    def vo(prefix: str, users: dict[str, str], quota: int | None) -> VOConfig:
        return VOConfig(
            default_group=f"{prefix}_user",
            groups={
                f"{prefix}_user": GroupConfig(properties=[NORMAL_USER]),
                f"{prefix}_admin": GroupConfig(properties=[NORMAL_USER, VO_ADMIN]),
            },
            users={sub: UserConfig(groups=[f"{prefix}_{g}"]) for sub, g in users.items()},
            quotas=QuotaConfig(store_bytes=quota),
        )

    return Config(
        vos={
            ALPHA: vo(ALPHA, {"alice": "admin", "bob": "user"}, None),
            BETA: vo(BETA, {"carol": "admin"}, BETA_QUOTA),
        }
    )


@pytest.fixture
def app_config() -> Config:
    return vo_config()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def command(name: str, **fields: Any) -> Derivation:
    return Derivation(name=name, builder={"executor": "process", "argv": ["true"]}, **fields)


def submission(*drvs: Derivation) -> dict[str, Any]:
    return {
        "derivations": {d.dref: d.model_dump(mode="json") for d in drvs},
        "targets": [drvs[-1].dref],
    }


class User:
    """Requests as one user (a real access token of the app)."""

    def __init__(self, client: TestClient, sub: str, vo: str, group: str) -> None:
        self.client, self.sub, self.vo = client, sub, vo
        self.headers = bearer(mint_token(client, sub=sub, vo=vo, group=group))

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kwargs)

    def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        r = self.request(method, url, **kwargs)
        assert r.status_code < 300, f"{self.sub}: {method} {url}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def put_blob(self, data: bytes) -> str:
        self.ok("PUT", f"/api/blobs/{sha(data)}", content=data)
        return sha(data)


@dataclass
class World:
    """What alice made in alpha (and carol in beta), by name."""

    alice: User
    bob: User
    carol: User
    db: PipelineDB
    blobs: dict[str, bytes] = field(default_factory=dict)  # alpha's: digest -> bytes
    drvs: dict[str, Derivation] = field(default_factory=dict)
    rrefs: dict[str, str] = field(default_factory=dict)  # stage name -> rref
    pipelines: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)  # stage name -> job id
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # closure records
    carol_blobs: set[str] = field(default_factory=set)
    carol_jobs: set[int] = field(default_factory=set)

    def secrets(self) -> set[str]:
        """Strings carol must never be told (unless she sent them)."""
        return {*self.blobs, *self.rrefs.values(), *(d.dref for d in self.drvs.values()), PIN}


def build(world: World, job_id: int, files: dict[str, bytes], vo_blobs: dict[str, bytes]) -> str:
    """Act as a worker: claim the job, ingest its output, record its realization."""
    client = world.alice.client
    store = client.app.state.store  # type: ignore[attr-defined]
    assert client.portal is not None
    (job,) = client.portal.call(functools.partial(world.db.claim, [job_id], "w", start=True))
    entries = {p: TreeEntry("file", store.put_bytes(b), len(b)) for p, b in files.items()}
    tree = Tree(entries)
    output = store.put_bytes(tree.manifest_bytes())
    log = store.put_bytes(f"log of {job.derivation.name}\n".encode())
    made = {output: tree.manifest_bytes(), log: f"log of {job.derivation.name}\n".encode()}
    made |= {sha(b): b for b in files.values()}
    vo_blobs.update(made)
    context = {name: [inp.rref] for name, inp in job.inputs.items()}
    rref = realization_ref(job.dref, context, output)
    now = datetime.now(UTC)
    success = BuildSuccess(
        job.id,
        job.dref,
        output,
        context,
        rref,
        log,
        now,
        now,
        blobs={d: len(b) for d, b in made.items()},
    )
    client.portal.call(world.db.finish, "w", [success], [])
    return rref


@pytest.fixture
def world(client: TestClient, pipeline_db: PipelineDB) -> World:
    w = World(
        alice=User(client, "alice", ALPHA, "alpha_admin"),
        bob=User(client, "bob", ALPHA, "alpha_user"),
        carol=User(client, "carol", BETA, "beta_admin"),
        db=pipeline_db,
    )
    # alice's blobs: a source tree, and one blob nothing uses
    source = b"alpha's secret source\n"
    src_tree = Tree({"main.sh": TreeEntry("file", sha(source), len(source))})
    for data in (source, src_tree.manifest_bytes(), b"alpha's unused secret\n"):
        w.blobs[w.alice.put_blob(data)] = data
    # a pipeline: "build" (from the tree) is built, "top" (from build) waits for a worker
    w.drvs["build"] = command("build", inputs={"src": TreeInput(tree=src_tree.digest)})
    w.drvs["top"] = command("top", inputs={"build": DrvInput(drv=w.drvs["build"].dref)})
    info = w.alice.ok("POST", "/api/pipelines", json=submission(w.drvs["build"], w.drvs["top"]))
    w.pipelines["main"] = info["pipeline"]["id"]
    w.jobs = {s["name"]: s["job_id"] for s in info["pipeline"]["stages"]}
    w.rrefs["build"] = build(w, w.jobs["build"], {"out.txt": b"alpha's secret output\n"}, w.blobs)
    # a second pipeline, built whole: "solo" (no inputs, so carol could name it)
    w.drvs["solo"] = command("solo", config={"secret": "alpha"})
    info = w.alice.ok("POST", "/api/pipelines", json=submission(w.drvs["solo"]))
    w.pipelines["solo"] = info["pipeline"]["id"]
    w.jobs["solo"] = info["pipeline"]["stages"][0]["job_id"]
    w.rrefs["solo"] = build(w, w.jobs["solo"], {"solo.txt": b"alpha's solo output\n"}, w.blobs)
    w.alice.ok("PUT", f"/api/store/pins/{PIN}", json={"rref": w.rrefs["build"]})
    closure = w.alice.ok("POST", "/api/store/closure", json={"rrefs": [w.rrefs["solo"]]})
    w.records = {r["rref"]: r for r in closure["realizations"]}
    # beta has its own objects: carol's answers are about them
    w.carol_blobs.add(w.carol.put_blob(b"carol's own blob\n"))
    mine = w.carol.ok("POST", "/api/pipelines", json=submission(command("beta-stage")))
    w.carol_jobs.add(mine["pipeline"]["stages"][0]["job_id"])
    return w


# -- the walk ---------------------------------------------------------------------------


class Probe:
    """Carol's requests on one route (its method, its path template), each checked."""

    def __init__(self, route: RouteView, world: World) -> None:
        self.route, self.world = route, world
        (self.method,) = route.methods - {"HEAD"}
        self.calls = 0

    def url(self, **params: Any) -> str:
        names = set(re.findall(r"\{(\w+)\}", self.route.path))
        assert names == set(params), f"{self.route.path} takes {names}, got {set(params)}"
        return re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), self.route.path)

    def __call__(self, path: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """Carol calls the route (*path*: its path parameters; *kwargs*: the request's
        query ``params``, ``json``...); her answer must not name alpha's objects."""
        url = self.url(**(path or {}))
        r = self.world.carol.request(self.method, url, **kwargs)
        assert r.status_code < 500, f"{self.method} {url}: {r.text}"
        sent = url + json.dumps(kwargs.get("json")) + json.dumps(kwargs.get("params"))
        leaked = {s for s in self.world.secrets() if s in r.text and s not in sent}
        assert not leaked, f"{self.method} {url} tells carol alpha's {leaked}: {r.text}"
        self.calls += 1
        return r

    def refused(self, params: dict[str, Any], absent: dict[str, Any], **kwargs: Any) -> None:
        """Refused, exactly as the same request about objects that do not exist."""
        theirs = self(params, **kwargs)
        nothing = self(absent, **kwargs)
        assert theirs.status_code in (400, 403, 404), f"{self.route.path}: {theirs.text}"
        text = theirs.text
        for key, value in params.items():
            text = re.sub(rf"\b{re.escape(str(value))}\b", str(absent[key]), text)
        assert (theirs.status_code, text) == (nothing.status_code, nothing.text), (
            f"{self.method} {self.route.path}: alpha's object is answered differently from "
            f"a missing one: {theirs.text} / {nothing.text}"
        )


def other(digest: str) -> str:
    """A digest nobody stored, of the same shape."""
    return sha(b"nothing " + digest.encode())


def blob_case(probe: Probe, w: World) -> None:
    for digest in w.blobs:
        probe.refused({"digest": digest}, {"digest": other(digest)})


def job_case(probe: Probe, w: World) -> None:
    for job_id in w.jobs.values():
        probe.refused({"job_id": job_id}, {"job_id": ABSENT_ID})


def pipeline_case(probe: Probe, w: World) -> None:
    for pipeline_id in w.pipelines.values():
        probe.refused({"pipeline_id": pipeline_id}, {"pipeline_id": ABSENT_ID})


def rref_case(probe: Probe, w: World) -> None:
    for rref in w.rrefs.values():
        probe.refused({"rref": rref}, {"rref": other(rref)})


def missing_blobs(probe: Probe, w: World) -> None:
    digests = sorted(w.blobs)
    assert probe(json={"digests": digests}).json() == {"missing": digests}


def plan_blob_uploads(probe: Probe, w: World) -> None:
    body = [{"digest": d, "size": len(b)} for d, b in sorted(w.blobs.items())]
    plans = probe(json=body).json()["uploads"]
    assert [p["digest"] for p in plans] == sorted(w.blobs)  # every one must be sent


def complete_blob_upload(probe: Probe, w: World) -> None:
    for digest in w.blobs:
        probe.refused(
            {"digest": digest}, {"digest": other(digest)}, json={"upload_id": "s." + "0" * 32}
        )


def upload_blob(probe: Probe, w: World) -> None:
    for digest in w.blobs:  # bytes that are not the blob's
        probe.refused({"digest": digest}, {"digest": other(digest)}, content=b"a guess")
    assert w.carol.ok("POST", "/api/blobs/missing", json={"digests": list(w.blobs)}) == {
        "missing": list(w.blobs)
    }


def search_jobs(probe: Probe, w: World) -> None:
    found = probe(json={}).json()
    assert {j["id"] for j in found} == w.carol_jobs
    ids = sorted(w.jobs.values())
    for spec in (
        {"parameter": "id", "operator": "in", "values": ids},
        {"parameter": "pipeline_id", "operator": "eq", "value": w.pipelines["main"]},
        {"parameter": "name", "operator": "eq", "value": "build"},
    ):
        assert probe(json={"search": [spec]}).json() == []


def summarize_jobs(probe: Probe, w: World) -> None:
    counts = probe(json={"grouping": ["status"]}).json()
    assert sum(c["count"] for c in counts) == len(w.carol_jobs)
    assert (
        probe(
            json={
                "grouping": ["name"],
                "search": [{"parameter": "name", "operator": "in", "values": list(w.jobs)}],
            }
        ).json()
        == []
    )


def set_job_statuses(probe: Probe, w: World) -> None:
    for job_id in w.jobs.values():
        theirs = probe(json={str(job_id): {"Status": "Killed"}}).json()
        nothing = probe(json={str(ABSENT_ID): {"Status": "Killed"}}).json()
        assert theirs["success"] == {} and set(theirs["failed"]) == {str(job_id)}
        assert (
            theirs["failed"][str(job_id)].replace(str(job_id), str(ABSENT_ID))
            == (nothing["failed"][str(ABSENT_ID)])
        )


def add_heartbeat(probe: Probe, w: World) -> None:
    for job_id in w.jobs.values():
        for body in ({str(job_id): {"LoadAverage": 0.5}}, [job_id]):
            theirs = probe(json=body).json()
            absent = (
                {str(ABSENT_ID): {"LoadAverage": 0.5}} if isinstance(body, dict) else [ABSENT_ID]
            )
            nothing = probe(json=absent).json()
            assert theirs["success"] == [] and set(theirs["failed"]) == {str(job_id)}
            assert (
                theirs["failed"][str(job_id)].replace(str(job_id), str(ABSENT_ID))
                == (nothing["failed"][str(ABSENT_ID)])
            )


def list_pipelines(probe: Probe, w: World) -> None:
    mine = probe().json()
    assert {p["owner"] for p in mine["pipelines"]} == {"carol"}
    assert not {p["id"] for p in mine["pipelines"]} & set(w.pipelines.values())
    assert probe(params={"owner": "alice"}).json() == {"pipelines": [], "next_cursor": None}
    for state in ("Running", "Done", "Failed"):
        found = probe(params={"status": state, "limit": 500}).json()["pipelines"]
        assert {p["owner"] for p in found} <= {"carol"}
    # a cursor above alpha's ids pages through beta's only
    after = max(w.pipelines.values()) + 1
    paged = probe(params={"cursor": after, "limit": 1}).json()
    assert {p["owner"] for p in paged["pipelines"]} <= {"carol"}


def submit_pipeline(probe: Probe, w: World) -> None:
    # alpha's tree is not carol's to use
    r = probe(json=submission(w.drvs["build"]))
    assert r.status_code == 400 and "upload it first" in r.json()["detail"], r.text
    # a derivation alpha built is built again for beta: nothing of alpha's is reused
    got = probe(json=submission(w.drvs["solo"]))
    assert got.status_code == 201, got.text
    (stage,) = got.json()["pipeline"]["stages"]
    assert not stage["cached"] and stage["rref"] is None and stage["job_id"]
    w.carol_jobs.add(stage["job_id"])


def plan_pipeline(probe: Probe, w: World) -> None:
    for drv in (w.drvs["build"], w.drvs["solo"]):  # built by alpha: to build for beta
        planned = probe(json=submission(drv))
        assert planned.status_code == 200, planned.text
        (stage,) = planned.json()["stages"]
        assert stage["action"] in ("build", "join") and stage["rrefs"] == [], stage


def list_realizations(probe: Probe, w: World) -> None:
    for drv in w.drvs.values():
        assert probe({"dref": drv.dref}).json() == []


def store_list_realizations(probe: Probe, w: World) -> None:
    assert probe().json() == []
    for rref in w.rrefs.values():
        assert probe(params={"prefix": rref[:12]}).json() == []
    for name, drv in w.drvs.items():
        assert probe(params={"name": name}).json() == []
        assert probe(params={"dref": drv.dref}).json() == []


def store_closure(probe: Probe, w: World) -> None:
    for rref in w.rrefs.values():
        theirs = probe(json={"rrefs": [rref]})
        nothing = probe(json={"rrefs": [other(rref)]})
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.text.replace(rref, other(rref)) == nothing.text


def store_sizes(probe: Probe, w: World) -> None:
    store_closure(probe, w)
    assert probe(json={"rrefs": []}).json()["realizations"] == []


def store_import(probe: Probe, w: World) -> None:
    records = list(w.records.values())  # alpha's records, as alice's export has them
    r = probe(json={"realizations": records})
    assert r.status_code == 400 and "upload it first" in r.json()["detail"], r.text
    top = command("importer", inputs={"solo": DrvInput(drv=w.drvs["solo"].dref)})
    empty = Tree({})
    w.carol.put_blob(empty.manifest_bytes())
    context = {"solo": [w.rrefs["solo"]]}  # built from alpha's realization
    record = {
        "rref": realization_ref(top.dref, context, empty.digest),
        "dref": top.dref,
        "name": top.name,
        "body": canonical_json(top.body()).decode(),
        "output": empty.digest,
        "context": context,
        "metrics": {},
        "log": None,
    }
    r = probe(json={"realizations": [record]})
    assert r.status_code == 400 and "neither in the import nor in the store" in r.text


def store_verify(probe: Probe, w: World) -> None:
    report = probe().json()
    assert report["corrupt"] == [] and report["missing"] == []
    assert report["checked"] <= len(w.carol_blobs) + 1  # hers (and the empty tree)


def list_pins(probe: Probe, w: World) -> None:
    assert probe().json() == []


def pin_realization(probe: Probe, w: World) -> None:
    for rref in w.rrefs.values():
        for name in ("mine", PIN):  # a new name, or the name alpha uses
            theirs = probe({"name": name}, json={"rref": rref})
            nothing = probe({"name": name}, json={"rref": other(rref)})
            assert theirs.status_code == nothing.status_code == 404
            assert theirs.text.replace(rref, other(rref)) == nothing.text


def unpin_realization(probe: Probe, w: World) -> None:
    probe.refused({"name": PIN}, {"name": "no-such-pin"})


def collect_garbage(probe: Probe, w: World) -> None:
    r = probe(json={"dry_run": True})
    assert r.status_code == 403 and "ServiceAdministrator" in r.json()["detail"], r.text


def userinfo(probe: Probe, w: World) -> None:
    info = probe().json()
    assert info["vo"] == BETA and info["sub"] == "carol"


def get_config(probe: Probe, w: World) -> None:
    assert probe().status_code in (200, 304)  # the probe checks it names no alpha object


LOLLYGAG = "alpha-secret-lollygag"


def list_lollygags(probe: Probe, w: World) -> None:
    w.alice.ok("POST", f"/api/lollygag/{LOLLYGAG}")
    answer = probe().json()
    assert answer["vo"] == BETA and LOLLYGAG not in probe().text


def add_lollygag(probe: Probe, w: World) -> None:
    w.alice.ok("POST", f"/api/lollygag/{LOLLYGAG}")
    added = probe({"name": LOLLYGAG}).json()  # beta's own, new: nothing says alpha has one
    assert added["added"] is True and added["owner"] == "carol"
    (mine,) = w.alice.ok("GET", "/api/lollygag")["lollygags"]
    assert mine["owner"] == "alice"


Case = Callable[[Probe, World], None]
CASES: dict[str, Case] = {
    "userinfo": userinfo,
    "get_config": get_config,
    # blobs
    "missing_blobs": missing_blobs,
    "plan_blob_uploads": plan_blob_uploads,
    "complete_blob_upload": complete_blob_upload,
    "upload_blob": upload_blob,
    "download_blob": blob_case,
    # jobs
    "search_jobs": search_jobs,
    "summarize_jobs": summarize_jobs,
    "set_job_statuses": set_job_statuses,
    "add_heartbeat": add_heartbeat,
    "get_job_history": job_case,
    "delete_job": job_case,
    "reschedule_job": job_case,
    "get_job": job_case,
    "kill_job": job_case,
    # pipelines
    "submit_pipeline": submit_pipeline,
    "plan_pipeline": plan_pipeline,
    "get_pipeline": pipeline_case,
    "pipeline_events": pipeline_case,
    "kill_pipeline": pipeline_case,
    "cancel_pipeline": pipeline_case,
    "retry_pipeline": pipeline_case,
    "list_pipelines": list_pipelines,
    # realizations and the store
    "get_realization": rref_case,
    "list_realizations": list_realizations,
    "store_list_realizations": store_list_realizations,
    "realization_provenance": rref_case,
    "store_closure": store_closure,
    "store_sizes": store_sizes,
    "store_import": store_import,
    "store_verify": store_verify,
    "list_pins": list_pins,
    "pin_realization": pin_realization,
    "unpin_realization": unpin_realization,
    "collect_garbage": collect_garbage,
}
# Routes of the example extension (extensions/gubbins), when it is installed.
EXTENSION_CASES: dict[str, Case] = {
    "list_lollygags": list_lollygags,
    "add_lollygag": add_lollygag,
}


def api_routes(client: TestClient) -> Iterator[RouteView]:
    for route in iter_routes(client.app):  # type: ignore[arg-type]
        if not route.is_api_route:
            assert route.name in DOCS, f"unexpected non-API route {route.path} ({route.name})"
            continue
        yield route


def test_every_route_keeps_alpha_from_carol(client: TestClient, world: World) -> None:
    seen: set[str] = set()
    for route in api_routes(client):
        seen.add(route.name)
        if route.name in PUBLIC:
            assert isinstance(route.policy, PublicAccess), f"{route.path} is not public"
            continue
        case = CASES.get(route.name) or EXTENSION_CASES.get(route.name)
        assert case is not None, (
            f"route {sorted(route.methods)} {route.path} ({route.name}) has no VO isolation "
            "case: add one to CASES in test_vo_isolation.py (or list it in PUBLIC)"
        )
        assert not isinstance(route.policy, PublicAccess), f"{route.path} is public"
        probe = Probe(route, world)
        case(probe, world)
        assert probe.calls, f"the case of {route.name} never called it"
    assert set(CASES) <= seen, f"cases of routes that are gone: {set(CASES) - seen}"

    # after all carol tried, alpha is as alice left it
    alice = world.alice
    assert alice.ok("GET", f"/api/jobs/{world.jobs['top']}")["status"] == "Waiting"
    assert [p["name"] for p in alice.ok("GET", "/api/store/pins")] == [PIN]
    assert alice.ok("POST", "/api/blobs/missing", json={"digests": list(world.blobs)}) == {
        "missing": []
    }


# -- within alpha ------------------------------------------------------------------------


def test_alice_and_bob_see_alphas_objects(world: World) -> None:
    for user in (world.alice, world.bob):
        assert (
            user.ok("GET", f"/api/pipelines/{world.pipelines['main']}")["id"]
            == (world.pipelines["main"])
        )
        real = user.ok("GET", f"/api/realizations/{world.rrefs['build']}")
        assert real["name"] == "build"
        listed = user.ok("GET", f"/api/derivations/{world.drvs['solo'].dref}/realizations")
        assert [r["rref"] for r in listed] == [world.rrefs["solo"]]
        found = user.ok("GET", "/api/store/realizations")
        assert {r["rref"] for r in found} == set(world.rrefs.values())
        closure = user.ok("POST", "/api/store/closure", json={"rrefs": [world.rrefs["build"]]})
        assert set(closure["blobs"]) <= set(world.blobs)
        assert user.ok("POST", "/api/blobs/missing", json={"digests": list(world.blobs)}) == {
            "missing": []
        }
        for digest, data in world.blobs.items():
            assert user.request("GET", f"/api/blobs/{digest}").content == data
        assert [p["name"] for p in user.ok("GET", "/api/store/pins")] == [PIN]
        jobs = user.ok("POST", "/api/jobs/search", json={})
        assert {j["id"] for j in jobs} == set(world.jobs.values())


def test_bob_may_not_act_on_alices_objects_but_alice_administers_alpha(world: World) -> None:
    bob, alice = world.bob, world.alice
    top = world.jobs["top"]
    r = bob.request("POST", f"/api/jobs/{top}/kill")
    assert r.status_code == 403 and "alice" in r.json()["detail"], r.text
    r = bob.request("DELETE", f"/api/store/pins/{PIN}")
    assert r.status_code == 403, r.text
    assert "belongs to 'alice'" in r.json()["detail"] and VO_ADMIN in r.json()["detail"]
    r = bob.request("PUT", f"/api/store/pins/{PIN}", json={"rref": world.rrefs["solo"]})
    assert r.status_code == 403, r.text  # nor move it to another realization
    # bob's own pin: his to remove, and alice's (VOAdmin) too
    bob.ok("PUT", "/api/store/pins/bobs", json={"rref": world.rrefs["solo"]})
    assert alice.ok("DELETE", "/api/store/pins/bobs")["owner"] == "bob"
    bob.ok("PUT", "/api/store/pins/bobs", json={"rref": world.rrefs["solo"]})
    bob.ok("DELETE", "/api/store/pins/bobs")
    assert alice.ok("POST", f"/api/jobs/{top}/kill")["killed"] == [top]
    assert alice.ok("DELETE", f"/api/store/pins/{PIN}")["rref"] == world.rrefs["build"]


# -- quotas and collection -------------------------------------------------------------


def test_the_store_quota_counts_the_vos_claims(world: World) -> None:
    carol, alice = world.carol, world.alice
    big = bytes(40 * 1024)
    carol.put_blob(big)
    used = len(big) + len(b"carol's own blob\n")
    more = b"x" * (BETA_QUOTA - used + 1)
    r = carol.request("PUT", f"/api/blobs/{sha(more)}", content=more)
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "store quota of VO 'beta' exceeded" in detail and "quotas.store_bytes" in detail
    assert "64.0 KiB" in detail and "unpin" in detail
    assert carol.ok("POST", "/api/blobs/missing", json={"digests": [sha(more)]}) == {
        "missing": [sha(more)]
    }
    r = carol.request("POST", "/api/blobs/uploads", json=[{"digest": sha(more), "size": len(more)}])
    assert r.status_code == 403 and "exceeded" in r.json()["detail"]
    # a blob alpha stored counts for beta too once carol sends it (it is hers as well)
    source = next(d for d, b in world.blobs.items() if b.startswith(b"alpha's secret source"))
    fits = world.blobs[source]
    assert len(fits) < BETA_QUOTA - used
    carol.put_blob(fits)
    assert carol.request("GET", f"/api/blobs/{source}").content == fits
    # alpha has no limit
    alice.put_blob(bytes(100 * 1024))


def test_collection_needs_a_service_administrator_and_keeps_every_vos_pins(
    client: TestClient, world: World
) -> None:
    request = {"keep_days": 0, "grace_seconds": 0}
    for user in (world.alice, world.carol):  # VO administrators, not of the service
        r = user.request("POST", "/api/store/gc", json=request)
        assert r.status_code == 403 and "ServiceAdministrator" in r.json()["detail"]
    report = client.post("/api/store/gc", json=request)  # the static token: the service admin
    assert report.status_code == 200, report.text
    gone = {r["rref"] for r in report.json()["realizations"]}
    assert world.rrefs["build"] not in gone  # alpha's pin keeps it
    assert world.rrefs["solo"] in gone
    assert world.alice.request("GET", f"/api/realizations/{world.rrefs['solo']}").status_code == 404
    assert world.alice.ok("GET", f"/api/realizations/{world.rrefs['build']}")
