"""The object store: blobs in an S3-compatible bucket (``DIRACX_STORE_URL=s3://bucket/prefix``).

Blobs live under ``<prefix>/blobs/<digest>``. S3 makes an object visible only
once it is whole (a PUT, a completed multipart upload, a copy), so nothing
partial ever appears under a final key. Digests are checked on both sides:

- the service and workers hash what they upload, and upload exactly the bytes
  they hashed (or a read-only file of their cache, which cannot change);
- clients upload through presigned URLs to a *staging* key
  (``<prefix>/uploads/<digest>/<token>``); ``complete_upload`` hashes the staged
  object and copies it into place server-side, or deletes it if it does not
  hash to the digest (moto's S3 server does not enforce ``ChecksumSHA256``, so
  the checksum header alone cannot be trusted to refuse a bad body);
- every read is verified against the digest.

The module is named after real DiracX's ``diracx.db.os``; core never imports boto3.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from diracx.core.canonical import check_is_digest, is_digest
from diracx.core.exceptions import CorruptObjectError, DiracxError, ObjectNotFoundError
from diracx.core.models import MAX_BLOB_SIZE, MultipartUpload, SingleUpload, UploadPartURL
from diracx.core.settings import ServiceSettings
from diracx.core.store import CHUNK_SIZE, BlobWriter, LocalStore, hash_file, write_chunks_to

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef
else:
    S3Client = CompletedPartTypeDef = ObjectIdentifierTypeDef = Any

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (but the last)
GET_URL_SECONDS = 3600
IN_FLIGHT_PARTS = 4  # parts of a streamed upload held in memory at once
UPLOAD_URL_SECONDS = 6 * 3600  # a large upload may take a while: its URLs must not expire first
OCTET_STREAM = "application/octet-stream"
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
PRECONDITION_FAILED = frozenset({"412", "PreconditionFailed"})
TOKEN_RE = re.compile(r"^[0-9a-f]{32}\Z")
# S3 upload ids are opaque but URL-safe; refuse anything else before building a request
UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9._~+=/-]{1,1024}\Z")


class UnknownUploadError(ObjectNotFoundError):
    """No pending upload has this id for this digest (a 404)."""


class InvalidUploadError(DiracxError):
    """An upload whose bytes do not hash to its digest, or a malformed upload id (a 400)."""


def _is_not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in NOT_FOUND


def _b64_sha256(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode()


def part_size_for(size: int, preferred: int) -> int:
    """The part size of a multipart upload of *size* bytes: *preferred*, or larger if
    *size* would need more than S3's 10,000 parts (rounded up to a whole MiB)."""
    least = math.ceil(size / MAX_PARTS)
    return max(preferred, MIN_PART_SIZE, math.ceil(least / MiB) * MiB)


