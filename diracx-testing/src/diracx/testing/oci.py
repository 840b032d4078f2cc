"""Images and registries for tests, with no outside network.

- :func:`build_busybox_layout`: an OCI image layout holding a one-layer image made from
  Debian's static busybox (``busybox-static``): ``/bin/busybox`` and a symlink per
  applet, ``/etc/passwd``, ``/tmp``, ``/work``; ``Env`` PATH, ``WorkingDir`` /work,
  ``Cmd`` ["sh"]. The bytes are deterministic.
- :func:`start_registry`: Debian's ``docker-registry`` (distribution 2.8) on a free
  loopback port with filesystem storage in a temporary directory; anonymous, basic
  authentication (htpasswd, bcrypt) or a bearer-token challenge answered by a small
  token server on a thread (RS256 JWTs with an x5c certificate the registry trusts).

The pytest fixtures (registered by :mod:`diracx.testing.plugin`) are ``busybox_layout``,
``oci_registry``, ``oci_registry_basic`` and ``oci_registry_bearer`` (all session-scoped).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from diracx.core.oci import (
    MEDIA_OCI_LAYER_GZIP,
    HistoryEntry,
    Image,
    ImageConfig,
    Layer,
    Platform,
    read_oci_layout,
    write_oci_layout,
)
from diracx.testing.utils import free_port

BUSYBOX = Path("/bin/busybox")
REGISTRY_BINARY = "docker-registry"
INSTALL_HINT = "apt-get install docker-registry busybox-static"
BUSYBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FIXED_MTIME = 1_700_000_000  # 2023-11-14: fixed, so the image digest never changes

AuthKind = Literal["none", "basic", "bearer"]


class RegistryUnavailableError(RuntimeError):
    """The test registry cannot be started here; the message says what to do."""


# -- a busybox image ----------------------------------------------------------------------


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
    return info


def layer_bytes(entries: list[tuple[str, bytes | str | None, int]]) -> bytes:
    """An uncompressed layer tar from ``(path, content, mode)`` entries.

    *content* bytes make a file, a str a symlink to it, None a directory. Paths are
    written as given (``.wh.NAME`` makes a whiteout). Deterministic.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content, mode in entries:
            if content is None:
                tar.addfile(_tarinfo(path, tarfile.DIRTYPE, mode))
            elif isinstance(content, str):
                tar.addfile(_tarinfo(path, tarfile.SYMTYPE, mode, link=content))
            else:
                tar.addfile(
                    _tarinfo(path, tarfile.REGTYPE, mode, len(content)), io.BytesIO(content)
                )
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with no name and a zero mtime in its header: deterministic."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted({a for a in out.stdout.split() if a and "/" not in a and a != "busybox"})


def build_image_layout(
    dest: Path,
    layers: list[bytes],
    *,
    config: ImageConfig,
    platform: Platform | None = None,
    ref_name: str | None = None,
    history: list[HistoryEntry] | None = None,
) -> Image:
    """Write an image made of these layer blobs (tar or gzip bytes) into an OCI layout."""
    descs = []
    blobs: dict[str, bytes] = {}
    for blob in layers:
        digest = hashlib.sha256(blob).hexdigest()
        gz = blob[:2] == b"\x1f\x8b"
        raw = gzip.decompress(blob) if gz else blob
        descs.append(
            Layer(
                digest=digest,
                media_type=MEDIA_OCI_LAYER_GZIP if gz else "application/vnd.oci.image.layer.v1.tar",
                size=len(blob),
                diff_id=hashlib.sha256(raw).hexdigest(),
            )
        )
        blobs[digest] = blob
    image = Image(
        config=config,
        layers=descs,
        platform=platform or Platform.host(),
        history=history or [],
        created="2023-11-14T22:13:20Z",
    )
    write_oci_layout(image, lambda d: io.BytesIO(blobs[d]), dest, ref_name=ref_name)
    return image


