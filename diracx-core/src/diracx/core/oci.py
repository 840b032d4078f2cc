"""OCI images as data: image configs, layers, layouts, archives, and layer tars.

Pure functions on local files (no network): the registry client lives in
``diracx.api.registry`` and the executor in ``diracx.tasks``.

- :class:`ImageConfig`, :class:`Layer`, :class:`Image`: what an image is. A layer's
  ``digest`` is the SHA-256 (hex) of its blob as stored, which is its store address;
  ``diff_id`` is the SHA-256 of the uncompressed tar.
- :func:`unpack_layer`: extract a layer (tar, gzip, zstd) into a directory, either as
  one overlayfs lower directory (OCI whiteouts become overlay whiteouts) or flattened
  onto the earlier layers (whiteouts delete). Nothing is ever written outside *dest*.
- :func:`layer_from_upper`: the reverse, an overlayfs upper directory as a
  deterministic layer tar.
- :func:`read_oci_layout`, :func:`write_oci_layout`, :func:`read_docker_archive`,
  :func:`write_docker_archive`: images on disk (``docker save`` format included).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import platform as _platform
import queue
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from diracx.core.canonical import canonical_json, check_is_digest
from diracx.core.exceptions import CorruptObjectError, DiracxError

# -- media types -------------------------------------------------------------------

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_MEDIA_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_MEDIA_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
# Docker's layer media types name the same bytes as OCI's: layers are kept under OCI names.
_LAYER_MEDIA_TYPES = {
    MEDIA_OCI_LAYER: MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD: MEDIA_OCI_LAYER_ZSTD,
    MEDIA_DOCKER_LAYER: MEDIA_OCI_LAYER,
    MEDIA_DOCKER_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": MEDIA_OCI_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": MEDIA_OCI_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": MEDIA_OCI_LAYER_GZIP,
}
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

# overlayfs marks: a whiteout is a 0/0 character device, an opaque directory has this xattr
# ("user.overlay.opaque" when the overlay is mounted with userxattr, in a user namespace).
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"


# -- errors ------------------------------------------------------------------------


class OCIError(DiracxError):
    """Base class of the image errors; the message says what is wrong."""


class ImageFormatError(OCIError):
    """A manifest, config, layout or archive is malformed or incomplete."""


class LayerFormatError(OCIError):
    """A layer blob is not a readable tar (truncated, unsupported entry...)."""


class UnsafeLayerError(LayerFormatError):
    """A layer entry would write outside the destination ('..', a parent that is not a dir)."""


class NoPlatformMatchError(OCIError):
    """An image index has no image for the wanted platform."""


class DigestMismatchError(OCIError, CorruptObjectError):
    """Bytes do not hash to the digest that names them."""


# -- models ------------------------------------------------------------------------

_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


class Platform(BaseModel):
    """``os/architecture[/variant]``, as in image indexes and configs."""

    model_config = ConfigDict(frozen=True)

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8`` → Platform."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"not a platform: {text!r} (expected os/arch[/variant])")
        return cls(
            os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else None
        )

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform (linux/amd64 on x86-64)."""
        arch, variant = _ARCH.get(_platform.machine().lower(), (_platform.machine().lower(), None))
        return cls(os="linux", architecture=arch, variant=variant)

    @classmethod
    def from_oci(cls, doc: dict[str, Any]) -> Platform:
        return cls(
            os=doc.get("os") or "linux",
            architecture=doc.get("architecture") or "amd64",
            variant=doc.get("variant") or None,
        )

    def to_oci(self) -> dict[str, str]:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    def matches(self, other: Platform) -> bool:
        """Whether an image for *other* runs here: same os and arch; variants when both say."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not (self.variant and other.variant and self.variant != other.variant)


class HistoryEntry(BaseModel):
    """One step of an image's history (the config's ``history``)."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_oci(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: v for k, v in self.model_dump().items() if v is not None}
        if not self.empty_layer:
            d.pop("empty_layer")
        return d


