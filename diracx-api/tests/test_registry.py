"""diracx.api.registry against a real registry on loopback (Debian's docker-registry):
references, pull and push, basic and bearer authentication, platform selection, digest
pinning and verification."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path

import pytest

from diracx.api.registry import (
    ImageNotFoundError,
    Reference,
    RegistryClient,
    RegistryError,
    UnauthorizedError,
    load_credentials,
)
from diracx.core.oci import (
    MEDIA_DOCKER_LIST,
    DigestMismatchError,
    Image,
    ImageConfig,
    NoPlatformMatchError,
    Platform,
    read_oci_layout,
    unpack_layer,
)
from diracx.core.store import LocalStore
from diracx.testing.oci import OCIRegistry, build_image_layout, layer_bytes


def unique(name: str) -> str:
    return f"test/{name}-{uuid.uuid4().hex[:8]}"


def blob_path(registry: OCIRegistry, digest: str) -> Path:
    """Where docker-registry's filesystem driver keeps a blob (to tamper with it)."""
    return registry.root / "storage/docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"


# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "registry-1.docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36", None),
        ("docker.io/user/app:v1", "registry-1.docker.io", "user/app", "v1", None),
        ("ghcr.io/org/team/app", "ghcr.io", "org/team/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("127.0.0.1:5000/a/b:1.0", "127.0.0.1:5000", "a/b", "1.0", None),
        ("[::1]:5000/a", "[::1]:5000", "a", "latest", None),
        (f"quay.io/x/y@sha256:{'a' * 64}", "quay.io", "x/y", None, "a" * 64),
        (f"x:1@sha256:{'b' * 64}", "registry-1.docker.io", "library/x", "1", "b" * 64),
    ],
)
def test_parse_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry, repository, tag, digest,
    )  # fmt: skip
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    ["", "UPPER/case", "a//b", "x:bad tag", "x@sha256:123", "x@md5:" + "a" * 32, "https://x/y"],
)
def test_bad_references(text: str) -> None:
    with pytest.raises(ValueError):
        Reference.parse(text)


def test_plain_http_only_for_loopback() -> None:
    with RegistryClient(insecure=["registry.lan:5000"]) as client:
        assert client._base("127.0.0.1:5000").startswith("http://")
        assert client._base("localhost:5000").startswith("http://")
        assert client._base("[::1]:5000").startswith("http://")
        assert client._base("registry.lan:5000").startswith("http://")
        assert client._base("ghcr.io").startswith("https://")
        assert client._base("127.0.0.1.nip.io").startswith("https://")


