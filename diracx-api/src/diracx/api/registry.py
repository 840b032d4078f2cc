"""A client of OCI registries (the distribution API): pull and push images.

It runs on the user's side, so that their registry credentials stay on their machine:
anonymous access, the bearer-token challenge (``WWW-Authenticate: Bearer`` → token
endpoint, scopes ``pull`` / ``pull,push``) and basic authentication, with credentials
from the user's Docker config (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``: ``auths`` entries, or a ``credHelpers``/``credsStore``
helper). Plain HTTP is used only for loopback registries (``localhost``, ``127.*``,
``::1``) and those named in *insecure*.

>>> with RegistryClient() as reg:                                  # doctest: +SKIP
...     resolved = reg.pull("alpine:3.20", store)                  # layers into a BlobStore
...     reg.push(resolved.image, "localhost:5000/mine:1", lambda d: open(store.path(d), "rb"))
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlencode, urljoin

import httpx

from diracx.core.exceptions import DiracxError
from diracx.core.oci import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    DigestMismatchError,
    Image,
    ImageFormatError,
    NoPlatformMatchError,
    OpenBlob,
    Platform,
    json_object,
    parse_digest,
    select_manifest,
)
from diracx.core.store import BlobStore

__all__ = [
    "ImageNotFoundError",
    "NoPlatformMatchError",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "ResolvedImage",
    "UnauthorizedError",
]

DOCKER_HUB = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", DOCKER_HUB)
_DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_ACCEPT = ", ".join([MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST])
_CHUNK = 1 << 20
DEFAULT_CHUNK_SIZE = 64 << 20  # larger blobs are uploaded in chunks of this size
_MAX_MANIFEST = 4 << 20

# the grammar of github.com/distribution/reference, simplified
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}\Z")
_HOST_RE = re.compile(
    r"^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::\d+)?\Z"
)


class RegistryError(DiracxError):
    """A registry refused or failed a request; the message says which and why."""


class ImageNotFoundError(RegistryError):
    """The registry has no such repository, tag, manifest or blob."""


class UnauthorizedError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


# -- references ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """``[host[:port]/]repository[:tag][@sha256:digest]``, with Docker Hub's defaults."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None  # hex

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``busybox`` → ``registry-1.docker.io/library/busybox:latest``."""
        original = text
        text = text.strip()
        if "://" in text:
            raise ValueError(f"an image reference has no scheme: {original!r}")
        digest = None
        if "@" in text:
            text, _, pinned = text.partition("@")
            try:
                digest = parse_digest(pinned, what=f"the digest of {original!r}")
            except ImageFormatError as exc:
                raise ValueError(str(exc)) from None
        tag = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise ValueError(f"invalid tag {tag!r} in image reference {original!r}")
        first, sep, rest = text.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            registry, repository = first, rest
            if not _HOST_RE.match(registry):
                raise ValueError(f"invalid registry {registry!r} in image reference {original!r}")
        else:
            registry, repository = DOCKER_HUB, text
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = f"library/{repository}"
        if not _REPOSITORY_RE.match(repository):
            raise ValueError(
                f"invalid repository {repository!r} in image reference {original!r} "
                "(lowercase letters, digits, '.', '_', '-' and '/')"
            )
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """What the manifests endpoint is asked for: the digest if pinned, else the tag."""
        return f"sha256:{self.digest}" if self.digest else (self.tag or "latest")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@sha256:{self.digest}"
        return out


def _is_loopback(registry: str) -> bool:
    host = registry
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- credentials -----------------------------------------------------------------------


def _config_keys(registry: str) -> list[str]:
    if registry == DOCKER_HUB:
        return [_DOCKER_HUB_CONFIG_KEY, *_DOCKER_HUB_ALIASES]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def load_credentials(registry: str, config: Path | None = None) -> tuple[str, str] | None:
    """(username, password) for *registry* from a Docker config, or None.

    Reads the ``auths`` entries (``auth`` = base64 ``user:password``, or ``username`` and
    ``password``), else runs the ``credHelpers``/``credsStore`` helper
    (``docker-credential-<name> get``) if it is installed.
    """
    path = config or docker_config_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read the Docker config {path}: {exc}") from None
    if not isinstance(doc, dict):
        return None
    keys = _config_keys(registry)
    auths = doc.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryError(f"the 'auth' of {key!r} in {path} is not base64") from None
            if sep:
                return user, password
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
    helpers = doc.get("credHelpers") or {}
    helper = next((helpers[k] for k in keys if k in helpers), None) or doc.get("credsStore")
    if helper:
        return _from_helper(str(helper), keys[0])
    return None


def _from_helper(helper: str, server: str) -> tuple[str, str] | None:
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        return None
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=30
        )
        if proc.returncode != 0:
            return None  # "credentials not found": anonymous
        doc = json.loads(proc.stdout)
        return str(doc["Username"]), str(doc["Secret"])
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return None


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', rest)
    }
    return scheme.lower(), params


# -- the client --------------------------------------------------------------------------


class BlobSink(Protocol):
    def write(self, data: bytes, /) -> Any: ...


Progress = Callable[[str, int, int], None]
"""Called with (digest hex, bytes done, bytes total) as a blob moves."""


@dataclass
class ResolvedImage:
    """An image found in a registry: where, its manifest digest, and its parts."""

    reference: Reference  # pinned: .digest is the manifest digest
    digest: str  # hex sha256 of the image manifest (for the chosen platform)
    image: Image
    manifest: bytes = field(repr=False)
    config: bytes = field(repr=False)
    index_digest: str | None = None  # hex, when the reference named an index


@dataclass
class _Auth:
    scheme: str = ""  # "", "basic" or "bearer": learnt from the registry's first challenge
    params: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # scope -> (token, expiry)


class RegistryClient:
    """A synchronous registry client; use it as a context manager (it holds a connection pool).

    *credentials* (``{registry: (user, password)}``) win over the Docker config
    (*docker_config*, default ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``).
    *insecure* names registries (``host:port``) reached over plain HTTP; loopback ones
    always are.
    """

    def __init__(
        self,
        *,
        credentials: dict[str, tuple[str, str]] | None = None,
        docker_config: Path | None = None,
        insecure: Collection[str] = (),
        timeout: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self._credentials = dict(credentials or {})
        self._docker_config = docker_config
        self._insecure = set(insecure)
        self._chunk_size = chunk_size
        self._auth: dict[str, _Auth] = {}
        self._loaded: dict[str, tuple[str, str] | None] = {}
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=True,  # blob redirects; httpx drops Authorization across origins
            transport=httpx.HTTPTransport(retries=2),
            headers={"User-Agent": "diracx-registry-client"},
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------------------

    def _base(self, registry: str) -> str:
        insecure = _is_loopback(registry) or registry in self._insecure
        return f"{'http' if insecure else 'https'}://{registry}"

    def _creds(self, registry: str) -> tuple[str, str] | None:
        if registry in self._credentials:
            return self._credentials[registry]
        if registry not in self._loaded:
            self._loaded[registry] = load_credentials(registry, self._docker_config)
        return self._loaded[registry]

    def _token(self, ref: Reference, auth: _Auth, scope: str, *, fresh: bool = False) -> str:
        cached = auth.tokens.get(scope)
        if cached and not fresh and cached[1] > time.monotonic():
            return cached[0]
        realm = auth.params.get("realm")
        if not realm:
            raise RegistryError(f"{ref.registry} asked for a bearer token but named no realm")
        # one scope parameter per scope, as Docker sends them
        query: dict[str, str | list[str]] = {"scope": scope.split()}
        if "service" in auth.params:
            query["service"] = auth.params["service"]
        creds = self._creds(ref.registry)
        try:
            resp = self._http.get(
                realm, params=query, auth=httpx.BasicAuth(*creds) if creds else None
            )
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the token service {realm}: {exc}") from None
        if resp.status_code in (401, 403):
            who = f"as {creds[0]!r}" if creds else "anonymously (no credentials)"
            raise UnauthorizedError(
                f"{ref.registry} refused a token for {scope} {who}: "
                f"{_error_text(resp)}; log in with `docker login {ref.registry}` "
                "or fix the credentials in your Docker config"
            )
        if resp.status_code != 200:
            raise RegistryError(
                f"the token service {realm} answered {resp.status_code}: {_error_text(resp)}"
            )
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise RegistryError(f"the token service {realm} gave no token")
        auth.tokens[scope] = (token, time.monotonic() + max(lifetime - 10, 5))
        return str(token)

    def _headers(self, ref: Reference, scope: str, *, fresh: bool = False) -> dict[str, str]:
        auth = self._auth.get(ref.registry)
        if auth is None or not auth.scheme:
            return {}
        if auth.scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(ref, auth, scope, fresh=fresh)}"}
        creds = self._creds(ref.registry)
        if auth.scheme == "basic" and creds:
            raw = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _request(
        self,
        method: str,
        ref: Reference,
        url: str,
        *,
        push: bool = False,
        extra_scopes: Collection[str] = (),
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """A request with authentication: answers one challenge, then gives up (401)."""
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        scope = " ".join([scope, *extra_scopes])
        if not url.startswith(("http://", "https://")):
            url = self._base(ref.registry) + url
        headers = dict(kwargs.pop("headers", {}))
        content = kwargs.get("content")
        for attempt in range(2):
            request = self._http.build_request(
                method, url, headers={**headers, **self._headers(ref, scope, fresh=attempt > 0)},
                **kwargs,
            )  # fmt: skip
            try:
                resp = self._http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise RegistryError(f"cannot reach the registry {ref.registry}: {exc}") from None
            if resp.status_code != 401 or attempt:
                break
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            scheme, params = _parse_challenge(challenge)
            auth = self._auth.setdefault(ref.registry, _Auth())
            if scheme not in ("bearer", "basic"):
                break
            if scheme == "basic" and self._creds(ref.registry) is None:
                break
            auth.scheme, auth.params = scheme, params
            if content is not None and not isinstance(content, bytes | str):
                break  # a streamed body cannot be sent twice: callers authenticate first
        if resp.status_code == 401:
            creds = self._creds(ref.registry)
            who = f"as {creds[0]!r}" if creds else "without credentials"
            raise UnauthorizedError(
                f"{ref.registry} refused access to {ref.repository} {who} "
                f"({'push' if push else 'pull'}): {_error_text(resp)}; log in with "
                f"`docker login {ref.registry}` or fix your Docker config"
            )
        if resp.status_code == 403:
            raise UnauthorizedError(
                f"{ref.registry} denied {'push to' if push else 'pull from'} {ref.repository}: "
                f"{_error_text(resp)}"
            )
        return resp

    def _ensure_auth(self, ref: Reference, *, push: bool) -> None:
        """Learn the registry's challenge with a cheap request before a streamed upload."""
        if ref.registry in self._auth:
            return
        resp = self._request("GET", ref, "/v2/", push=push)
        resp.close()

    # -- manifests -----------------------------------------------------------------------

    def _get_manifest(self, ref: Reference, target: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest hex) of a manifest; verified when *target* is a digest."""
        url = f"/v2/{ref.repository}/manifests/{target}"
        resp = self._request("GET", ref, url, headers={"Accept": _ACCEPT})
        if resp.status_code == 404:
            raise ImageNotFoundError(
                f"image not found: {ref.name}:{target} ({_error_text(resp)})"
                if not target.startswith("sha256:")
                else f"image not found: {ref.name}@{target} ({_error_text(resp)})"
            )
        if resp.status_code != 200:
            raise RegistryError(
                f"{ref.registry} answered {resp.status_code} for the manifest {ref.name}:"
                f"{target}: {_error_text(resp)}"
            )
        body = resp.content
        if len(body) > _MAX_MANIFEST:
            raise ImageFormatError(f"the manifest of {ref} is too large ({len(body)} bytes)")
        digest = hashlib.sha256(body).hexdigest()
        if target.startswith("sha256:") and digest != target[7:]:
            raise DigestMismatchError(
                f"the manifest {ref.name}@{target} hashes to sha256:{digest}: "
                "the registry returned other content than the pinned digest"
            )
        announced = resp.headers.get("Docker-Content-Digest", "")
        if announced.startswith("sha256:") and announced[7:] != digest:
            raise DigestMismatchError(
                f"the manifest of {ref} hashes to sha256:{digest}, "
                f"but the registry says {announced}"
            )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return body, media_type, digest

    def resolve(self, ref: str | Reference, platform: Platform | None = None) -> ResolvedImage:
        """Find the image *ref* names for *platform* (default: this machine's).

        Image indexes and Docker manifest lists are followed to the platform's image. A
        reference pinned by digest is verified against what the registry returns.
        """
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        body, media_type, digest = self._get_manifest(ref, ref.target)
        index_digest = None
        doc = json_object(body, f"the manifest of {ref}")
        media_type = doc.get("mediaType") or media_type
        if media_type in INDEX_MEDIA_TYPES or "manifests" in doc:
            index_digest = digest
            try:
                desc = select_manifest(doc, platform)
            except NoPlatformMatchError as exc:
                raise NoPlatformMatchError(f"{ref}: {exc}") from None
            target = parse_digest(desc.get("digest"), what="manifest digest")
            body, media_type, digest = self._get_manifest(ref, f"sha256:{target}")
            doc = json_object(body, f"the manifest of {ref}")
            media_type = doc.get("mediaType") or media_type
        if media_type not in MANIFEST_MEDIA_TYPES:
            raise ImageFormatError(
                f"{ref}: unsupported manifest type {media_type!r} "
                "(OCI and Docker v2 manifests are supported, not Docker schema 1)"
            )
        config_digest = parse_digest((doc.get("config") or {}).get("digest"), what="config")
        config = bytearray()
        self.fetch_blob(ref, config_digest, config.extend)
        image = Image.from_oci(doc, json_object(bytes(config), f"the image config of {ref}"))
        want = platform or Platform.host()
        if index_digest is None and not want.matches(image.platform):
            raise NoPlatformMatchError(f"{ref} is an image for {image.platform}, not for {want}")
        return ResolvedImage(
            reference=ref.with_digest(digest),
            digest=digest,
            image=image,
            manifest=body,
            config=bytes(config),
            index_digest=index_digest,
        )

    # -- blobs ---------------------------------------------------------------------------

    def fetch_blob(
        self,
        ref: str | Reference,
        digest: str,
        sink: BlobSink | Callable[[bytes], Any],
        *,
        progress: Progress | None = None,
    ) -> int:
        """Stream blob *digest* (hex) of *ref*'s repository into *sink*; its size.

        The bytes are hashed as they come: a mismatch raises DigestMismatchError once the
        blob has been written, so the caller must discard what *sink* received (a store's
        ``writer()`` does when it is not committed).
        """
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        write = sink if callable(sink) else sink.write
        url = f"/v2/{ref.repository}/blobs/sha256:{digest}"
        resp = self._request("GET", ref, url, stream=True)
        try:
            if resp.status_code == 404:
                resp.read()
                raise ImageNotFoundError(
                    f"blob sha256:{digest} not found in {ref.name} ({_error_text(resp)})"
                )
            if resp.status_code != 200:
                resp.read()
                raise RegistryError(
                    f"{ref.registry} answered {resp.status_code} for blob sha256:{digest}: "
                    f"{_error_text(resp)}"
                )
            total = int(resp.headers.get("Content-Length") or 0)
            h = hashlib.sha256()
            size = 0
            try:
                for chunk in resp.iter_raw(_CHUNK):
                    h.update(chunk)
                    write(chunk)
                    size += len(chunk)
                    if progress:
                        progress(digest, size, total)
            except httpx.HTTPError as exc:
                raise RegistryError(f"download of blob sha256:{digest} failed: {exc}") from None
        finally:
            resp.close()
        if h.hexdigest() != digest:
            raise DigestMismatchError(
                f"blob sha256:{digest} from {ref.name} hashes to sha256:{h.hexdigest()}"
            )
        return size

    def pull(
        self,
        ref: str | Reference,
        store: BlobStore,
        *,
        platform: Platform | None = None,
        progress: Progress | None = None,
    ) -> ResolvedImage:
        """Resolve *ref* and download the layers *store* lacks (verified; store address =
        layer digest)."""
        resolved = self.resolve(ref, platform)
        for layer in resolved.image.layers:
            if store.has(layer.digest):
                continue
            with store.writer() as writer:
                self.fetch_blob(resolved.reference, layer.digest, writer, progress=progress)
                writer.commit(layer.digest)
        return resolved

    def has_blob(self, ref: Reference, digest: str, *, push: bool = False) -> bool:
        resp = self._request("HEAD", ref, f"/v2/{ref.repository}/blobs/sha256:{digest}", push=push)
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise RegistryError(
            f"{ref.registry} answered {resp.status_code} to HEAD blob sha256:{digest}"
        )

    def push_blob(
        self,
        ref: str | Reference,
        digest: str,
        size: int,
        open_blob: OpenBlob,
        *,
        mount_from: str | None = None,
        progress: Progress | None = None,
    ) -> bool:
        """Upload a blob unless the repository has it; True if bytes were sent.

        With *mount_from* (another repository of the same registry), the registry is
        first asked to mount the blob from there. Blobs up to the client's chunk size go
        in one PUT, larger ones in PATCH chunks.
        """
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        self._ensure_auth(ref, push=True)
        if self.has_blob(ref, digest, push=True):
            return False
        uploads = f"/v2/{ref.repository}/blobs/uploads/"
        scopes = [f"repository:{mount_from}:pull"] if mount_from else []
        params = f"?{urlencode({'mount': f'sha256:{digest}', 'from': mount_from})}"
        resp = self._request(
            "POST", ref, uploads + (params if mount_from else ""), push=True, extra_scopes=scopes
        )
        resp.close()
        if resp.status_code == 201:
            return False  # mounted
        location = self._location(ref, resp, "start an upload")
        if size <= self._chunk_size:
            with open_blob(digest) as f:
                resp = self._request(
                    "PUT", ref, _with_query(location, digest=f"sha256:{digest}"), push=True,
                    content=_read_chunks(f, size, digest, progress),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Length": str(size)},
                )  # fmt: skip
            self._check_upload(ref, resp, digest)
            return True
        with open_blob(digest) as f:
            h = hashlib.sha256()
            offset = 0
            while offset < size:
                data = f.read(min(self._chunk_size, size - offset))
                if not data:
                    raise RegistryError(f"blob sha256:{digest} is shorter than {size} bytes")
                h.update(data)
                resp = self._request(
                    "PATCH", ref, location, push=True, content=data,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{offset + len(data) - 1}",
                             "Content-Length": str(len(data))},
                )  # fmt: skip
                resp.close()
                if resp.status_code != 202:
                    raise RegistryError(
                        f"{ref.registry} refused a chunk of blob sha256:{digest} "
                        f"({resp.status_code}): {_error_text(resp)}"
                    )
                location = self._location(ref, resp, "continue an upload")
                offset += len(data)
                if progress:
                    progress(digest, offset, size)
            if h.hexdigest() != digest:
                raise DigestMismatchError(f"blob sha256:{digest} hashes to {h.hexdigest()}")
        resp = self._request(
            "PUT", ref, _with_query(location, digest=f"sha256:{digest}"), push=True,
            headers={"Content-Length": "0"},
        )  # fmt: skip
        self._check_upload(ref, resp, digest)
        return True

    def _location(self, ref: Reference, resp: httpx.Response, what: str) -> str:
        if resp.status_code not in (201, 202) or "Location" not in resp.headers:
            raise RegistryError(
                f"{ref.registry} did not let us {what} in {ref.repository} "
                f"({resp.status_code}): {_error_text(resp)}"
            )
        return urljoin(self._base(ref.registry) + "/", resp.headers["Location"])

    def _check_upload(self, ref: Reference, resp: httpx.Response, digest: str) -> None:
        resp.read()
        if resp.status_code == 400 and "DIGEST_INVALID" in resp.text:
            raise DigestMismatchError(
                f"{ref.registry} says blob sha256:{digest} does not match its content"
            )
        if resp.status_code != 201:
            raise RegistryError(
                f"{ref.registry} refused blob sha256:{digest} ({resp.status_code}): "
                f"{_error_text(resp)}"
            )

    def push_manifest(
        self, ref: str | Reference, manifest: bytes, media_type: str, *, target: str | None = None
    ) -> str:
        """Put a manifest (or index) under *ref*'s tag (or its digest); its digest (hex)."""
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        digest = hashlib.sha256(manifest).hexdigest()
        if ref.digest and ref.digest != digest and target is None:
            raise DigestMismatchError(
                f"cannot push to {ref}: the manifest hashes to sha256:{digest}"
            )
        where = target or (ref.tag if ref.tag and not ref.digest else f"sha256:{digest}")
        resp = self._request(
            "PUT", ref, f"/v2/{ref.repository}/manifests/{where}", push=True, content=manifest,
            headers={"Content-Type": media_type},
        )  # fmt: skip
        if resp.status_code not in (200, 201):
            raise RegistryError(
                f"{ref.registry} refused the manifest for {ref} ({resp.status_code}): "
                f"{_error_text(resp)}"
            )
        announced = resp.headers.get("Docker-Content-Digest", "")
        if announced.startswith("sha256:") and announced[7:] != digest:
            raise DigestMismatchError(
                f"{ref.registry} stored the manifest as {announced}, not sha256:{digest}"
            )
        return digest

    def push(
        self,
        image: Image,
        ref: str | Reference,
        open_blob: OpenBlob,
        *,
        mount_from: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Push *image* (layers from *open_blob*, then its config and manifest) to *ref*.

        Blobs the repository has are skipped. Returns the manifest digest (hex), which is
        ``image.digest``: pulling ``ref`` gives this digest back.
        """
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        for layer in image.layers:
            self.push_blob(
                ref, layer.digest, layer.size, open_blob, mount_from=mount_from, progress=progress
            )
        config = image.config_bytes()
        config_digest = hashlib.sha256(config).hexdigest()
        self.push_blob(ref, config_digest, len(config), _bytes_opener(config))
        manifest = image.manifest_bytes()
        return self.push_manifest(ref, manifest, MEDIA_OCI_MANIFEST)

    def push_index(
        self,
        images: list[Image],
        ref: str | Reference,
        open_blob: OpenBlob,
    ) -> str:
        """Push several images (one per platform) and an OCI image index naming them."""
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        descriptors = []
        for image in images:
            digest = self.push(image, Reference(ref.registry, ref.repository), open_blob)
            descriptors.append(image.manifest_descriptor())
            assert descriptors[-1]["digest"] == f"sha256:{digest}"
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": descriptors},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return self.push_manifest(ref, index, MEDIA_OCI_INDEX)


def _bytes_opener(data: bytes) -> OpenBlob:
    import io

    return lambda _digest: io.BytesIO(data)


def _read_chunks(f: BinaryIO, size: int, digest: str, progress: Progress | None) -> Iterator[bytes]:
    h = hashlib.sha256()
    done = 0
    while done < size:
        chunk = f.read(min(_CHUNK, size - done))
        if not chunk:
            raise RegistryError(f"blob sha256:{digest} is shorter than {size} bytes")
        h.update(chunk)
        done += len(chunk)
        if progress:
            progress(digest, done, size)
        yield chunk
    if h.hexdigest() != digest:
        raise DigestMismatchError(f"blob sha256:{digest} hashes to sha256:{h.hexdigest()}")


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _error_text(resp: httpx.Response) -> str:
    """The registry's error codes and messages, or the status line."""
    try:
        body = resp.read()
        doc = json.loads(body)
        errors = doc.get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
        if parts:
            return "; ".join(parts)
        if isinstance(doc.get("details") or doc.get("message"), str):
            return str(doc.get("details") or doc.get("message"))
    except (ValueError, AttributeError, httpx.HTTPError):
        pass
    return f"HTTP {resp.status_code} {resp.reason_phrase}".strip()