class ImageConfig(BaseModel):
    """What an image says about how to run it (the ``config`` object of an image config)."""

    env: list[str] = Field(default_factory=list)
    working_dir: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    # the other keys of the config object (ExposedPorts, Volumes, StopSignal...), kept as read
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_oci(cls, doc: dict[str, Any]) -> ImageConfig:
        """From a whole image config document (the blob the manifest's ``config`` names)."""
        if not isinstance(doc, dict):
            raise ImageFormatError("an image config must be a JSON object")
        cfg = doc.get("config") or {}
        if not isinstance(cfg, dict):
            raise ImageFormatError("the image config's 'config' must be a JSON object")
        known = {"Env", "WorkingDir", "Entrypoint", "Cmd", "User", "Labels"}
        try:
            return cls(
                env=list(cfg.get("Env") or []),
                working_dir=cfg.get("WorkingDir") or "",
                entrypoint=cfg.get("Entrypoint"),
                cmd=cfg.get("Cmd"),
                user=cfg.get("User") or "",
                labels=dict(cfg.get("Labels") or {}),
                extra={k: v for k, v in cfg.items() if k not in known},
            )
        except (TypeError, ValueError) as exc:
            raise ImageFormatError(f"invalid image config: {exc}") from None

    def to_oci(
        self,
        diff_ids: list[str],
        history: list[HistoryEntry] | None = None,
        *,
        platform: Platform | None = None,
        created: str | None = None,
    ) -> dict[str, Any]:
        """The whole image config document for layers with these diff_ids (hex).

        The history gets one entry per layer: missing entries are added (``created_by``
        ``diracx``); more non-empty entries than layers is an error.
        """
        cfg: dict[str, Any] = dict(self.extra)
        if self.env:
            cfg["Env"] = list(self.env)
        if self.working_dir:
            cfg["WorkingDir"] = self.working_dir
        if self.entrypoint is not None:
            cfg["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            cfg["Cmd"] = list(self.cmd)
        if self.user:
            cfg["User"] = self.user
        if self.labels:
            cfg["Labels"] = dict(self.labels)
        doc: dict[str, Any] = {
            **(platform or Platform()).to_oci(),
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
            "history": [h.to_oci() for h in complete_history(history or [], len(diff_ids))],
        }
        if created:
            doc["created"] = created
        return doc

    def env_map(self) -> dict[str, str]:
        """``Env`` as a dict (the last of duplicate names wins)."""
        out: dict[str, str] = {}
        for item in self.env:
            name, _, value = item.partition("=")
            out[name] = value
        return out

    def with_env(self, name: str, value: str) -> ImageConfig:
        """A copy with ``name=value`` set in ``Env`` (replacing an earlier value)."""
        env = [e for e in self.env if e.partition("=")[0] != name] + [f"{name}={value}"]
        return self.model_copy(update={"env": env})


def complete_history(history: list[HistoryEntry], n_layers: int) -> list[HistoryEntry]:
    """*history* with one non-empty entry per layer (padding the end if it has too few)."""
    non_empty = sum(1 for h in history if not h.empty_layer)
    if non_empty > n_layers:
        raise ImageFormatError(
            f"the history has {non_empty} entries with layers but the image has {n_layers} layers"
        )
    return list(history) + [HistoryEntry(created_by="diracx")] * (n_layers - non_empty)


class Layer(BaseModel):
    """A layer: its blob (``digest``, hex, = its store address) and its uncompressed tar."""

    model_config = ConfigDict(frozen=True)

    digest: str
    media_type: str = MEDIA_OCI_LAYER
    size: int
    diff_id: str

    @property
    def compression(self) -> str:
        """``none``, ``gzip`` or ``zstd``."""
        if self.media_type.endswith("gzip"):
            return "gzip"
        if self.media_type.endswith("zstd"):
            return "zstd"
        return "none"

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": f"sha256:{self.digest}", "size": self.size}


class Image(BaseModel):
    """An image: its run configuration, layers (bottom first), platform and history."""

    config: ImageConfig = Field(default_factory=ImageConfig)
    layers: list[Layer] = Field(default_factory=list)
    platform: Platform = Field(default_factory=Platform)
    history: list[HistoryEntry] = Field(default_factory=list)
    created: str | None = None

    def config_document(self) -> dict[str, Any]:
        return self.config.to_oci(
            [layer.diff_id for layer in self.layers],
            self.history,
            platform=self.platform,
            created=self.created,
        )

    def config_bytes(self) -> bytes:
        """The image config blob (canonical JSON: the same image gives the same bytes)."""
        return canonical_json(self.config_document())

    def manifest_bytes(self) -> bytes:
        """The OCI image manifest blob (canonical JSON)."""
        config = self.config_bytes()
        return canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": {
                    "mediaType": MEDIA_OCI_CONFIG,
                    "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                    "size": len(config),
                },
                "layers": [layer.descriptor() for layer in self.layers],
            }
        )

    @property
    def digest(self) -> str:
        """The manifest digest (hex): what ``name@sha256:...`` pins."""
        return hashlib.sha256(self.manifest_bytes()).hexdigest()

    def manifest_descriptor(self) -> dict[str, Any]:
        manifest = self.manifest_bytes()
        return {
            "mediaType": MEDIA_OCI_MANIFEST,
            "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
            "size": len(manifest),
            "platform": self.platform.to_oci(),
        }

    @classmethod
    def from_oci(cls, manifest: dict[str, Any], config_doc: dict[str, Any]) -> Image:
        """From a parsed image manifest and its parsed config blob."""
        media_type = manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        if media_type in INDEX_MEDIA_TYPES or "manifests" in manifest:
            raise ImageFormatError("this is an image index, not an image manifest")
        if media_type not in MANIFEST_MEDIA_TYPES:
            raise ImageFormatError(f"unsupported manifest media type {media_type!r}")
        if manifest.get("schemaVersion") != 2:
            raise ImageFormatError("only schema version 2 manifests are supported")
        rootfs = config_doc.get("rootfs") or {}
        diff_ids = [parse_digest(d, what="diff_id") for d in rootfs.get("diff_ids") or []]
        descriptors = manifest.get("layers") or []
        if len(descriptors) != len(diff_ids):
            raise ImageFormatError(
                f"the manifest lists {len(descriptors)} layers but the config "
                f"{len(diff_ids)} diff_ids"
            )
        layers = []
        for desc, diff_id in zip(descriptors, diff_ids, strict=True):
            mt = desc.get("mediaType") or MEDIA_OCI_LAYER
            if mt not in _LAYER_MEDIA_TYPES:
                raise ImageFormatError(f"unsupported layer media type {mt!r}")
            layers.append(
                Layer(
                    digest=parse_digest(desc.get("digest"), what="layer digest"),
                    media_type=_LAYER_MEDIA_TYPES[mt],
                    size=int(desc.get("size") or 0),
                    diff_id=diff_id,
                )
            )
        try:
            history = [HistoryEntry.model_validate(h) for h in config_doc.get("history") or []]
        except ValueError:
            history = []  # history is informative: a malformed one is dropped, not fatal
        return cls(
            config=ImageConfig.from_oci(config_doc),
            layers=layers,
            platform=Platform.from_oci(config_doc),
            history=history,
            created=config_doc.get("created"),
        )


def parse_digest(value: Any, *, what: str = "digest") -> str:
    """``sha256:<hex>`` → ``<hex>``; other algorithms are refused."""
    if not isinstance(value, str) or not value.startswith("sha256:"):
        raise ImageFormatError(f"{what} is not a sha256 digest: {value!r}")
    try:
        return check_is_digest(value[7:], what=what)
    except ValueError as exc:
        raise ImageFormatError(str(exc)) from None


def select_manifest(index: dict[str, Any], platform: Platform | None = None) -> dict[str, Any]:
    """The descriptor, in an image index or manifest list, of the image for *platform*.

    *platform* defaults to this machine's. Attestation manifests (``unknown/unknown``)
    are never chosen. An index with one entry and no platform gives that entry.
    """
    want = platform or Platform.host()
    entries = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if len(entries) == 1 and "platform" not in entries[0]:
        return entries[0]
    offered = []
    for desc in entries:
        p = desc.get("platform")
        if not isinstance(p, dict) or p.get("os") == "unknown":
            continue
        candidate = Platform.from_oci(p)
        offered.append(str(candidate))
        if want.matches(candidate):
            return desc
    raise NoPlatformMatchError(
        f"no image for {want} in this index (it has: {', '.join(offered) or 'none'})"
    )


# -- unpacking a layer ---------------------------------------------------------------

_CHUNK = 1 << 20  # reads and decompressed pieces
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s")
_ZERO_BLOCK = bytes(512)
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40


class _Stopped(Exception):
    """The consumer went away: the decompressing thread stops."""