def test_docker_config_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    config = {
        "auths": {
            "https://index.docker.io/v1/": {
                "auth": base64.b64encode(b"hub:pw:with:colons").decode()
            },
            "reg.example:5000": {"auth": base64.b64encode(b"me:secret").decode()},
            "other.example": {"username": "u", "password": "p"},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert load_credentials("registry-1.docker.io") == ("hub", "pw:with:colons")
    assert load_credentials("reg.example:5000") == ("me", "secret")
    assert load_credentials("other.example") == ("u", "p")
    assert load_credentials("unknown.example") is None
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nowhere"))
    assert load_credentials("reg.example:5000") is None


# -- pull and push (anonymous) ------------------------------------------------------------------


def test_push_then_pull_gives_the_same_digest_and_files(
    busybox_layout: Path, oci_registry: OCIRegistry, tmp_path: Path
) -> None:
    image, blobs = read_oci_layout(busybox_layout)
    name = unique("busybox") + ":1"
    with oci_registry.client() as client:
        pushed = client.push(image, oci_registry.ref(name), lambda d: blobs[d].open("rb"))
        assert pushed == image.digest
        store = LocalStore(tmp_path / "store")
        seen: list[str] = []
        resolved = client.pull(
            oci_registry.ref(name), store, progress=lambda d, n, t: seen.append(d)
        )
        assert resolved.digest == pushed and resolved.image.digest == pushed
        assert resolved.reference.digest == pushed
        assert resolved.image.config.working_dir == "/work"
        assert resolved.image.config.env_map()["PATH"].endswith("/bin")
        layer = resolved.image.layers[0]
        assert store.has(layer.digest) and seen
        # everything is in the store already: nothing is downloaded again
        seen.clear()
        client.pull(oci_registry.ref(name), store, progress=lambda d, n, t: seen.append(d))
        assert seen == []
        # by digest
        pinned = client.resolve(f"{oci_registry.ref(name.split(':')[0])}@sha256:{pushed}")
        assert pinned.digest == pushed and pinned.reference.tag is None
    root = tmp_path / "root"
    unpack_layer(store.path(layer.digest), root, overlay_whiteouts=False)
    assert (root / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(root / "bin/sh") == "busybox"


def test_unknown_images(oci_registry: OCIRegistry, busybox_layout: Path) -> None:
    name = unique("known")
    oci_registry.push_layout(busybox_layout, name + ":1")
    with oci_registry.client() as client:
        with pytest.raises(ImageNotFoundError, match=r"image not found.*:2"):
            client.resolve(oci_registry.ref(name + ":2"))
        with pytest.raises(ImageNotFoundError, match="image not found"):
            client.resolve(oci_registry.ref(unique("never-pushed")))
        with pytest.raises(ImageNotFoundError, match="image not found"):
            client.resolve(f"{oci_registry.ref(name)}@sha256:{'0' * 64}")


def test_a_registry_that_is_not_there(free_port: int) -> None:
    with RegistryClient(timeout=5) as client, pytest.raises(RegistryError, match="cannot reach"):
        client.resolve(f"127.0.0.1:{free_port}/x:1")


def test_digest_mismatches_are_caught(
    oci_registry: OCIRegistry, busybox_layout: Path, tmp_path: Path
) -> None:
    """A registry that serves other bytes than the digest says: manifest and layer."""
    layout = tmp_path / "layout"
    image = build_image_layout(
        layout, [layer_bytes([("f", b"original content", 0o644)])], config=ImageConfig()
    )
    name = unique("tampered")
    digest = oci_registry.push_layout(layout, name + ":1")
    layer = image.layers[0]
    data = blob_path(oci_registry, layer.digest)
    data.write_bytes(data.read_bytes().replace(b"original", b"tampered"))
    store = LocalStore(tmp_path / "store")
    with oci_registry.client() as client:
        with pytest.raises(DigestMismatchError, match=layer.digest):
            client.pull(oci_registry.ref(name + ":1"), store)
        assert not store.has(layer.digest)  # nothing unverified reaches the store
        manifest = blob_path(oci_registry, digest)
        manifest.write_bytes(manifest.read_bytes() + b" ")
        with pytest.raises(DigestMismatchError, match="pinned digest"):
            client.resolve(f"{oci_registry.ref(name)}@sha256:{digest}")
        with pytest.raises(DigestMismatchError):
            client.resolve(oci_registry.ref(name + ":1"))  # Docker-Content-Digest disagrees


def test_chunked_upload_and_cross_repository_mount(
    oci_registry: OCIRegistry, tmp_path: Path
) -> None:
    big = os.urandom(300_000)
    layout = tmp_path / "layout"
    image = build_image_layout(layout, [layer_bytes([("big", big, 0o644)])], config=ImageConfig())
    _, blobs = read_oci_layout(layout)
    first, second = unique("chunked"), unique("mounted")
    sizes: list[int] = []
    with oci_registry.client(chunk_size=64 * 1024) as client:
        digest = client.push(
            image,
            oci_registry.ref(first + ":1"),
            lambda d: blobs[d].open("rb"),
            progress=lambda d, n, t: sizes.append(n),
        )
        assert sizes[:3] == [65536, 131072, 196608]  # sent in chunks
        layer = image.layers[0]
        sent = client.push_blob(
            oci_registry.ref(second), layer.digest, layer.size, lambda d: blobs[d].open("rb"),
            mount_from=first,
        )  # fmt: skip
        assert sent is False  # mounted, not uploaded
        assert client.push(image, oci_registry.ref(second + ":1"), lambda d: blobs[d].open("rb"))
        store = LocalStore(tmp_path / "store")
        assert client.pull(oci_registry.ref(second + ":1"), store).digest == digest
        assert store.has(layer.digest)


def test_pushing_a_corrupt_blob_fails(oci_registry: OCIRegistry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    image = build_image_layout(layout, [layer_bytes([("f", b"x", 0o644)])], config=ImageConfig())
    bad = layer_bytes([("f", b"y", 0o644)])
    for chunk_size in (1 << 20, 1024):
        ref = oci_registry.ref(unique("corrupt"))
        with (
            oci_registry.client(chunk_size=chunk_size) as client,
            pytest.raises(DigestMismatchError),
        ):
            client.push(image, ref, lambda d: io.BytesIO(bad))


def test_platform_selection_in_an_index(oci_registry: OCIRegistry, tmp_path: Path) -> None:
    images: list[Image] = []
    blobs: dict[str, bytes] = {}
    for arch, variant in (("amd64", None), ("arm64", "v8"), ("arm", "v7")):
        content = layer_bytes([("arch", arch.encode(), 0o644)])
        blobs[hashlib.sha256(content).hexdigest()] = content
        platform = Platform(architecture=arch, variant=variant)
        images.append(
            build_image_layout(
                tmp_path / arch, [content], config=ImageConfig(cmd=[arch]), platform=platform
            )
        )
    name = unique("multi")
    with oci_registry.client() as client:
        index = client.push_index(
            images, oci_registry.ref(name + ":1"), lambda d: io.BytesIO(blobs[d])
        )
        for image in images:
            got = client.resolve(oci_registry.ref(name + ":1"), image.platform)
            assert got.digest == image.digest and got.index_digest == index
            assert got.image.config.cmd == [image.platform.architecture]
        host = client.resolve(oci_registry.ref(name + ":1"))
        assert host.image.platform.architecture == Platform.host().architecture
        with pytest.raises(NoPlatformMatchError, match=r"linux/s390x.*linux/amd64"):
            client.resolve(oci_registry.ref(name + ":1"), Platform.parse("linux/s390x"))
        # an image (not an index) for another platform is refused too
        with pytest.raises(NoPlatformMatchError, match="linux/arm/v7"):
            client.resolve(f"{oci_registry.ref(name)}@sha256:{images[2].digest}")
        # a Docker manifest list works the same way
        doc = {
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_LIST,
            "manifests": [
                {
                    **img.manifest_descriptor(),
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                }
                for img in images
            ],
        }
        client.push_manifest(
            oci_registry.ref(name + ":list"), json.dumps(doc).encode(), MEDIA_DOCKER_LIST
        )
        got = client.resolve(oci_registry.ref(name + ":list"), Platform.parse("linux/arm64"))
        assert got.digest == images[1].digest


# -- authentication ------------------------------------------------------------------------------


def test_basic_auth_from_the_docker_config(
    oci_registry_basic: OCIRegistry,
    busybox_layout: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image, blobs = read_oci_layout(busybox_layout)
    ref = oci_registry_basic.ref(unique("basic") + ":1")
    monkeypatch.setenv("DOCKER_CONFIG", str(oci_registry_basic.docker_config(tmp_path / "docker")))
    with RegistryClient() as client:  # credentials from $DOCKER_CONFIG/config.json
        assert client.push(image, ref, lambda d: blobs[d].open("rb")) == image.digest
        assert client.resolve(ref).digest == image.digest
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    with RegistryClient() as client, pytest.raises(UnauthorizedError, match="without credentials"):
        client.resolve(ref)
    wrong = {oci_registry_basic.host: (oci_registry_basic.username or "", "wrong")}
    with (
        RegistryClient(credentials=wrong) as client,
        pytest.raises(UnauthorizedError, match="alice"),
    ):
        client.resolve(ref)


def test_bearer_token_challenge(
    oci_registry_bearer: OCIRegistry, busybox_layout: Path, tmp_path: Path
) -> None:
    image, blobs = read_oci_layout(busybox_layout)
    name = unique("bearer")
    ref = oci_registry_bearer.ref(name + ":1")
    server = oci_registry_bearer.token_server
    assert server is not None
    server.requests.clear()
    with oci_registry_bearer.client() as client:
        assert client.push(image, ref, lambda d: blobs[d].open("rb")) == image.digest
        store = LocalStore(tmp_path / "store")
        assert client.pull(ref, store).digest == image.digest
    scopes = {s for r in server.requests for s in r["scopes"]}
    assert f"repository:{name}:pull,push" in scopes and f"repository:{name}:pull" in scopes
    assert all(r["user"] == oci_registry_bearer.username for r in server.requests)
    # tokens are reused: a handful of token requests, not one per blob
    assert len(server.requests) <= 4
    # anonymous clients get a token without rights: a clear error
    with (
        RegistryClient(docker_config=tmp_path / "none.json") as client,
        pytest.raises(UnauthorizedError, match="without credentials"),
    ):
        client.resolve(ref)
    bad = {oci_registry_bearer.host: ("alice", "wrong")}
    with (
        RegistryClient(credentials=bad) as client,
        pytest.raises(UnauthorizedError, match="refused a token"),
    ):
        client.resolve(ref)