class S3Store:
    """A :class:`~diracx.core.store.BlobStore` in an S3 bucket, with presigned transfers."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        presign_client: S3Client | None = None,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 64 * MiB,
        spool_dir: Path | None = None,
        concurrency: int = 16,
    ) -> None:
        self.client = client
        # Presigned URLs name the host clients reach (it is part of the signature)
        self.presign_client = presign_client or client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.multipart_threshold = multipart_threshold
        self.part_size = max(part_size, MIN_PART_SIZE)
        self.spool_dir = spool_dir or Path(tempfile.gettempdir()) / "diracx-s3-spool"
        self.concurrency = concurrency
        self.transfer_config = TransferConfig(
            multipart_threshold=max(multipart_threshold, MIN_PART_SIZE),
            multipart_chunksize=self.part_size,
            max_concurrency=min(concurrency, 10),
        )

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> S3Store:
        location = settings.s3_location()
        if location is None:
            raise ValueError("store_url is not set: the store is the local directory")
        bucket, prefix = location
        client = make_client(settings, settings.s3_endpoint_url)
        presign = (
            make_client(settings, settings.s3_public_endpoint_url)
            if settings.s3_public_endpoint_url
            else client
        )
        return cls(
            client,
            bucket,
            prefix,
            presign_client=presign,
            multipart_threshold=settings.s3_multipart_threshold,
            part_size=settings.s3_multipart_part_size,
            spool_dir=settings.data_dir / "s3-spool",
        )

    def __repr__(self) -> str:  # never the credentials
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    # -- keys --------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def key(self, digest: str) -> str:
        """The object key of a blob: ``<prefix>/blobs/<digest>``."""
        check_is_digest(digest)
        return self._key(f"blobs/{digest}")

    def staging_key(self, digest: str, token: str) -> str:
        check_is_digest(digest)
        return self._key(f"uploads/{digest}/{token}")

    # -- looking -----------------------------------------------------------------------

    def _head(self, digest: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self.key(digest)))
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise

    def has(self, digest: str) -> bool:
        return self._head(digest) is not None

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The digests the bucket lacks, in order, without duplicates (concurrent HEADs)."""
        unique = list(dict.fromkeys(digests))
        for d in unique:
            check_is_digest(d)
        if len(unique) <= 1:
            return [d for d in unique if not self.has(d)]
        with ThreadPoolExecutor(min(self.concurrency, len(unique))) as pool:
            present = list(pool.map(self.has, unique))
        return [d for d, p in zip(unique, present, strict=True) if not p]

    def size(self, digest: str) -> int:
        head = self._head(digest)
        if head is None:
            raise ObjectNotFoundError(f"blob {digest} is not in the store")
        return int(head["ContentLength"])

    # -- writing -----------------------------------------------------------------------

    def _put_small(self, data: bytes, digest: str) -> None:
        """One PUT of exactly the bytes that were hashed (S3 checks the SHA-256 too)."""
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key(digest),
            Body=data,
            ChecksumSHA256=_b64_sha256(digest),
            ContentType=OCTET_STREAM,
        )

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self._put_small(data, digest)
        return digest

    def put_file(self, path: Path | str, *, move: bool = False) -> tuple[str, int]:
        """Store a file. Large files go up in parts (boto3's transfer manager) after
        being hashed: the file must not change meanwhile (workers upload read-only files
        of their cache). With *move*, the file is removed once stored."""
        path = Path(path)
        size = path.stat().st_size
        if size < self.multipart_threshold:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if not self.has(digest):
                self._put_small(data, digest)
            size = len(data)
        else:
            digest, size = hash_file(path)
            if not self.has(digest):
                self.client.upload_file(
                    str(path),
                    self.bucket,
                    self.key(digest),
                    ExtraArgs={"ContentType": OCTET_STREAM},
                    Config=self.transfer_config,
                )
        if move:
            path.unlink()
        return digest, size

    def put_stream(self, stream: BinaryIO, expected_digest: str | None = None) -> tuple[str, int]:
        """Store a stream, hashing exactly the bytes it uploads; refuse it if the digest differs.

        A stream smaller than the multipart threshold is one PUT. A larger one is a
        multipart upload (to its final key if the digest is announced, else to a
        staging key copied into place), completed only if the digest matches.
        """
        first = _read_up_to(stream, self.multipart_threshold)
        if len(first) < self.multipart_threshold:
            digest = hashlib.sha256(first).hexdigest()
            _check_expected(digest, expected_digest)
            if not self.has(digest):
                self._put_small(first, digest)
            return digest, len(first)
        if expected_digest is not None and self.has(expected_digest):
            digest, size = _drain_hash(stream, first)  # nothing to upload, but check it
            _check_expected(digest, expected_digest)
            return digest, size
        token = secrets.token_hex(16)
        key = (
            self.key(expected_digest)
            if expected_digest is not None
            else self._key(f"uploads/stream/{token}")
        )
        digest, size = self._multipart_from_stream(stream, first, key, expected_digest)
        if expected_digest is None:
            try:
                if not self.has(digest):
                    self._copy_into_place(key, digest)
            finally:
                self.client.delete_object(Bucket=self.bucket, Key=key)
        return digest, size

    def _multipart_from_stream(
        self, stream: BinaryIO, first: bytes, key: str, expected: str | None
    ) -> tuple[str, int]:
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=OCTET_STREAM
        )["UploadId"]
        h = hashlib.sha256()
        size = 0
        parts: list[CompletedPartTypeDef] = []
        try:
            with ThreadPoolExecutor(IN_FLIGHT_PARTS) as pool:
                in_flight: deque[Future[CompletedPartTypeDef]] = deque()
                for number, data in enumerate(_parts(stream, first, self.part_size), 1):
                    h.update(data)
                    size += len(data)
                    in_flight.append(pool.submit(self._upload_part, key, upload_id, number, data))
                    if len(in_flight) >= IN_FLIGHT_PARTS:  # bounded memory
                        parts.append(in_flight.popleft().result())
                parts.extend(f.result() for f in in_flight)
            digest = h.hexdigest()
            _check_expected(digest, expected)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        return digest, size

    def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes
    ) -> CompletedPartTypeDef:
        etag = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
        return {"PartNumber": number, "ETag": etag}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError:
            log.warning("could not abort multipart upload of %s", key, exc_info=True)

    def writer(self) -> BlobWriter:
        """A writer that spools to a local file, uploaded on ``commit``."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix="blob-")
        return BlobWriter(self, os.fdopen(fd, "wb"), Path(name))

    def _commit(self, tmp: Path, digest: str) -> None:
        """Upload a spooled file that hashed to *digest* (BlobWriter.commit), then drop it."""
        try:
            if not self.has(digest):
                if tmp.stat().st_size < self.multipart_threshold:
                    self._put_small(tmp.read_bytes(), digest)
                else:
                    self.client.upload_file(
                        str(tmp), self.bucket, self.key(digest), Config=self.transfer_config
                    )
        finally:
            tmp.unlink(missing_ok=True)

    def upload_from(self, local: LocalStore, digests: Iterable[str]) -> list[str]:
        """Upload the blobs of *local* that the bucket lacks (concurrently); return them.

        *local*'s files are read-only and already verified: large ones go up in
        parts through boto3's transfer manager.
        """
        missing = self.missing(digests)

        def upload(digest: str) -> None:
            path = local.path(digest)
            if path.stat().st_size < self.multipart_threshold:
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise CorruptObjectError(f"blob {digest} is corrupt in {local}")
                self._put_small(data, digest)
            else:
                self.client.upload_file(
                    str(path), self.bucket, self.key(digest), Config=self.transfer_config
                )

        if missing:
            with ThreadPoolExecutor(min(self.concurrency, len(missing))) as pool:
                list(pool.map(upload, missing))
        return missing

    # -- reading -----------------------------------------------------------------------

    def _get(self, digest: str, **kwargs: Any) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(digest), **kwargs)
        except ClientError as exc:
            if _is_not_found(exc):
                raise ObjectNotFoundError(f"blob {digest} is not in the store") from None
            raise

    def iter_chunks(self, digest: str) -> Iterator[bytes]:
        """Yield the blob's bytes; the last step checks the digest and raises if corrupt."""
        body = self._get(digest)["Body"]
        h = hashlib.sha256()
        try:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                h.update(chunk)
                yield chunk
        finally:
            body.close()
        if h.hexdigest() != digest:
            raise CorruptObjectError(f"blob {digest} is corrupt: it hashes to {h.hexdigest()}")

    def read_bytes(self, digest: str) -> bytes:
        body = self._get(digest)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptObjectError(f"blob {digest} is corrupt")
        return data

    def copy_to(self, digest: str, dest: Path) -> None:
        """Copy a verified blob to *dest* (written beside it first, then renamed)."""
        write_chunks_to(self.iter_chunks(digest), dest)

    def download_into(self, local: LocalStore, digest: str) -> int:
        """Fetch a blob into *local* (verified before it is kept); return its size."""
        with local.writer() as writer:
            body = self._get(digest)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    writer.write(chunk)
            finally:
                body.close()
            try:
                _, size = writer.commit(digest)
            except CorruptObjectError as exc:
                raise CorruptObjectError(f"blob {digest} is corrupt in the store: {exc}") from None
        return size

    def verify(self, digest: str) -> bool:
        try:
            for _ in self.iter_chunks(digest):
                pass
        except CorruptObjectError:
            return False
        return True

    def clear_tmp(self) -> None:
        """Remove spooled files left by writers that died."""
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    # -- presigned transfers -----------------------------------------------------------

    def presign_get(self, digest: str, expires: int = GET_URL_SECONDS) -> str:
        """A URL that lets anyone GET the blob for *expires* seconds."""
        return self.presign_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(digest)},
            ExpiresIn=expires,
        )

    def plan_upload(self, digest: str, size: int) -> SingleUpload | MultipartUpload:
        """Presigned URLs for a client to upload one blob to a staging key.

        Smaller than the multipart threshold: one PUT. Else a multipart upload with
        one presigned URL per part. Either way the client then calls
        :meth:`complete_upload`, which checks the digest before the blob is visible.
        """
        check_is_digest(digest)
        if not 0 <= size <= MAX_BLOB_SIZE:
            raise InvalidUploadError(f"blob size {size} is not between 0 and 5 TiB")
        token = secrets.token_hex(16)
        key = self.staging_key(digest, token)
        if size < self.multipart_threshold:
            url = self.presign_client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ContentType": OCTET_STREAM},
                ExpiresIn=UPLOAD_URL_SECONDS,
            )
            return SingleUpload(
                digest=digest,
                size=size,
                upload_id=f"s.{token}",
                url=url,
                headers={"Content-Type": OCTET_STREAM},  # signed: it must be sent as is
            )
        part_size = part_size_for(size, self.part_size)
        count = max(1, math.ceil(size / part_size))
        s3_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=OCTET_STREAM
        )["UploadId"]
        parts = [
            UploadPartURL(
                number=n,
                url=self.presign_client.generate_presigned_url(
                    "upload_part",
                    Params={"Bucket": self.bucket, "Key": key, "UploadId": s3_id, "PartNumber": n},
                    ExpiresIn=UPLOAD_URL_SECONDS,
                ),
            )
            for n in range(1, count + 1)
        ]
        return MultipartUpload(
            digest=digest,
            size=size,
            upload_id=f"m.{token}.{s3_id}",
            part_size=part_size,
            parts=parts,
        )

    def _parse_upload_id(self, digest: str, upload_id: str) -> tuple[str, str | None]:
        """(staging key, S3 multipart upload id or None) named by a plan's upload id."""
        kind, _, rest = upload_id.partition(".")
        token, _, s3_id = rest.partition(".")
        ok = TOKEN_RE.match(token) and (
            (kind == "s" and not s3_id) or (kind == "m" and UPLOAD_ID_RE.match(s3_id))
        )
        if not ok or not is_digest(digest):
            raise InvalidUploadError(
                f"malformed upload id {upload_id[:80]!r}: use the one POST /api/blobs/uploads gave"
            )
        return self.staging_key(digest, token), (s3_id if kind == "m" else None)

    def complete_upload(self, digest: str, upload_id: str) -> tuple[int, bool]:
        """Finish a client's upload: the staged object must hash to *digest*; then it is
        copied into place (server-side) and the staging key removed. Returns the size
        and whether the blob is new. Raises InvalidUploadError (nothing stored) if the
        bytes do not match, UnknownUploadError if there is no such upload."""
        key, s3_id = self._parse_upload_id(digest, upload_id)
        unknown = UnknownUploadError(
            f"no upload {upload_id[:80]!r} of blob {digest} is pending: it was completed, "
            "abandoned or never started (ask POST /api/blobs/uploads for a new one)"
        )
        try:
            if s3_id is not None:
                self._complete_multipart(key, s3_id, unknown)
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if not _is_not_found(exc):
                raise
            head = self._head(digest)
            if head is not None:  # completed already (a retry whose answer was lost?)
                return int(head["ContentLength"]), False
            raise unknown from None
        except UnknownUploadError:
            head = self._head(digest)
            if head is not None:
                return int(head["ContentLength"]), False
            raise
        try:
            h = hashlib.sha256()
            size = 0
            for chunk in obj["Body"].iter_chunks(CHUNK_SIZE):
                h.update(chunk)
                size += len(chunk)
            obj["Body"].close()
            if h.hexdigest() != digest:
                raise InvalidUploadError(
                    f"upload refused, nothing stored: content hashes to {h.hexdigest()}, "
                    f"not to the announced {digest}"
                )
            if self.has(digest):
                return size, False
            # only the object that was hashed may be copied (if the staged key was
            # written again meanwhile, S3 refuses the copy)
            try:
                self._copy_into_place(key, digest, etag=obj["ETag"])
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in PRECONDITION_FAILED:
                    raise
                raise InvalidUploadError(
                    "upload refused, nothing stored: the uploaded object changed while it "
                    "was being checked"
                ) from None
            return size, True
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def _complete_multipart(self, key: str, s3_id: str, unknown: Exception) -> None:
        parts: list[CompletedPartTypeDef] = []
        try:
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=s3_id):
                parts += [
                    {"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                    for p in page.get("Parts", [])
                ]
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in {*NOT_FOUND, "NoSuchUpload"}:
                raise unknown from None
            raise
        numbers = [p["PartNumber"] for p in parts]
        if numbers != list(range(1, len(parts) + 1)) or not parts:
            self._abort(key, s3_id)
            raise InvalidUploadError(
                f"upload refused, nothing stored: parts {numbers} were uploaded, "
                "not every part from 1 on"
            )
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=s3_id, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code == "NoSuchUpload":
                raise unknown from None
            self._abort(key, s3_id)
            message = exc.response.get("Error", {}).get("Message", code)
            raise InvalidUploadError(f"upload refused, nothing stored: {message}") from None

    def clean_uploads(self, older_than: float = UPLOAD_URL_SECONDS) -> int:
        """Drop what abandoned client uploads left (staged objects, pending multipart
        uploads) older than *older_than* seconds; return how many. Their URLs have
        expired by then. (A bucket lifecycle rule on ``<prefix>/uploads/`` does the same.)"""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        prefix = self._key("uploads/")
        dropped = 0
        uploads = self.client.get_paginator("list_multipart_uploads")
        for upload_page in uploads.paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in upload_page.get("Uploads", []):
                if upload["Initiated"] <= cutoff:
                    self._abort(upload["Key"], upload["UploadId"])
                    dropped += 1
        objects = self.client.get_paginator("list_objects_v2")
        for page in objects.paginate(Bucket=self.bucket, Prefix=prefix):
            old: list[ObjectIdentifierTypeDef] = [
                {"Key": o["Key"]} for o in page.get("Contents", []) if o["LastModified"] <= cutoff
            ]
            if old:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": old})
                dropped += len(old)
        return dropped

    def _copy_into_place(self, key: str, digest: str, etag: str | None = None) -> None:
        self.client.copy(
            {"Bucket": self.bucket, "Key": key},
            self.bucket,
            self.key(digest),
            ExtraArgs={"CopySourceIfMatch": etag} if etag else None,
            Config=self.transfer_config,
        )


def make_client(settings: ServiceSettings, endpoint_url: str | None) -> S3Client:
    """A boto3 S3 client; credentials from settings, else boto3's usual chain."""
    secret = settings.s3_secret_access_key
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=Config(
            signature_version="s3v4",
            # path-style works with every S3-compatible server (moto, MinIO, Ceph...)
            s3={"addressing_style": "path"},
            max_pool_connections=32,
            retries={"max_attempts": 5, "mode": "standard"},
            # we verify SHA-256 ourselves; the newer CRC defaults break presigned PUTs
            # and some S3-compatible servers
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    return client


def open_store(settings: ServiceSettings) -> LocalStore | S3Store:
    """The store the settings choose: an S3 bucket (``store_url``) or the local directory."""
    if settings.store_url is not None:
        return S3Store.from_settings(settings)
    return LocalStore(settings.resolved_store_path())


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    """Read until *n* bytes or the end of the stream (``read`` may return less)."""
    pieces: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(min(left, CHUNK_SIZE))
        if not chunk:
            break
        pieces.append(chunk)
        left -= len(chunk)
    return b"".join(pieces)


def _parts(stream: BinaryIO, first: bytes, part_size: int) -> Iterator[bytes]:
    """*first*, then the rest of *stream*, in parts of *part_size* (the last one shorter)."""
    pos = 0
    while len(first) - pos >= part_size:
        yield first[pos : pos + part_size]
        pos += part_size
    buffer = first[pos:]
    while True:
        buffer += _read_up_to(stream, part_size - len(buffer))
        if len(buffer) < part_size:  # the end of the stream
            if buffer:
                yield buffer
            return
        yield buffer
        buffer = b""


def _drain_hash(stream: BinaryIO, first: bytes) -> tuple[str, int]:
    h = hashlib.sha256(first)
    size = len(first)
    while chunk := stream.read(CHUNK_SIZE):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _check_expected(digest: str, expected: str | None) -> None:
    if expected is not None and digest != expected:
        raise CorruptObjectError(f"content hashes to {digest}, not to the announced {expected}")