class _Source:
    """The uncompressed bytes of a layer tar, read in big chunks.

    An uncompressed blob is read with ``pread`` and large file contents are copied
    file-to-file in the kernel (``copy_file_range``); a compressed one is
    decompressed on another thread (zlib and zstd release the GIL), so that
    decompressing and writing files overlap as with ``tar -xz``.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.view = memoryview(self.buf)
        self.pos = 0

    def _next_chunk(self) -> bytes:
        raise NotImplementedError

    def _copy_beyond(self, fd: int, count: int) -> None:
        """Write *count* bytes that follow the buffer to *fd*."""
        while count:
            chunk = self._next_chunk()
            if not chunk:
                raise LayerFormatError("the layer is truncated (a file's data is cut short)")
            if len(chunk) <= count:
                _write_all(fd, chunk)
                count -= len(chunk)
            else:
                _write_all(fd, memoryview(chunk)[:count])
                self._set(chunk, count)
                return
        self._set(b"", 0)

    def _skip_beyond(self, count: int) -> None:
        while count:
            chunk = self._next_chunk()
            if not chunk:
                raise LayerFormatError("the layer is truncated")
            if len(chunk) <= count:
                count -= len(chunk)
            else:
                self._set(chunk, count)
                return
        self._set(b"", 0)

    def _set(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.view = memoryview(buf)
        self.pos = pos

    def block(self) -> bytes | None:
        """The next 512-byte header block, or None at the end of the stream."""
        pos = self.pos
        if len(self.buf) - pos >= 512:
            self.pos = pos + 512
            return self.buf[pos : pos + 512]
        rest = self.buf[pos:]
        while len(rest) < 512:
            chunk = self._next_chunk()
            if not chunk:
                if rest:
                    raise LayerFormatError("the layer is truncated (a header is cut short)")
                self._set(b"", 0)
                return None
            rest += chunk
        self._set(rest, 512)
        return rest[:512]

    def write_to(self, fd: int, size: int) -> None:
        """Write the next *size* bytes to *fd*, then skip the padding to 512 bytes."""
        pos = self.pos
        avail = len(self.buf) - pos
        if size <= avail:
            end = pos + size
            n = os.write(fd, self.view[pos:end])
            if n < size:
                _write_all(fd, self.view[pos + n : end])
            self.pos = end
        else:
            if avail:
                _write_all(fd, self.view[pos:])
            self._set(b"", 0)
            self._copy_beyond(fd, size - avail)
        if size % 512:
            self.skip(512 - size % 512)

    def read(self, size: int) -> bytes:
        """The next *size* bytes (pax headers, long names), then the padding is skipped."""
        if size > 64 << 20:
            raise LayerFormatError(f"a tar metadata record of {size} bytes is too large")
        out = bytearray()
        while len(out) < size:
            pos = self.pos
            take = min(size - len(out), len(self.buf) - pos)
            out += self.buf[pos : pos + take]
            self.pos = pos + take
            if len(out) < size:
                chunk = self._next_chunk()
                if not chunk:
                    raise LayerFormatError("the layer is truncated")
                self._set(chunk, 0)
        if size % 512:
            self.skip(512 - size % 512)
        return bytes(out)

    def skip(self, size: int) -> None:
        avail = len(self.buf) - self.pos
        if size <= avail:
            self.pos += size
        else:
            self._set(b"", 0)
            self._skip_beyond(size - avail)

    def close(self) -> None:
        pass


class _FileSource(_Source):
    """An uncompressed tar file: ``pread`` in 1 MiB pieces, big contents copied in-kernel."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.offset = 0  # file offset of the byte after the buffer
        self._in_kernel = True

    def _next_chunk(self) -> bytes:
        chunk = os.pread(self.fd, _CHUNK, self.offset)
        self.offset += len(chunk)
        return chunk

    def _copy_beyond(self, fd: int, count: int) -> None:
        start, end = self.offset, self.offset + count
        if end > os.fstat(self.fd).st_size:
            raise LayerFormatError("the layer is truncated (a file's data is cut short)")
        off = start
        while self._in_kernel and off < end:
            try:
                n = os.copy_file_range(self.fd, fd, end - off, off)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self._in_kernel = False
                break
            if n == 0:
                raise LayerFormatError("the layer is truncated (a file's data is cut short)")
            off += n
        while off < end:
            n = os.sendfile(fd, self.fd, off, end - off)
            if n == 0:
                raise LayerFormatError("the layer is truncated (a file's data is cut short)")
            off += n
        self.offset = end
        self._set(b"", 0)

    def _skip_beyond(self, count: int) -> None:
        self.offset += count
        self._set(b"", 0)


class _ThreadSource(_Source):
    """Chunks made by a producer on another thread (a decompressor), through a bounded queue."""

    def __init__(self, producer: Callable[[Callable[[bytes], None]], None], what: str) -> None:
        super().__init__()
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        self._eof = False
        self._what = what
        self._thread = threading.Thread(
            target=self._run, args=(producer,), name=f"layer-{what}", daemon=True
        )
        self._thread.start()

    def _run(self, producer: Callable[[Callable[[bytes], None]], None]) -> None:
        try:
            producer(self._put)
            self._put(b"")
        except _Stopped:
            pass
        except BaseException as exc:
            with suppress(_Stopped):
                self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _next_chunk(self) -> bytes:
        if self._eof:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._eof = True
            if isinstance(item, OCIError):
                raise item
            raise LayerFormatError(f"cannot decompress the layer ({self._what}): {item}") from item
        if not item:
            self._eof = True
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with suppress(queue.Empty):
                self._queue.get(timeout=0.05)


def _gunzip(f: BinaryIO) -> Callable[[Callable[[bytes], None]], None]:
    def produce(put: Callable[[bytes], None]) -> None:
        d = zlib.decompressobj(31)
        fed = False
        while data := f.read(_CHUNK):
            while data:
                fed = True
                out = d.decompress(data, _CHUNK)
                if out:
                    put(out)
                if d.eof:
                    data = d.unused_data
                    if not data.strip(b"\0"):
                        return  # zero padding after the last member
                    d = zlib.decompressobj(31)  # a multi-member gzip stream
                else:
                    data = d.unconsumed_tail
        while out := d.decompress(b"", _CHUNK):
            put(out)
        if fed and not d.eof:
            raise LayerFormatError("the gzip stream of the layer is truncated")

    return produce


