"""The S3 object store, against moto's real S3 server (``s3_store_url``): no mocks."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from diracx.core.exceptions import CorruptObjectError, ObjectNotFoundError
from diracx.core.models import MultipartUpload, SingleUpload
from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.db.os import InvalidUploadError, S3Store, UnknownUploadError, open_store

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def settings_from(env: dict[str, str], data_dir: Path, **extra: Any) -> ServiceSettings:
    fields: dict[str, Any] = {k.removeprefix("DIRACX_").lower(): v for k, v in env.items()}
    return ServiceSettings(data_dir=data_dir, **{**fields, **extra})


@pytest.fixture
def settings(s3_store_url: dict[str, str], tmp_path: Path) -> ServiceSettings:
    # small parts, so that multipart uploads stay small (S3's least part is 5 MiB)
    return settings_from(
        s3_store_url, tmp_path, s3_multipart_threshold=6 * MiB, s3_multipart_part_size=5 * MiB
    )


@pytest.fixture
def store(settings: ServiceSettings) -> S3Store:
    s = open_store(settings)
    assert isinstance(s, S3Store)
    return s


def keys(store: S3Store, under: str = "") -> list[str]:
    """Every object key of the store's bucket (under a prefix)."""
    found: list[str] = []
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=under
    )
    for page in pages:
        found += [o["Key"] for o in page.get("Contents", [])]
    return sorted(found)


def pending_uploads(store: S3Store) -> list[str]:
    return [
        u["Key"]
        for u in store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    ]


def blob_keys(store: S3Store) -> list[str]:
    return keys(store, store._key("blobs/"))


# -- settings ---------------------------------------------------------------------------


def test_open_store_follows_the_settings(tmp_path: Path, s3_store_url: dict[str, str]) -> None:
    local = open_store(ServiceSettings(data_dir=tmp_path))
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path / "store"
    s3 = open_store(settings_from(s3_store_url, tmp_path, store_url="s3://some-bucket/a/b/"))
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix) == ("some-bucket", "a/b")
    assert s3.key("0" * 64) == "a/b/blobs/" + "0" * 64
    secret = s3_store_url["DIRACX_S3_SECRET_ACCESS_KEY"]
    assert secret not in repr(s3)
    assert secret not in repr(settings_from(s3_store_url, tmp_path))


@pytest.mark.parametrize("url", ["s3:/bucket", "http://bucket", "s3://", "s3://UPPER", "s3://a"])
def test_a_malformed_store_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="store_url"):
        ServiceSettings(data_dir=tmp_path, store_url=url)


# -- round trips ------------------------------------------------------------------------