def build_busybox_layout(dest: Path, *, busybox: Path = BUSYBOX, ref_name: str = "latest") -> Image:
    """An OCI layout at *dest* with a one-layer (gzip) busybox image; the image."""
    if not busybox.is_file():
        raise RegistryUnavailableError(f"{busybox} is missing: {INSTALL_HINT}")
    entries: list[tuple[str, bytes | str | None, int]] = [
        ("bin", None, 0o755),
        ("bin/busybox", busybox.read_bytes(), 0o755),
        *[(f"bin/{a}", "busybox", 0o777) for a in busybox_applets(busybox)],
        ("dev", None, 0o755),
        ("etc", None, 0o755),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("etc/hostname", b"busybox\n", 0o644),
        (
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        ("proc", None, 0o755),
        ("root", None, 0o700),
        ("sys", None, 0o755),
        ("tmp", None, 0o1777),
        ("usr", None, 0o755),
        ("usr/bin", None, 0o755),
        ("usr/bin/env", "/bin/busybox", 0o777),
        ("work", None, 0o755),
    ]
    config = ImageConfig(env=[f"PATH={BUSYBOX_PATH}"], working_dir="/work", cmd=["sh"])
    history = [HistoryEntry(created="2023-11-14T22:13:20Z", created_by="diracx.testing busybox")]
    return build_image_layout(
        dest, [gzip_bytes(layer_bytes(entries))], config=config, ref_name=ref_name, history=history
    )


# -- a registry ---------------------------------------------------------------------------


@dataclass
class TokenServer:
    """A bearer-token service for the registry: grants what the users may do."""

    issuer: str
    service: str
    users: dict[str, str]
    anonymous_actions: tuple[str, ...] = ()
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _key: Any = None
    _cert_der: bytes = b""
    _server: http.server.ThreadingHTTPServer | None = None

    def start(self, cert_path: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "diracx-test-token-issuer")])
        now = time.time()
        import datetime as dt

        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        query = urllib.parse.parse_qs(url.query)
        user = None
        header = req.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                self.requests.append({"user": name, "scopes": query.get("scope", []), "ok": False})
                self._reply(req, 401, {"details": "wrong user name or password"})
                return
            user = name
        access = []
        for scope in " ".join(query.get("scope", [])).split():
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            allowed = wanted if user else [a for a in wanted if a in self.anonymous_actions]
            if kind == "repository":
                access.append({"type": kind, "name": repo, "actions": allowed})
        self.requests.append({"user": user, "scopes": query.get("scope", []), "ok": True})
        self._reply(req, 200, {"token": self._jwt(user or "", access), "expires_in": 300})

    def _reply(self, req: http.server.BaseHTTPRequestHandler, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _jwt(self, subject: str, access: list[dict[str, Any]]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"


@dataclass
class OCIRegistry:
    """A running loopback registry: ``host`` is ``127.0.0.1:PORT`` (plain HTTP)."""

    host: str
    root: Path
    auth: AuthKind = "none"
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    process: subprocess.Popen[bytes] | None = None

    def ref(self, name: str) -> str:
        """``127.0.0.1:PORT/<name>``."""
        return f"{self.host}/{name}"

    @property
    def credentials(self) -> dict[str, tuple[str, str]]:
        if self.username is None or self.password is None:
            return {}
        return {self.host: (self.username, self.password)}

    def client(self, **kwargs: Any) -> Any:
        """A :class:`diracx.api.registry.RegistryClient` holding this registry's credentials."""
        from diracx.api.registry import RegistryClient

        kwargs.setdefault("credentials", self.credentials)
        kwargs.setdefault("docker_config", self.root / "no-docker-config.json")
        return RegistryClient(**kwargs)

    def push_layout(self, layout: Path, name: str, *, ref: str | None = None) -> str:
        """Push the image of an OCI layout as ``<host>/<name>``; its manifest digest (hex)."""
        image, blobs = read_oci_layout(layout, ref=ref)
        with self.client() as client:
            digest: str = client.push(image, self.ref(name), lambda d: blobs[d].open("rb"))
        return digest

    def docker_config(self, dest: Path) -> Path:
        """Write a Docker ``config.json`` with this registry's credentials; its directory."""
        dest.mkdir(parents=True, exist_ok=True)
        auths = {}
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            auths[self.host] = {"auth": token}
        (dest / "config.json").write_text(json.dumps({"auths": auths}))
        return dest

    def logs(self) -> str:
        try:
            return (self.root / "registry.log").read_text(errors="replace")
        except OSError:
            return ""


def _bcrypt(password: str) -> str:
    """A bcrypt hash for htpasswd: the ``bcrypt`` package if installed, else libcrypt."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # removed in Python 3.13
        except ImportError:
            crypt = None  # type: ignore[assignment]
    if crypt is not None and crypt.METHOD_BLOWFISH in crypt.methods:
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if hashed and hashed.startswith("$2"):
            return hashed
    raise RegistryUnavailableError(
        "no bcrypt implementation for the registry's htpasswd file: install the 'bcrypt' "
        "Python package (or use Python < 3.13, whose crypt module uses libcrypt's bcrypt)"
    )


def _set_pdeathsig() -> None:
    """In the child: die with the test process, even if it is killed."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def start_registry(
    base: Path | None = None,
    *,
    auth: AuthKind = "none",
    username: str = "alice",
    password: str | None = None,
    anonymous_actions: tuple[str, ...] = (),
) -> Iterator[OCIRegistry]:
    """Run a ``docker-registry`` on 127.0.0.1 until the block ends.

    *auth* ``basic``: htpasswd with one user; ``bearer``: a token server that gives
    *username* every action and anonymous clients only *anonymous_actions*.
    """
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RegistryUnavailableError(f"the {REGISTRY_BINARY} binary is missing: {INSTALL_HINT}")
    owned = base is None
    root = Path(tempfile.mkdtemp(prefix="diracx-registry-")) if base is None else base
    root.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(12)
    token_server = None
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    registry = OCIRegistry(host="", root=root, auth=auth)
    try:
        if auth == "basic":
            (root / "htpasswd").write_text(f"{username}:{_bcrypt(password)}\n")
            config["auth"] = {"htpasswd": {"realm": "diracx-test", "path": str(root / "htpasswd")}}
            registry.username, registry.password = username, password
        elif auth == "bearer":
            token_server = TokenServer(
                issuer="diracx-test-issuer",
                service="diracx-test-registry",
                users={username: password},
                anonymous_actions=anonymous_actions,
            )
            token_server.start(root / "token-cert.pem")
            config["auth"] = {
                "token": {
                    "realm": token_server.realm,
                    "service": token_server.service,
                    "issuer": token_server.issuer,
                    "rootcertbundle": str(root / "token-cert.pem"),
                }
            }
            registry.username, registry.password = username, password
            registry.token_server = token_server
        for _attempt in range(5):
            port = free_port()
            config["http"]["addr"] = f"127.0.0.1:{port}"
            # JSON is YAML: no YAML writer needed
            (root / "config.yml").write_text(json.dumps(config, indent=1))
            log = open(root / "registry.log", "ab")  # noqa: SIM115 - kept open by the child
            proc = subprocess.Popen(
                [binary, "serve", str(root / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_set_pdeathsig,
            )
            log.close()
            registry.host, registry.process = f"127.0.0.1:{port}", proc
            if _wait_ready(registry):
                break
            _stop(proc)
        else:
            raise RegistryUnavailableError(
                f"{REGISTRY_BINARY} did not start; its log:\n{registry.logs()[-2000:]}"
            )
        yield registry
    finally:
        if registry.process is not None:
            _stop(registry.process)
        if token_server is not None:
            token_server.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _wait_ready(registry: OCIRegistry, timeout: float = 20.0) -> bool:
    import httpx

    assert registry.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            return False  # exited: the port was taken, or the config is wrong
        try:
            resp = httpx.get(f"http://{registry.host}/v2/", timeout=1.0)
            if resp.status_code in (200, 401):
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def registry_missing_reason() -> str | None:
    """Why the test registry cannot run here, or None."""
    if shutil.which(REGISTRY_BINARY) is None:
        return f"the {REGISTRY_BINARY} binary is missing ({INSTALL_HINT})"
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing ({INSTALL_HINT})"
    return None


def digest_of_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


__all__ = [
    "OCIRegistry",
    "RegistryUnavailableError",
    "TokenServer",
    "build_busybox_layout",
    "build_image_layout",
    "gzip_bytes",
    "layer_bytes",
    "registry_missing_reason",
    "start_registry",
]

# -- pytest fixtures (registered by diracx.testing.plugin) ---------------------------------


def _unavailable(reason: str) -> None:
    """Skip the test, except under CI=true, where a missing tool is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the OCI tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout (directory) with a busybox image, tagged ``latest``; built once."""
    if not BUSYBOX.is_file():
        _unavailable(f"{BUSYBOX} is missing ({INSTALL_HINT})")
    path = tmp_path_factory.mktemp("busybox") / "layout"
    build_busybox_layout(path)
    return path


def _registry(tmp_path_factory: pytest.TempPathFactory, auth: AuthKind) -> Iterator[OCIRegistry]:
    if shutil.which(REGISTRY_BINARY) is None:
        _unavailable(f"the {REGISTRY_BINARY} binary is missing ({INSTALL_HINT})")
    try:
        with start_registry(tmp_path_factory.mktemp(f"registry-{auth}"), auth=auth) as registry:
            yield registry
    except RegistryUnavailableError as exc:
        pytest.fail(f"cannot start the test registry: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OCIRegistry]:
    """An anonymous ``docker-registry`` on 127.0.0.1 (plain HTTP) for the session."""
    yield from _registry(tmp_path_factory, "none")


@pytest.fixture(scope="session")
def oci_registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OCIRegistry]:
    """A registry that wants basic authentication (``.username``/``.password``)."""
    yield from _registry(tmp_path_factory, "basic")


@pytest.fixture(scope="session")
def oci_registry_bearer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OCIRegistry]:
    """A registry with a bearer-token challenge; its token server (``.token_server``)
    gives ``.username`` every action and anonymous clients none."""
    yield from _registry(tmp_path_factory, "bearer")