def _unzstd(f: BinaryIO) -> Callable[[Callable[[bytes], None]], None]:
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        zstandard = None
    zstd_cli = shutil.which("zstd")

    def produce(put: Callable[[bytes], None]) -> None:
        if zstandard is not None:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=_CHUNK)
            while chunk := reader.read(_CHUNK):
                put(chunk)
            return
        if zstd_cli is None:
            raise LayerFormatError(
                "the layer is zstd-compressed: install the 'zstandard' Python package "
                "or the zstd command to unpack it"
            )
        os.lseek(f.fileno(), f.tell(), os.SEEK_SET)  # the child reads the fd, not our buffer
        with subprocess.Popen(
            [zstd_cli, "-dc", "-q"], stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                while chunk := proc.stdout.read(_CHUNK):
                    put(chunk)
            except BaseException:  # our side failed: stop it (at EOF it exits by itself)
                proc.kill()
                raise
            err = proc.stderr.read().decode(errors="replace").strip()
            if proc.wait() != 0:
                raise LayerFormatError(f"zstd could not decompress the layer: {err}")

    return produce


@contextmanager
def _open_layer(blob: Path) -> Iterator[_Source]:
    with open(blob, "rb") as f:
        magic = os.pread(f.fileno(), 4, 0)
        source: _Source
        if magic[:2] == _GZIP_MAGIC:
            source = _ThreadSource(_gunzip(f), "gzip")
        elif magic == _ZSTD_MAGIC:
            source = _ThreadSource(_unzstd(f), "zstd")
        else:
            source = _FileSource(f.fileno())
        try:
            yield source
        finally:
            source.close()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(view):
            n += os.write(fd, view[n:])


def _number(field: bytes) -> int:
    """A numeric tar header field: octal text, or GNU base-256 for large values."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * len(field) - 8)) if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise LayerFormatError(f"invalid number in a tar header: {text!r}") from None


def _parse_pax(data: bytes) -> dict[str, bytes]:
    """A pax extended header: ``"<len> <key>=<value>\\n"`` records."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise LayerFormatError("malformed pax header in the layer") from None
        if length <= 0:
            break
        record = data[space + 1 : pos + length - 1]  # without the final newline
        key, sep, value = record.partition(b"=")
        if not sep:
            raise LayerFormatError("malformed pax header record in the layer")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


def _pax_time_ns(value: bytes) -> int:
    whole, _, frac = value.decode().partition(".")
    ns = int(whole) * 1_000_000_000
    if frac:
        sign = -1 if whole.startswith("-") else 1
        ns += sign * int((frac + "000000000")[:9])
    return ns


def _clean_name(name: str) -> str:
    """A member name as a relative path without '.' parts; '..' anywhere is refused."""
    if (
        name.startswith(("/", "./"))
        or name.endswith(("/", "/."))
        or "//" in name
        or "/./" in name
        or ".." in name
        or name == "."
    ):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UnsafeLayerError(f"layer entry {name!r} has a '..' component")
        return "/".join(parts)
    return name


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(path: str) -> None:
    """Remove a file, symlink or directory tree (never following a symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class _Unpacker:
    """The state of one extraction. See :func:`unpack_layer`."""

    def __init__(self, root: str, src: _Source, *, overlay: bool, opaque_xattr: str) -> None:
        self.root = root
        self.src = src
        self.overlay = overlay
        self.opaque_xattr = opaque_xattr
        self.is_root = os.geteuid() == 0
        self.ids = (os.geteuid(), os.getegid())
        self.umask = _umask()
        # member directory name -> its real absolute path, known to be a directory (no symlink)
        self.dirs: dict[str, str] = {"": root}
        # directories whose mode, owner and mtime are set at the end (real path -> metadata)
        self.dir_meta: dict[str, tuple[int, int, int, int, dict[str, bytes]]] = {}
        # flattening: the real paths this layer wrote (whiteouts only hide older entries)
        self.created: set[str] | None = None if overlay else set()
        # the directory of the last file: its name, real path and O_PATH descriptor
        self.fd_name: str | None = None
        self.fd_path = ""
        self.fd = -1

    # -- paths ---------------------------------------------------------------------

    def parent_fd(self, name: str) -> tuple[str, int, str]:
        """(real path of the parent, an O_PATH descriptor of it, base name) of a member.

        Files come grouped by directory: one descriptor for the current directory lets
        each file be made with a one-component lookup (``openat``), as tar does.
        """
        head, _, base = name.rpartition("/")
        if head == self.fd_name:
            return self.fd_path, self.fd, base
        full = self.dirs.get(head)
        if full is None:
            full = self.resolve_dir(head, create=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.fd = os.open(full, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.fd_name, self.fd_path = head, full
        return full, self.fd, base

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.fd_name = -1, None

    def parent(self, name: str) -> tuple[str, str]:
        """(real path of the parent directory, base name) of a member name."""
        head, _, base = name.rpartition("/")
        full = self.dirs.get(head)
        if full is None:
            full = self.resolve_dir(head, create=True)
        return full, base

    def resolve_dir(self, name: str, *, create: bool) -> str:
        """The real path of directory *name*, following symlinks inside the root only.

        Missing directories are made (with *create*). A symlink to an absolute path
        or up with '..' is resolved as if the root were '/': nothing leads outside.
        """
        todo = name.split("/")[::-1]
        real: list[str] = []
        hops = 0
        plain = True  # no symlink followed so far: the prefixes can be cached
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if real:
                    real.pop()
                continue
            path = self.root + "/" + "/".join([*real, part])
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise LayerFormatError(
                        f"layer entry refers to {name!r}, which is missing"
                    ) from None
                os.mkdir(path, 0o755)
                if self.created is not None:
                    self.created.add(path)
                real.append(part)
            else:
                if stat.S_ISDIR(st.st_mode):
                    real.append(part)
                elif stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > _MAX_SYMLINKS:
                        raise UnsafeLayerError(f"too many symlinks under layer path {name!r}")
                    target = os.readlink(path)
                    if target.startswith("/"):
                        real = []
                    todo.extend(reversed(target.split("/")))
                    plain = False
                    continue
                else:
                    raise UnsafeLayerError(
                        f"layer path {name!r} goes through {'/'.join([*real, part])!r}, "
                        "which is not a directory"
                    )
            if plain:
                self.dirs["/".join(real)] = path
        full = self.root + "/" + "/".join(real) if real else self.root
        self.dirs[name] = full
        return full

    def make_room(self, full: str) -> None:
        """Remove what is at *full* so that a new entry can take its place."""
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.forget(full)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)

    def forget(self, full: str) -> None:
        """A directory or symlink goes: drop what was learnt about paths through it."""
        self.close()
        self.dirs = {"": self.root}
        prefix = full + "/"
        self.dir_meta = {
            p: m for p, m in self.dir_meta.items() if p != full and not p.startswith(prefix)
        }

    # -- entries -------------------------------------------------------------------

    def run(self) -> None:
        src = self.src
        unpack = _HEADER.unpack_from
        nums: dict[bytes, int] = {}

        def number(field: bytes) -> int:
            value = _number(field)
            if len(nums) < 4096:
                nums[field] = value
            return value

        pax_global: dict[str, bytes] = {}
        pax: dict[str, bytes] | None = None
        long_name: bytes | None = None
        long_link: bytes | None = None
        first = True
        while True:
            block = src.block()
            if block is None:
                if first:
                    raise LayerFormatError("the layer is empty (not a tar archive)")
                return
            if not block[0]:
                if block == _ZERO_BLOCK:
                    return  # end of archive
                raise LayerFormatError("corrupt tar header in the layer (empty name)")
            (
                name_f,
                mode_f,
                uid_f,
                gid_f,
                size_f,
                mtime_f,
                _chk,
                typeflag,
                link_f,
                magic,
                _version,
                _uname,
                _gname,
                major_f,
                minor_f,
                prefix_f,
            ) = unpack(block)
            if first or magic[:5] != b"ustar":
                _check_checksum(block)
                first = False
            size = nums.get(size_f)
            if size is None:
                size = number(size_f)
            if typeflag in b"xgLK":
                data = src.read(size)
                if typeflag == b"x":
                    pax = _parse_pax(data)
                elif typeflag == b"g":
                    pax_global.update(_parse_pax(data))
                elif typeflag == b"L":
                    long_name = data.split(b"\0", 1)[0]
                else:
                    long_link = data.split(b"\0", 1)[0]
                continue
            if pax_global:
                pax = {**pax_global, **(pax or {})}
            if long_name is not None:
                raw_name = long_name
            else:
                raw_name = name_f.split(b"\0", 1)[0]
                if magic == b"ustar\x00" and prefix_f[0]:
                    raw_name = prefix_f.split(b"\0", 1)[0] + b"/" + raw_name
            raw_link = long_link if long_link is not None else link_f.split(b"\0", 1)[0]
            # mode, owner and mtime fields repeat: parse each distinct field once
            mode = nums.get(mode_f)
            if mode is None:
                mode = number(mode_f)
            mode &= 0o7777
            uid = nums.get(uid_f)
            if uid is None:
                uid = number(uid_f)
            gid = nums.get(gid_f)
            if gid is None:
                gid = number(gid_f)
            mtime_ns = nums.get(mtime_f)
            if mtime_ns is None:
                mtime_ns = number(mtime_f)
            mtime_ns *= 1_000_000_000
            xattrs: dict[str, bytes] = {}
            if pax:
                if "path" in pax:
                    raw_name = pax["path"]
                if "linkpath" in pax:
                    raw_link = pax["linkpath"]
                if "size" in pax:
                    size = int(pax["size"])
                if "uid" in pax:
                    uid = int(pax["uid"])
                if "gid" in pax:
                    gid = int(pax["gid"])
                if "mtime" in pax:
                    mtime_ns = _pax_time_ns(pax["mtime"])
                for key, value in pax.items():
                    if key.startswith("SCHILY.xattr."):
                        xattrs[key[13:]] = value
                    elif key.startswith("LIBARCHIVE.xattr."):
                        xattrs[key[17:]] = base64.b64decode(value + b"==")
                    elif key.startswith("GNU.sparse."):
                        raise LayerFormatError("sparse files in layers are not supported")
            pax = None
            long_name = long_link = None
            name = _clean_name(raw_name.decode("utf-8", "surrogateescape"))
            if typeflag in (b"0", b"\0", b"7"):
                self.file(name, size, mode, uid, gid, mtime_ns, xattrs)
                continue
            if size and typeflag not in (b"1", b"2", b"3", b"4", b"5", b"6"):
                if typeflag == b"S":
                    raise LayerFormatError("sparse files in layers are not supported")
                src.skip(size + (-size % 512))  # a GNU extension entry we do not need
                continue
            if typeflag == b"5":
                self.directory(name, mode, uid, gid, mtime_ns, xattrs)
            elif typeflag == b"2":
                self.symlink(name, raw_link.decode("utf-8", "surrogateescape"), uid, gid, mtime_ns)
            elif typeflag == b"1":
                self.hardlink(name, _clean_name(raw_link.decode("utf-8", "surrogateescape")))
            elif typeflag in (b"3", b"4", b"6"):
                kind = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}[typeflag]
                self.node(name, kind, mode, uid, gid, mtime_ns, _number(major_f), _number(minor_f))
            if size and typeflag in (b"1", b"2", b"3", b"4", b"5", b"6"):
                src.skip(size + (-size % 512))

    def whiteout(self, name: str) -> bool:
        """Handle an OCI whiteout; False if *name* is no whiteout."""
        base = name.rpartition("/")[2]
        if not base.startswith(WHITEOUT_PREFIX):
            return False
        head = name.rpartition("/")[0]
        if base == OPAQUE_WHITEOUT:
            full = self.resolve_dir(head, create=True) if head not in self.dirs else self.dirs[head]
            if self.overlay:
                os.setxattr(full, self.opaque_xattr, b"y", follow_symlinks=False)
            else:
                self.clear_opaque(full)
            return True
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return True  # AUFS metadata (.wh..wh.plnk...): nothing to do
        if self.overlay:
            parent, _ = self.parent(name)  # the whiteout needs its directory in this layer
        else:
            try:
                parent = self.dirs.get(head) or self.resolve_dir(head, create=False)
            except LayerFormatError:
                return True  # nothing there to delete
        full = parent + "/" + base[len(WHITEOUT_PREFIX) :]
        if self.overlay:
            # FileExistsError: this layer has the file too; a whiteout hides older layers only
            with suppress(FileExistsError):
                os.mknod(full, stat.S_IFCHR, os.makedev(0, 0))
        elif self.created is not None and full not in self.created:
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                return True
            if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                self.forget(full)
            _remove(full)
        return True

    def clear_opaque(self, full: str) -> None:
        """Flattening: remove what older layers put in an opaque directory."""
        assert self.created is not None
        with os.scandir(full) as it:
            children = list(it)
        for child in children:
            path = full + "/" + child.name
            if path in self.created:
                if child.is_dir(follow_symlinks=False):
                    self.clear_opaque(path)
                continue
            if child.is_dir(follow_symlinks=False) or child.is_symlink():
                self.forget(path)
            _remove(path)

    def file(
        self,
        name: str,
        size: int,
        mode: int,
        uid: int,
        gid: int,
        mtime_ns: int,
        xattrs: dict[str, bytes],
    ) -> None:
        if not name:
            raise LayerFormatError("a layer entry for a file has an empty name")
        if ".wh." in name and self.whiteout(name):
            if size:
                self.src.skip(size + (-size % 512))
            return
        parent, dfd, base = self.parent_fd(name)
        try:
            fd = os.open(base, _CREATE, mode, dir_fd=dfd)
        except FileExistsError:
            self.make_room(parent + "/" + base)
            parent, dfd, base = self.parent_fd(name)
            fd = os.open(base, _CREATE, mode, dir_fd=dfd)
        try:
            if size:
                self.src.write_to(fd, size)
            chmod = mode & self.umask
            if self.is_root and (uid, gid) != self.ids:
                os.fchown(fd, uid, gid)
                chmod |= mode & 0o6000  # chown clears set-id bits
            if chmod:
                os.fchmod(fd, mode)
            for key, value in xattrs.items():
                self.setxattr(fd, key, value)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        if self.created is not None:
            self.created.add(parent + "/" + base)

    def directory(
        self, name: str, mode: int, uid: int, gid: int, mtime_ns: int, xattrs: dict[str, bytes]
    ) -> None:
        if not name:
            return  # the root itself: keep the destination's own metadata
        parent, base = self.parent(name)
        full = parent + "/" + base
        try:
            os.mkdir(full, 0o700)
        except FileExistsError:
            st = os.lstat(full)
            if not stat.S_ISDIR(st.st_mode):
                self.make_room(full)
                os.mkdir(full, 0o700)
        self.dirs[name] = full
        self.dir_meta[full] = (mode, uid, gid, mtime_ns, xattrs)
        if self.created is not None:
            self.created.add(full)

    def symlink(self, name: str, target: str, uid: int, gid: int, mtime_ns: int) -> None:
        if not name:
            raise LayerFormatError("a layer entry for a symlink has an empty name")
        parent, base = self.parent(name)
        full = parent + "/" + base
        try:
            os.symlink(target, full)
        except FileExistsError:
            self.make_room(full)
            os.symlink(target, full)
        if self.is_root and (uid, gid) != self.ids:
            os.chown(full, uid, gid, follow_symlinks=False)
        os.utime(full, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        if self.created is not None:
            self.created.add(full)

    def hardlink(self, name: str, target: str) -> None:
        if not name or not target:
            raise LayerFormatError(f"a hard link entry in the layer is incomplete: {name!r}")
        head, _, tbase = target.rpartition("/")
        try:
            tparent = self.dirs.get(head) or self.resolve_dir(head, create=False)
        except LayerFormatError:
            raise LayerFormatError(
                f"hard link {name!r} points to {target!r}, which is not in the layer"
            ) from None
        source = tparent + "/" + tbase
        parent, base = self.parent(name)
        full = parent + "/" + base
        if full == source:
            return
        try:
            os.link(source, full, follow_symlinks=False)
        except FileExistsError:
            self.make_room(full)
            os.link(source, full, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerFormatError(
                f"hard link {name!r} points to {target!r}, which is not in the layer"
            ) from None
        except PermissionError:
            raise UnsafeLayerError(f"hard link {name!r} to {target!r} is not allowed") from None
        if self.created is not None:
            self.created.add(full)

    def node(
        self,
        name: str,
        kind: int,
        mode: int,
        uid: int,
        gid: int,
        mtime_ns: int,
        major: int,
        minor: int,
    ) -> None:
        if kind != stat.S_IFIFO and not self.is_root:
            return  # device nodes need privileges: skipped, as rootless runtimes do
        parent, base = self.parent(name)
        full = parent + "/" + base
        try:
            os.mknod(full, kind | 0o600, os.makedev(major, minor))
        except FileExistsError:
            self.make_room(full)
            os.mknod(full, kind | 0o600, os.makedev(major, minor))
        if self.is_root and (uid, gid) != self.ids:
            os.chown(full, uid, gid, follow_symlinks=False)
        os.chmod(full, mode)
        os.utime(full, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        if self.created is not None:
            self.created.add(full)

    def setxattr(self, target: int | str, key: str, value: bytes) -> None:
        if key.startswith(_OVERLAY_XATTRS):
            return  # a layer may not forge overlay metadata
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            # trusted.* needs privileges, some filesystems have no xattrs: drop quietly,
            # as tar does; security.capability still works as root.
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
                raise

    def finish(self) -> None:
        """Set directory modes, owners and times last (writing into them changed mtimes)."""
        for full, (mode, uid, gid, mtime_ns, xattrs) in reversed(self.dir_meta.items()):
            try:
                fd = os.open(full, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # replaced meanwhile by something that is no directory
            try:
                if self.is_root and (uid, gid) != self.ids:
                    os.fchown(fd, uid, gid)
                for key, value in xattrs.items():
                    self.setxattr(full, key, value)
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)


def _check_checksum(block: bytes) -> None:
    try:
        stored = _number(block[148:156])
    except LayerFormatError:
        stored = -1
    computed = sum(block[:148]) + sum(block[156:]) + 256  # the field itself counts as spaces
    if stored != computed:
        raise LayerFormatError("not a tar archive, or a corrupt one (header checksum mismatch)")


def unpack_layer(
    blob: Path | str,
    dest: Path | str,
    *,
    overlay_whiteouts: bool,
    opaque_xattr: str = OVERLAY_OPAQUE_XATTR,
) -> None:
    """Extract a layer blob (tar, gzip or zstd, found from its first bytes) into *dest*.

    With *overlay_whiteouts*, *dest* is one overlayfs lower directory: an OCI whiteout
    ``.wh.NAME`` becomes an overlay whiteout (a 0/0 character device) and
    ``.wh..wh..opq`` sets *opaque_xattr* (``trusted.overlay.opaque``, or
    ``user.overlay.opaque`` for an overlay mounted with ``userxattr``) to ``y`` on its
    directory. Without, the layer is flattened onto what *dest* holds (the earlier
    layers): whiteouts delete from it.

    Safe: names with '..' are refused, absolute names are taken as relative, symlinks
    met on the way (from this layer or older ones) resolve inside *dest* as if it were
    '/', the final component is never followed, and hard links must point inside
    *dest*. Owners are restored when running as root, modes, mtimes and xattrs always
    (``trusted.*`` only as root); device nodes are skipped when not root.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    with _open_layer(Path(blob)) as src:
        unpacker = _Unpacker(root, src, overlay=overlay_whiteouts, opaque_xattr=opaque_xattr)
        try:
            unpacker.run()
        finally:
            unpacker.close()
        unpacker.finish()


# -- an overlay upper directory as a layer ----------------------------------------------


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.out.write(data)
        self.size += len(data)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _tar_header(
    name: bytes,
    *,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    major: int = 0,
    minor: int = 0,
    xattrs: dict[str, bytes] | None = None,
) -> bytes:
    """A deterministic ustar header, preceded by a pax header when something does not fit."""
    pax: list[tuple[bytes, bytes]] = []
    if len(name) > 100 or not name.isascii():
        pax.append((b"path", name))
        name = name[:100]
    if len(linkname) > 100 or not linkname.isascii():
        pax.append((b"linkpath", linkname))
        linkname = linkname[:100]
    if uid > 0o7777777:
        pax.append((b"uid", str(uid).encode()))
        uid = 0
    if gid > 0o7777777:
        pax.append((b"gid", str(gid).encode()))
        gid = 0
    if size > 0o77777777777:
        pax.append((b"size", str(size).encode()))
    for key, value in sorted((xattrs or {}).items()):
        pax.append((b"SCHILY.xattr." + key.encode(), value))
    out = b""
    if pax:
        records = b"".join(_pax_record(k, v) for k, v in sorted(pax))
        out = _ustar(b"PaxHeaders/" + name[:80], 0o644, 0, 0, len(records), mtime, b"x", b"", 0, 0)
        out += records + bytes(-len(records) % 512)
    return out + _ustar(
        name, mode, uid, gid, size if size <= 0o77777777777 else 0, mtime, typeflag, linkname,
        major, minor,
    )  # fmt: skip


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes,
    major: int,
    minor: int,
) -> bytes:
    header = bytearray(
        name.ljust(100, b"\0")
        + _octal(mode, 8)
        + _octal(uid, 8)
        + _octal(gid, 8)
        + _octal(size, 12)
        + _octal(mtime, 12)
        + b" " * 8
        + typeflag
        + linkname.ljust(100, b"\0")
        + b"ustar\x0000"
        + bytes(64)  # uname, gname: numeric owners only
        + _octal(major, 8)
        + _octal(minor, 8)
        + bytes(167)
    )
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def layer_from_upper(
    upper: Path | str,
    out: BinaryIO,
    *,
    mtime: int = 0,
    exclude: Collection[str] = (),
) -> Layer:
    """Write an overlayfs upper directory to *out* as an uncompressed OCI layer tar.

    Overlay whiteouts (0/0 character devices) become ``.wh.NAME`` entries and opaque
    directories (``trusted.overlay.opaque`` or ``user.overlay.opaque`` = ``y``) get a
    ``.wh..wh..opq`` entry. The bytes are deterministic: entries sorted by name, every
    mtime set to *mtime*, numeric owners only, no atime/ctime, xattrs sorted (the
    overlay's own are left out). Hard links within *upper* stay hard links. Sockets are
    left out, and so are the relative paths in *exclude* (mount points, say) and what
    is under them. Returns the layer (digest = diff_id: it is not compressed).
    """
    root = os.fspath(upper)
    w = _HashingWriter(out)
    excluded = {p.strip("/") for p in exclude}
    seen: dict[tuple[int, int], bytes] = {}

    def xattrs_of(path: str) -> dict[str, bytes]:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
        out: dict[str, bytes] = {}
        for key in names:
            if key.startswith(_OVERLAY_XATTRS) or key == "security.selinux":
                continue
            try:
                out[key] = os.getxattr(path, key, follow_symlinks=False)
            except OSError:
                continue
        return out

    def is_opaque(path: str) -> bool:
        for key in ("trusted.overlay.opaque", "user.overlay.opaque"):
            try:
                if os.getxattr(path, key, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                continue
        return False

    def header(name: bytes, st: os.stat_result | None, typeflag: bytes, **kw: Any) -> None:
        """One entry: owner and mode from *st* (None: a whiteout, root-owned 0644)."""
        mode, uid, gid = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) if st else (0o644, 0, 0)
        kw.setdefault("size", 0)
        w.write(
            _tar_header(name, mode=mode, uid=uid, gid=gid, mtime=mtime, typeflag=typeflag, **kw)
        )

    def walk(directory: str, rel: bytes) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            name = rel + os.fsencode(entry.name)
            if os.fsdecode(name) in excluded:
                continue
            path = entry.path
            st = entry.stat(follow_symlinks=False)
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFCHR and st.st_rdev == 0:
                header(rel + WHITEOUT_PREFIX.encode() + os.fsencode(entry.name), None, b"0")
            elif kind == stat.S_IFDIR:
                header(name + b"/", st, b"5", xattrs=xattrs_of(path))
                if is_opaque(path):
                    header(name + b"/" + OPAQUE_WHITEOUT.encode(), None, b"0")
                walk(path, name + b"/")
            elif kind == stat.S_IFREG:
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    header(name, st, b"1", linkname=seen[key])
                    continue
                if st.st_nlink > 1:
                    seen[key] = name
                header(name, st, b"0", size=st.st_size, xattrs=xattrs_of(path))
                copied = 0
                with open(path, "rb") as f:
                    while copied < st.st_size:
                        chunk = f.read(min(_CHUNK, st.st_size - copied))
                        if not chunk:
                            raise OSError(f"{path} shrank while it was being archived")
                        w.write(chunk)
                        copied += len(chunk)
                if st.st_size % 512:
                    w.write(bytes(512 - st.st_size % 512))
            elif kind == stat.S_IFLNK:
                header(name, st, b"2", linkname=os.fsencode(os.readlink(path)))
            elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
                flag = {stat.S_IFCHR: b"3", stat.S_IFBLK: b"4", stat.S_IFIFO: b"6"}[kind]
                header(name, st, flag, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))
            # sockets are left out: they cannot be archived

    walk(root, b"")
    w.write(bytes(1024))
    digest = w.hash.hexdigest()
    return Layer(digest=digest, media_type=MEDIA_OCI_LAYER, size=w.size, diff_id=digest)