def test_bytes_round_trip(store: S3Store, tmp_path: Path) -> None:
    data = b"hello object store\n"
    digest = sha(data)
    assert not store.has(digest)
    with pytest.raises(ObjectNotFoundError, match=f"blob {digest} is not in the store"):
        store.read_bytes(digest)
    with pytest.raises(ObjectNotFoundError):
        store.size(digest)
    assert store.put_bytes(data) == digest
    assert store.put_bytes(data) == digest  # again: nothing changes
    assert store.has(digest)
    assert store.size(digest) == len(data)
    assert store.read_bytes(digest) == data
    assert b"".join(store.iter_chunks(digest)) == data
    store.copy_to(digest, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == data
    assert blob_keys(store) == [store.key(digest)]
    assert store.verify(digest)


def test_empty_blob(store: S3Store) -> None:
    digest = store.put_bytes(b"")
    assert digest == sha(b"")
    assert store.read_bytes(digest) == b"" and store.size(digest) == 0


def test_files_small_and_large_round_trip(store: S3Store, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"x" * 1000)
    assert store.put_file(small) == (sha(b"x" * 1000), 1000)
    assert small.exists()

    data = os.urandom(11 * MiB + 17)  # over the threshold: parts, by the transfer manager
    big = tmp_path / "big"
    big.write_bytes(data)
    digest, size = store.put_file(big, move=True)
    assert (digest, size) == (sha(data), len(data))
    assert not big.exists()
    assert store.read_bytes(digest) == data
    head = store.client.head_object(Bucket=store.bucket, Key=store.key(digest))
    assert head["ETag"].strip('"').endswith("-3")  # three parts of 5 MiB at most
    assert pending_uploads(store) == []


def test_streams_small_and_large(store: S3Store) -> None:
    small = b"a small stream"
    assert store.put_stream(io.BytesIO(small)) == (sha(small), len(small))

    data = os.urandom(13 * MiB + 5)
    # announced digest: a multipart upload straight to the final key
    assert store.put_stream(io.BytesIO(data), sha(data)) == (sha(data), len(data))
    assert store.read_bytes(sha(data)) == data
    # no digest announced: staged, then copied into place
    other = os.urandom(7 * MiB)
    assert store.put_stream(io.BytesIO(other)) == (sha(other), len(other))
    assert store.read_bytes(sha(other)) == other
    assert blob_keys(store) == sorted(store.key(d) for d in (sha(small), sha(data), sha(other)))
    assert keys(store, store._key("uploads/")) == []
    assert pending_uploads(store) == []


def test_writer_uploads_on_commit(store: S3Store) -> None:
    with store.writer() as writer:
        writer.write(b"piece one, ")
        writer.write(b"piece two")
        digest, size = writer.commit()
    assert store.read_bytes(digest) == b"piece one, piece two" and size == 20
    assert list(store.spool_dir.iterdir()) == []

    with store.writer() as writer:
        writer.write(b"not what is announced")
        with pytest.raises(CorruptObjectError):
            writer.commit(sha(b"something else"))
    assert not store.has(sha(b"not what is announced"))
    assert list(store.spool_dir.iterdir()) == []


def test_missing_is_one_batch_in_order_without_duplicates(store: S3Store) -> None:
    have = [store.put_bytes(f"present {i}".encode()) for i in range(5)]
    lacking = [sha(f"absent {i}".encode()) for i in range(300)]
    asked = [have[0], *lacking[:150], have[1], lacking[0], *lacking[150:], *have[2:]]
    assert store.missing(asked) == lacking
    assert store.missing(have) == []
    assert store.missing([]) == []
    with pytest.raises(ValueError, match="not a SHA-256 digest"):
        store.missing(["nope"])


# -- verified reads ---------------------------------------------------------------------


def test_a_blob_corrupted_behind_the_stores_back_is_never_served(
    store: S3Store, tmp_path: Path
) -> None:
    for size in (100, 3 * MiB + 1):  # read whole, and streamed in chunks
        data = os.urandom(size)
        digest = store.put_bytes(data)
        # the bucket's object is overwritten by someone else: same size, other bytes
        store.client.put_object(
            Bucket=store.bucket, Key=store.key(digest), Body=bytes([data[0] ^ 1]) + data[1:]
        )
        with pytest.raises(CorruptObjectError, match=f"blob {digest} is corrupt"):
            store.read_bytes(digest)
        with pytest.raises(CorruptObjectError, match=f"blob {digest} is corrupt"):
            b"".join(store.iter_chunks(digest))
        dest = tmp_path / f"dest-{size}"
        with pytest.raises(CorruptObjectError):
            store.copy_to(digest, dest)
        assert not dest.exists() and not list(tmp_path.glob(".dest-*"))
        cache = LocalStore(tmp_path / "cache")
        with pytest.raises(CorruptObjectError, match=f"blob {digest} is corrupt"):
            store.download_into(cache, digest)
        assert not cache.has(digest) and list(cache.tmp.iterdir()) == []
        assert not store.verify(digest)


# -- presigned transfers ----------------------------------------------------------------


def test_presigned_get(store: S3Store) -> None:
    digest = store.put_bytes(b"fetch me")
    url = store.presign_get(digest)
    assert url.startswith(store.client.meta.endpoint_url)
    assert httpx.get(url).content == b"fetch me"


def test_presigned_urls_name_the_public_endpoint(
    s3_store_url: dict[str, str], tmp_path: Path
) -> None:
    public = "http://s3.example.org:9000"
    store = open_store(settings_from(s3_store_url, tmp_path, s3_public_endpoint_url=public))
    assert isinstance(store, S3Store)
    digest = store.put_bytes(b"x")  # through the internal endpoint
    assert store.presign_get(digest).startswith(f"{public}/")
    plan = store.plan_upload(sha(b"y"), 1)
    assert isinstance(plan, SingleUpload) and plan.url.startswith(f"{public}/")


def put_single(plan: SingleUpload, body: bytes) -> None:
    r = httpx.put(plan.url, content=body, headers=plan.headers)
    assert r.status_code == 200, r.text


def put_parts(plan: MultipartUpload, data: bytes) -> None:
    for part in plan.parts:
        start = (part.number - 1) * plan.part_size
        r = httpx.put(part.url, content=data[start : start + plan.part_size])
        assert r.status_code == 200, r.text


def test_single_presigned_upload(store: S3Store) -> None:
    data = b"uploaded by a client"
    digest = sha(data)
    plan = store.plan_upload(digest, len(data))
    assert isinstance(plan, SingleUpload) and plan.upload_id is not None
    put_single(plan, data)
    assert not store.has(digest)  # staged, not yet visible
    assert store.complete_upload(digest, plan.upload_id) == (len(data), True)
    assert store.read_bytes(digest) == data
    assert keys(store) == [store.key(digest)]  # the staging key is gone
    # a retry of the completion (its answer lost) finds the blob in place
    assert store.complete_upload(digest, plan.upload_id) == (len(data), False)


def test_multipart_presigned_upload(store: S3Store) -> None:
    data = os.urandom(12 * MiB + 3)
    digest = sha(data)
    plan = store.plan_upload(digest, len(data))
    assert isinstance(plan, MultipartUpload)
    assert plan.part_size == 5 * MiB and [p.number for p in plan.parts] == [1, 2, 3]
    put_parts(plan, data)
    assert blob_keys(store) == []  # nothing visible before completion
    assert store.complete_upload(digest, plan.upload_id) == (len(data), True)
    assert store.read_bytes(digest) == data
    assert keys(store) == [store.key(digest)]
    assert pending_uploads(store) == []


def test_a_tampered_single_upload_is_refused_and_leaves_nothing(store: S3Store) -> None:
    claimed = sha(b"what I say")
    plan = store.plan_upload(claimed, 10)
    assert isinstance(plan, SingleUpload) and plan.upload_id is not None
    put_single(plan, b"what I send")
    with pytest.raises(InvalidUploadError, match="nothing stored") as exc_info:
        store.complete_upload(claimed, plan.upload_id)
    assert sha(b"what I send") in str(exc_info.value) and claimed in str(exc_info.value)
    assert keys(store) == []  # neither under the final key nor staged
    with pytest.raises(UnknownUploadError):
        store.complete_upload(claimed, plan.upload_id)


def test_a_tampered_multipart_upload_is_refused_and_leaves_nothing(store: S3Store) -> None:
    data = os.urandom(11 * MiB)
    digest = sha(data)
    plan = store.plan_upload(digest, len(data))
    assert isinstance(plan, MultipartUpload)
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    put_parts(plan, tampered)
    with pytest.raises(InvalidUploadError, match="nothing stored"):
        store.complete_upload(digest, plan.upload_id)
    assert keys(store) == [] and pending_uploads(store) == []


def test_a_multipart_upload_with_a_missing_part_is_refused(store: S3Store) -> None:
    data = os.urandom(11 * MiB)
    plan = store.plan_upload(sha(data), len(data))
    assert isinstance(plan, MultipartUpload)
    r = httpx.put(plan.parts[1].url, content=data[5 * MiB : 10 * MiB])  # part 2 only
    assert r.status_code == 200
    with pytest.raises(InvalidUploadError, match=r"parts \[2\]"):
        store.complete_upload(sha(data), plan.upload_id)
    assert keys(store) == [] and pending_uploads(store) == []


def test_unknown_and_malformed_uploads(store: S3Store) -> None:
    digest = sha(b"never sent")
    plan = store.plan_upload(digest, 10)
    assert isinstance(plan, SingleUpload) and plan.upload_id is not None
    with pytest.raises(UnknownUploadError, match=r"no upload .* is pending"):
        store.complete_upload(digest, plan.upload_id)  # planned, never uploaded
    with pytest.raises(UnknownUploadError):
        store.complete_upload(digest, "s." + "0" * 32)
    with pytest.raises(UnknownUploadError):
        store.complete_upload(digest, "m." + "0" * 32 + ".no-such-upload")
    for bad in ("", "x", "s.../../etc", "s." + "0" * 32 + ".extra", "m." + "0" * 32 + ".a b"):
        with pytest.raises(InvalidUploadError, match="malformed upload id"):
            store.complete_upload(digest, bad)
    with pytest.raises(InvalidUploadError, match="between 0 and 5 TiB"):
        store.plan_upload(digest, -1)


# -- nothing partial is ever visible ----------------------------------------------------


class FailingStream(io.RawIOBase):
    """Gives *size* bytes, then fails: a network or disk error in the middle of a blob."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the source went away")
        n = min(self.left, MiB if n < 0 else n)
        self.left -= n
        return b"z" * n


def test_no_partial_object_is_ever_visible(store: S3Store) -> None:
    data = os.urandom(12 * MiB)
    # the announced digest is wrong: the multipart upload is aborted, never completed
    with pytest.raises(CorruptObjectError):
        store.put_stream(io.BytesIO(data), sha(b"another blob"))
    # the source fails half-way through
    with pytest.raises(OSError, match="went away"):
        store.put_stream(FailingStream(8 * MiB))  # type: ignore[arg-type]
    assert keys(store) == [] and pending_uploads(store) == []
    # a client that uploaded parts but never completed: nothing under blobs/
    plan = store.plan_upload(sha(data), len(data))
    assert isinstance(plan, MultipartUpload)
    put_parts(plan, data)
    assert blob_keys(store) == [] and not store.has(sha(data))


@pytest.fixture
def get_counter(store: S3Store) -> Iterator[list[str]]:
    """The keys of every GetObject the store's client sends."""
    seen: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        seen.append(params["Key"])

    store.client.meta.events.register("provide-client-params.s3.GetObject", count)
    yield seen
    store.client.meta.events.unregister("provide-client-params.s3.GetObject", count)


def test_upload_from_a_local_store_sends_only_missing_blobs(
    store: S3Store, tmp_path: Path, get_counter: list[str]
) -> None:
    local = LocalStore(tmp_path / "local")
    small = local.put_bytes(b"small")
    big, _ = local.put_stream(io.BytesIO(os.urandom(7 * MiB)))
    store.put_bytes(b"small")
    assert store.upload_from(local, [small, big]) == [big]
    assert store.upload_from(local, [small, big]) == []
    assert store.read_bytes(big) == local.read_bytes(big)
    assert get_counter == [store.key(big)]  # only the read above


def test_abandoned_uploads_are_cleaned(store: S3Store) -> None:
    big = os.urandom(7 * MiB)
    multi = store.plan_upload(sha(big), len(big))  # planned, never finished
    single = store.plan_upload(sha(b"staged"), 6)
    assert isinstance(multi, MultipartUpload) and isinstance(single, SingleUpload)
    put_single(single, b"staged")  # uploaded, never completed
    kept = store.put_bytes(b"a real blob")
    assert store.clean_uploads(older_than=3600 * 24 * 365 * 100) == 0  # nothing that old
    assert len(pending_uploads(store)) == 1
    assert store.clean_uploads(older_than=0) == 2
    assert pending_uploads(store) == [] and keys(store) == [store.key(kept)]
    assert single.upload_id is not None
    with pytest.raises(UnknownUploadError):
        store.complete_upload(sha(b"staged"), single.upload_id)