def layer_diff_id(blob: Path | str) -> str:
    """The SHA-256 (hex) of a layer's uncompressed tar (decompressing if needed)."""
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic[:2] == _GZIP_MAGIC:
            produce = _gunzip(f)
        elif magic == _ZSTD_MAGIC:
            produce = _unzstd(f)
        else:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            return h.hexdigest()
        produce(h.update)
    return h.hexdigest()


# -- OCI layouts ----------------------------------------------------------------------


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ImageFormatError(f"{what} is missing: {path}") from None
    except ValueError as exc:
        raise ImageFormatError(f"{what} is not valid JSON ({path}): {exc}") from None


def _blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest


def _read_verified(path: Path, digest: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageFormatError(f"{what} sha256:{digest} is missing ({path})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise DigestMismatchError(f"{what} {path} hashes to sha256:{actual}, not sha256:{digest}")
    return data


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """*data* parsed as a JSON object, or ImageFormatError naming *what* it is."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ImageFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return doc


def read_oci_layout(
    path: Path | str, *, platform: Platform | None = None, ref: str | None = None
) -> tuple[Image, dict[str, Path]]:
    """The image in an OCI image layout directory, and its layer blobs (digest → path).

    *ref* picks the entry of ``index.json`` with that ``org.opencontainers.image.ref.name``
    (needed when the layout holds several images); image indexes are followed down to
    the image for *platform* (default: this machine's). Manifests and configs are
    verified against their digests; layers are verified when stored.
    """
    layout = Path(path)
    marker = layout / "oci-layout"
    if not marker.is_file():
        raise ImageFormatError(f"{layout} is not an OCI image layout (no oci-layout file)")
    index = _load_json(layout / "index.json", "the layout's index.json")
    if not isinstance(index, dict):
        raise ImageFormatError(f"{layout}/index.json is not a JSON object")
    entries = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if ref is not None:
        names = [(d.get("annotations") or {}).get(REF_NAME_ANNOTATION) for d in entries]
        entries = [d for d, n in zip(entries, names, strict=True) if n == ref]
        if not entries:
            raise ImageFormatError(
                f"no image named {ref!r} in {layout} (it has: "
                f"{', '.join(str(n) for n in names if n) or 'no names'})"
            )
    if not entries:
        raise ImageFormatError(f"the OCI layout {layout} holds no image")
    names = [(d.get("annotations") or {}).get(REF_NAME_ANNOTATION) for d in entries]
    if len(entries) == 1:
        desc = entries[0]
    elif len(set(names)) == 1 and any("platform" in d for d in entries):
        desc = select_manifest({"manifests": entries}, platform)  # one image, several platforms
    else:
        raise ImageFormatError(
            f"the OCI layout {layout} holds {len(entries)} images: pick one with ref= "
            f"({', '.join(str(n) for n in names)})"
        )
    for _ in range(8):  # indexes of indexes, but not forever
        digest = parse_digest(desc.get("digest"), what="manifest digest")
        data = _read_verified(_blob_path(layout, digest), digest, "manifest")
        doc = json_object(data, "the manifest")
        media_type = doc.get("mediaType") or desc.get("mediaType")
        if media_type in INDEX_MEDIA_TYPES or "manifests" in doc:
            desc = select_manifest(doc, platform)
            continue
        config_digest = parse_digest((doc.get("config") or {}).get("digest"), what="config")
        config = json_object(
            _read_verified(_blob_path(layout, config_digest), config_digest, "image config"),
            "the image config",
        )
        image = Image.from_oci(doc, config)
        blobs = {}
        for layer in image.layers:
            blob = _blob_path(layout, layer.digest)
            if not blob.is_file():
                raise ImageFormatError(f"layer sha256:{layer.digest} is missing ({blob})")
            blobs[layer.digest] = blob
        return image, blobs
    raise ImageFormatError(f"image indexes in {layout} nest too deeply")


OpenBlob = Callable[[str], BinaryIO]
"""Gives a readable stream of the blob with this digest (hex); the caller closes it."""


def _copy_blob(open_blob: OpenBlob, digest: str, dest: Path) -> None:
    """Copy a blob to *dest* (atomically), verifying its digest; skip if present."""
    if dest.is_file():
        return
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, open_blob(digest) as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != digest:
            raise DigestMismatchError(f"blob sha256:{digest} hashes to sha256:{h.hexdigest()}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_oci_layout(
    image: Image, open_blob: OpenBlob, dest: Path | str, *, ref_name: str | None = None
) -> str:
    """Write *image* into an OCI image layout directory (made if missing); its digest (hex).

    Layer blobs come from *open_blob* (verified as they are copied; blobs already in the
    layout are kept). ``index.json`` gets an entry for the image, named *ref_name* if
    given (an older entry of the same name is replaced; other images stay).
    """
    layout = Path(dest)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    marker = layout / "oci-layout"
    if not marker.exists():
        _write_atomic(marker, canonical_json({"imageLayoutVersion": "1.0.0"}))
    for layer in image.layers:
        _copy_blob(open_blob, layer.digest, blobs / layer.digest)
    config = image.config_bytes()
    _write_atomic(blobs / hashlib.sha256(config).hexdigest(), config)
    manifest = image.manifest_bytes()
    digest = hashlib.sha256(manifest).hexdigest()
    _write_atomic(blobs / digest, manifest)
    descriptor = image.manifest_descriptor()
    if ref_name:
        descriptor["annotations"] = {REF_NAME_ANNOTATION: ref_name}
    index_path = layout / "index.json"
    entries: list[dict[str, Any]] = []
    if index_path.exists():
        old = _load_json(index_path, "the layout's index.json")
        for d in (old.get("manifests") if isinstance(old, dict) else None) or []:
            name = (d.get("annotations") or {}).get(REF_NAME_ANNOTATION)
            if d.get("digest") == descriptor["digest"] and name == (ref_name or name):
                continue
            if ref_name and name == ref_name:
                continue
            entries.append(d)
    entries.append(descriptor)
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": entries}
    _write_atomic(index_path, canonical_json(index))
    return digest


# -- docker save archives -------------------------------------------------------------


def read_docker_archive(
    archive: Path | str,
    dest: Path | str,
    *,
    tag: str | None = None,
    platform: Platform | None = None,
) -> tuple[Image, dict[str, Path]]:
    """The image in a ``docker save`` tarball (gzip or not), its layers copied to *dest*.

    Both the classic format (``manifest.json`` with ``<id>/layer.tar``) and the OCI one
    (Docker 25+, or any OCI layout packed as a tar) are read. Layer blobs are written
    to ``dest/<digest>`` (hex); the mapping returned names them. *tag* picks one image
    (``repo:tag``) of an archive that holds several.
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".unpack-"))
    try:
        files: dict[str, tuple[Path, str]] = {}  # member name -> (staged file, sha256)
        links: dict[str, str] = {}  # member name -> link target member name
        try:
            with tarfile.open(archive, mode="r|*") as tar:
                for i, entry in enumerate(tar):
                    name = _member_path(entry.name)
                    if entry.isfile():
                        staged = staging / str(i)
                        h = hashlib.sha256()
                        f = tar.extractfile(entry)
                        assert f is not None
                        with open(staged, "wb") as o:
                            while chunk := f.read(_CHUNK):
                                h.update(chunk)
                                o.write(chunk)
                        files[name] = (staged, h.hexdigest())
                    elif entry.issym():
                        base = name.rpartition("/")[0]
                        links[name] = _member_path(f"{base}/{entry.linkname}")
                    elif entry.islnk():
                        links[name] = _member_path(entry.linkname)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ImageFormatError(f"{archive} is not a readable tar archive: {exc}") from None

        def member(name: str) -> tuple[Path, str]:
            name = _member_path(name)
            for _ in range(_MAX_SYMLINKS):
                if name in files:
                    return files[name]
                if name not in links:
                    break
                name = links[name]
            raise ImageFormatError(f"{archive} has no file {name!r}")

        if "manifest.json" not in files:
            if "oci-layout" in files and "index.json" in files:
                return _image_from_tar_layout(files, member, out, platform, tag)
            raise ImageFormatError(f"{archive} is not a docker save archive (no manifest.json)")
        manifest = json.loads(files["manifest.json"][0].read_bytes())
        if not isinstance(manifest, list) or not manifest:
            raise ImageFormatError(f"{archive}: manifest.json lists no image")
        if tag is not None:
            chosen = [m for m in manifest if tag in (m.get("RepoTags") or [])]
            if not chosen:
                tags = [t for m in manifest for t in m.get("RepoTags") or []]
                raise ImageFormatError(f"no image tagged {tag!r} in {archive} (it has: {tags})")
            entry = chosen[0]
        elif len(manifest) == 1:
            entry = manifest[0]
        else:
            tags = [t for m in manifest for t in m.get("RepoTags") or []]
            raise ImageFormatError(
                f"{archive} holds {len(manifest)} images: pick one with tag= (tags: {tags})"
            )
        config_path, config_digest = member(entry["Config"])
        config = json_object(config_path.read_bytes(), "the image config")
        layer_files = [member(name) for name in entry.get("Layers") or []]
        diff_ids = [parse_digest(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
        if len(diff_ids) != len(layer_files):
            raise ImageFormatError(
                f"{archive}: {len(layer_files)} layers but {len(diff_ids)} diff_ids in the config"
            )
        layers = []
        for (staged, digest), diff_id in zip(layer_files, diff_ids, strict=True):
            with open(staged, "rb") as f:
                magic = f.read(4)
            if magic[:2] == _GZIP_MAGIC:
                media_type = MEDIA_OCI_LAYER_GZIP
            elif magic == _ZSTD_MAGIC:
                media_type = MEDIA_OCI_LAYER_ZSTD
            else:
                media_type = MEDIA_OCI_LAYER
                if digest != diff_id:
                    raise DigestMismatchError(
                        f"{archive}: a layer hashes to sha256:{digest}, but the config says "
                        f"sha256:{diff_id}"
                    )
            layers.append(
                Layer(
                    digest=digest,
                    media_type=media_type,
                    size=staged.stat().st_size,
                    diff_id=diff_id,
                )
            )
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"digest": f"sha256:{config_digest}"},
            "layers": [layer.descriptor() for layer in layers],
        }
        image = Image.from_oci(manifest_doc, config)
        blobs: dict[str, Path] = {}
        for layer, (staged, _) in zip(image.layers, layer_files, strict=True):
            blobs[layer.digest] = _keep(staged, out / layer.digest)
        return image, blobs
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _member_path(name: str) -> str:
    """An archive member path with '.' and '..' resolved (never above the archive's top)."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _keep(staged: Path, final: Path) -> Path:
    if not final.exists():
        if staged.exists():
            os.replace(staged, final)
        else:  # the same blob listed twice: already moved
            raise ImageFormatError(f"blob {final.name} is missing")
    return final


def _image_from_tar_layout(
    files: dict[str, tuple[Path, str]],
    member: Callable[[str], tuple[Path, str]],
    out: Path,
    platform: Platform | None,
    ref: str | None,
) -> tuple[Image, dict[str, Path]]:
    """An OCI layout packed in a tar: lay it out under *out* and read it."""
    layout = out / ".layout"
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    for name in ("oci-layout", "index.json"):
        shutil.copyfile(member(name)[0], layout / name)
    for name, (_, digest) in files.items():
        if name.startswith("blobs/sha256/") and name[13:] == digest:
            os.link(files[name][0], layout / "blobs" / "sha256" / digest)
    try:
        image, blobs = read_oci_layout(layout, platform=platform, ref=ref)
        return image, {d: _keep(p, out / d) for d, p in blobs.items()}
    finally:
        shutil.rmtree(layout, ignore_errors=True)


class _VerifyingReader:
    """Reads a blob and checks, at its end, that it hashes to its digest."""

    def __init__(self, f: BinaryIO, digest: str) -> None:
        self.f = f
        self.digest = digest
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        return data

    def check(self) -> None:
        if self.hash.hexdigest() != self.digest:
            raise DigestMismatchError(
                f"blob sha256:{self.digest} hashes to sha256:{self.hash.hexdigest()}"
            )


def write_docker_archive(
    image: Image,
    open_blob: OpenBlob,
    dest: Path | str | BinaryIO,
    *,
    repo_tags: Collection[str] = (),
) -> str:
    """Write *image* as a tarball that ``docker load`` (any version) and OCI tools read.

    The tar holds an OCI layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``)
    and Docker's ``manifest.json`` pointing into it, as Docker 25 writes. The bytes are
    deterministic. Returns the image (manifest) digest, hex.
    """
    config = image.config_bytes()
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = image.manifest_bytes()
    digest = hashlib.sha256(manifest).hexdigest()
    descriptor = image.manifest_descriptor()
    annotations = {}
    if repo_tags:
        first = next(iter(repo_tags))
        annotations = {
            "io.containerd.image.name": first,
            REF_NAME_ANNOTATION: first.rpartition(":")[2] if ":" in first else "latest",
        }
    if annotations:
        descriptor["annotations"] = annotations
    index = canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [descriptor]}
    )
    docker_manifest = canonical_json(
        [
            {
                "Config": f"blobs/sha256/{config_digest}",
                "RepoTags": list(repo_tags),
                "Layers": [f"blobs/sha256/{layer.digest}" for layer in image.layers],
            }
        ]
    )

    def info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.size, ti.type, ti.mtime, ti.mode = size, kind, 0, 0o644 if kind != b"5" else 0o755
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        import io

        tar.addfile(info(name, len(data)), io.BytesIO(data))

    def write(fileobj: BinaryIO) -> None:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for d in ("blobs/", "blobs/sha256/"):
                tar.addfile(info(d, 0, tarfile.DIRTYPE))
            add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
            written: set[str] = set()
            for layer in image.layers:
                if layer.digest in written:
                    continue
                written.add(layer.digest)
                with open_blob(layer.digest) as f:
                    reader = _VerifyingReader(f, layer.digest)
                    blob_info = info(f"blobs/sha256/{layer.digest}", layer.size)
                    tar.addfile(blob_info, reader)
                    reader.check()
            add_bytes(tar, f"blobs/sha256/{config_digest}", config)
            add_bytes(tar, f"blobs/sha256/{digest}", manifest)
            add_bytes(tar, "index.json", index)
            add_bytes(tar, "manifest.json", docker_manifest)

    if isinstance(dest, (str, Path)):
        path = Path(dest)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        write(dest)
    return digest
