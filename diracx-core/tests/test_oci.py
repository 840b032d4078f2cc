"""diracx.core.oci: unpacking layers (whiteouts, safety, fidelity), layers from overlay
upper directories, image configs, OCI layouts and docker archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from diracx.core.oci import (
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    DigestMismatchError,
    HistoryEntry,
    Image,
    ImageConfig,
    ImageFormatError,
    Layer,
    LayerFormatError,
    NoPlatformMatchError,
    Platform,
    UnsafeLayerError,
    layer_diff_id,
    layer_from_upper,
    read_docker_archive,
    read_oci_layout,
    select_manifest,
    unpack_layer,
    write_docker_archive,
    write_oci_layout,
)

IS_ROOT = os.geteuid() == 0
MTIME = 1_600_000_000


# -- building layers ------------------------------------------------------------------------


def make_layer(entries: list[dict], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar from entry dicts: name, type (file/dir/symlink/hardlink/fifo/char), data..."""
    buf = io.BytesIO()
    kinds = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "char": tarfile.CHRTYPE,
    }
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = kinds[e.get("type", "file")]
            info.mode = e.get("mode", 0o755 if info.type == tarfile.DIRTYPE else 0o644)
            info.mtime = e.get("mtime", MTIME)
            info.uid, info.gid = e.get("uid", 0), e.get("gid", 0)
            info.linkname = e.get("link", "")
            info.devmajor, info.devminor = e.get("dev", (0, 0))
            if "pax" in e:
                info.pax_headers = e["pax"]
            data = e.get("data", b"")
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything tar restores, per path: type, mode, owner, mtime, content or target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                extra: object = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            # directory mtimes: tar's delayed symlinks touch them again (checked elsewhere)
            mtime = None if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        mtime, st.st_nlink if stat.S_ISREG(st.st_mode) else 0, extra)  # fmt: skip
    return out


RICH: list[dict[str, Any]] = [
    {"name": "bin", "type": "dir"},
    {"name": "bin/tool", "data": b"#!/bin/sh\necho hi\n", "mode": 0o755},
    {"name": "bin/suid", "data": b"x", "mode": 0o4755, "uid": 1234, "gid": 99},
    {"name": "bin/alias", "type": "symlink", "link": "tool"},
    {"name": "bin/hard", "type": "hardlink", "link": "bin/tool"},
    {"name": "etc/", "type": "dir", "mode": 0o750, "uid": 7, "gid": 8, "mtime": MTIME - 50},
    {"name": "etc/conf", "data": b"a = 1\n" * 1000, "mode": 0o600, "uid": 1000, "gid": 1000},
    {"name": "./etc/empty", "data": b"", "mode": 0o640},
    {"name": "etc/abs-link", "type": "symlink", "link": "/etc/conf"},
    {"name": "deep/er/dir/file", "data": os.urandom(3 << 20), "mode": 0o664},
    {"name": "long/" + "n" * 150 + "/" + "m" * 120, "data": b"long name"},
    {"name": "unicode/caf\u00e9-\u65e5\u672c", "data": b"utf8"},
    {"name": "tmp", "type": "dir", "mode": 0o1777},
    {"name": "ro-dir", "type": "dir", "mode": 0o555},
    {"name": "ro-dir/inside", "data": b"made before the dir became read-only"},
    {"name": "pipe", "type": "fifo", "mode": 0o600},
]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_unpack_matches_gnu_tar(tmp_path: Path, fmt: int) -> None:
    """Same files, modes, owners (as root), mtimes, links and contents as `tar -x`."""
    entries = [e for e in RICH if fmt != tarfile.USTAR_FORMAT or len(e["name"]) < 200]
    if fmt == tarfile.USTAR_FORMAT:
        entries = [e for e in entries if e["name"].isascii()]
    blob = write(tmp_path, "layer.tar", make_layer(entries, fmt=fmt))
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    unpack_layer(blob, ours, overlay_whiteouts=False)
    subprocess.run(["tar", "-xf", str(blob), "-C", str(theirs)], check=True)
    assert snapshot(ours) == snapshot(theirs)
    assert os.stat(ours / "bin/hard").st_ino == os.stat(ours / "bin/tool").st_ino
    assert os.stat(ours / "etc").st_mtime == MTIME - 50  # set after its files were written
    assert stat.S_IMODE(os.stat(ours / "ro-dir").st_mode) == 0o555
    if IS_ROOT:
        st = os.stat(ours / "bin/suid")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 99, 0o4755)


def test_unpack_gzip_and_zstd(tmp_path: Path) -> None:
    raw = make_layer(RICH)
    expected_dir = tmp_path / "plain"
    unpack_layer(write(tmp_path, "l.tar", raw), expected_dir, overlay_whiteouts=False)
    expected = snapshot(expected_dir)
    gz = write(tmp_path, "l.tar.gz", gzip.compress(raw))
    unpack_layer(gz, tmp_path / "gz", overlay_whiteouts=False)
    assert snapshot(tmp_path / "gz") == expected
    assert layer_diff_id(gz) == hashlib.sha256(raw).hexdigest()
    # a multi-member gzip stream (pigz, concatenated files) is one stream
    half = len(raw) // 2
    multi = write(tmp_path, "m.tar.gz", gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    unpack_layer(multi, tmp_path / "multi", overlay_whiteouts=False)
    assert snapshot(tmp_path / "multi") == expected
    if shutil.which("zstd") is None:
        pytest.skip("no zstd command to make a zstd layer")
    zst = tmp_path / "l.tar.zst"
    subprocess.run(["zstd", "-q", "-o", str(zst), str(tmp_path / "l.tar")], check=True)
    unpack_layer(zst, tmp_path / "zst", overlay_whiteouts=False)
    assert snapshot(tmp_path / "zst") == expected
    assert layer_diff_id(zst) == hashlib.sha256(raw).hexdigest()


def test_pax_xattrs_and_times(tmp_path: Path) -> None:
    layer = make_layer(
        [
            {
                "name": "f",
                "data": b"x",
                "pax": {"mtime": "1600000000.123456789", "SCHILY.xattr.user.color": "blue"},
            }
        ]
    )
    unpack_layer(write(tmp_path, "l.tar", layer), tmp_path / "d", overlay_whiteouts=False)
    st = os.stat(tmp_path / "d/f")
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    try:
        assert os.getxattr(tmp_path / "d/f", "user.color") == b"blue"
    except OSError:
        pytest.skip("this filesystem has no user xattrs")


def test_broken_layers_are_clear_errors(tmp_path: Path) -> None:
    good = make_layer([{"name": "big", "data": os.urandom(5 << 20)}])
    with pytest.raises(LayerFormatError, match="truncated"):
        unpack_layer(
            write(tmp_path, "t.tar", good[: 3 << 20]), tmp_path / "a", overlay_whiteouts=False
        )
    with pytest.raises(LayerFormatError, match="truncated"):
        blob = write(tmp_path, "t.tar.gz", gzip.compress(good)[: 1 << 20])
        unpack_layer(blob, tmp_path / "b", overlay_whiteouts=False)
    with pytest.raises(LayerFormatError, match="not a tar"):
        unpack_layer(
            write(tmp_path, "x", b"hello world" * 100), tmp_path / "c", overlay_whiteouts=False
        )
    with pytest.raises(LayerFormatError, match="empty"):
        unpack_layer(write(tmp_path, "empty", b""), tmp_path / "e", overlay_whiteouts=False)


# -- whiteouts -------------------------------------------------------------------------------

BASE: list[dict[str, Any]] = [
    {"name": "keep", "data": b"keep"},
    {"name": "gone", "data": b"gone"},
    {"name": "gonedir/sub/f", "data": b"f"},
    {"name": "opq/old", "data": b"old"},
    {"name": "opq/olddir/x", "data": b"x"},
    {"name": "late/old", "data": b"old"},
]
UPPER: list[dict[str, Any]] = [
    {"name": ".wh.gone"},
    {"name": ".wh.gonedir"},
    {"name": "opq/.wh..wh..opq"},
    {"name": "opq/new", "data": b"new"},
    {"name": "late/new", "data": b"new"},  # the opaque marker after a sibling: new stays
    {"name": "late/.wh..wh..opq"},
    {"name": "same", "data": b"kept: a whiteout hides older layers only"},
    {"name": ".wh.same"},
]


def test_flatten_applies_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    dest = tmp_path / "rootfs"
    unpack_layer(write(tmp_path, "1.tar", make_layer(BASE)), dest, overlay_whiteouts=False)
    unpack_layer(write(tmp_path, "2.tar", make_layer(UPPER)), dest, overlay_whiteouts=False)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert files == ["keep", "late", "late/new", "opq", "opq/new", "same"]
    # a whiteout of something that is not there changes nothing (and makes no directory)
    third = make_layer([{"name": "nowhere/.wh.x"}, {"name": "keep/.wh.y"}, {"name": ".wh.none"}])
    unpack_layer(write(tmp_path, "3.tar", third), dest, overlay_whiteouts=False)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == files


@pytest.mark.skipif(not IS_ROOT, reason="overlay whiteouts (trusted.* xattrs) need root")
def test_overlay_whiteouts(tmp_path: Path) -> None:
    dest = tmp_path / "lower1"
    unpack_layer(write(tmp_path, "2.tar", make_layer(UPPER)), dest, overlay_whiteouts=True)
    for name in ("gone", "gonedir"):
        st = os.lstat(dest / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(dest / "late", "trusted.overlay.opaque") == b"y"
    assert (dest / "opq/new").read_bytes() == b"new"
    assert (dest / "same").is_file()
    assert not any(p.name.startswith(".wh.") for p in dest.rglob("*"))
    # the userxattr flavour (an overlay mounted in a user namespace)
    unpack_layer(
        tmp_path / "2.tar",
        tmp_path / "u",
        overlay_whiteouts=True,
        opaque_xattr="user.overlay.opaque",
    )
    assert os.getxattr(tmp_path / "u/opq", "user.overlay.opaque") == b"y"


@pytest.mark.skipif(not IS_ROOT, reason="mounting an overlay needs root")
def test_overlay_mount_sees_layers(tmp_path: Path) -> None:
    """The lower directories unpacked with overlay whiteouts give, mounted, the flattened view."""
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    unpack_layer(write(tmp_path, "1.tar", make_layer(BASE)), l1, overlay_whiteouts=True)
    unpack_layer(write(tmp_path, "2.tar", make_layer(UPPER)), l2, overlay_whiteouts=True)
    merged = tmp_path / "merged"
    merged.mkdir()
    with overlay(merged, [l2, l1]):
        files = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    assert files == ["keep", "late", "late/new", "opq", "opq/new", "same"]


# -- safety ----------------------------------------------------------------------------------


def test_dotdot_is_refused(tmp_path: Path) -> None:
    for name in ("../evil", "a/../../evil", "a/b/../../../evil"):
        blob = write(tmp_path, "l.tar", make_layer([{"name": name, "data": b"x"}]))
        with pytest.raises(UnsafeLayerError, match=r"\.\."):
            unpack_layer(blob, tmp_path / "d" / "dest", overlay_whiteouts=False)
        assert not (tmp_path / "evil").exists() and not (tmp_path / "d/evil").exists()
    hard = make_layer([{"name": "h", "type": "hardlink", "link": "../../etc/passwd"}])
    with pytest.raises(UnsafeLayerError):
        unpack_layer(write(tmp_path, "h.tar", hard), tmp_path / "h", overlay_whiteouts=False)


@pytest.mark.parametrize("overlay_whiteouts", [False, True])
def test_symlinks_never_lead_outside(tmp_path: Path, overlay_whiteouts: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("precious")
    dest = tmp_path / "dest"
    layer = make_layer(
        [
            {"name": "abs", "type": "symlink", "link": str(outside)},
            {"name": "abs/pwned", "data": b"x"},
            {"name": "rel", "type": "symlink", "link": "../../../../../../.."},
            {"name": "rel/pwned-rel", "data": b"x"},
            {"name": "/absolute/name", "data": b"x"},
            {"name": "target", "type": "symlink", "link": str(outside / "file")},
            {"name": "target", "data": b"replaces the symlink, not its target"},
        ]
    )
    unpack_layer(write(tmp_path, "l.tar", layer), dest, overlay_whiteouts=overlay_whiteouts)
    assert sorted(p.name for p in outside.iterdir()) == ["file"]
    assert (outside / "file").read_text() == "precious"
    # symlinks resolve as if dest were "/": what they pointed at is made inside dest
    assert (dest / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    assert (dest / "pwned-rel").read_bytes() == b"x"
    assert (dest / "absolute/name").read_bytes() == b"x"
    assert not (dest / "target").is_symlink()
    # a hard link to a host path resolves inside dest, where it does not exist
    hard = make_layer([{"name": "hl", "type": "hardlink", "link": str(outside / "file")}])
    with pytest.raises(LayerFormatError, match="not in the layer"):
        unpack_layer(write(tmp_path, "h.tar", hard), tmp_path / "h", overlay_whiteouts=False)


def test_symlink_of_an_older_layer_is_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "rootfs"
    first = make_layer(
        [
            {"name": "etc", "type": "symlink", "link": str(outside)},
            {"name": "lib", "type": "symlink", "link": "usr/lib"},
            {"name": "usr/lib", "type": "dir"},
            {"name": "passwd", "type": "symlink", "link": str(outside / "passwd")},
        ]
    )
    second = make_layer(
        [
            {"name": "etc/shadow", "data": b"x"},
            {"name": "lib/libc.so", "data": b"elf"},  # through an in-image symlink: fine
            {"name": "passwd", "data": b"root"},
            {"name": ".wh.etc"},
        ]
    )
    unpack_layer(write(tmp_path, "1.tar", first), dest, overlay_whiteouts=False)
    unpack_layer(write(tmp_path, "2.tar", second), dest, overlay_whiteouts=False)
    assert list(outside.iterdir()) == []
    assert (dest / "usr/lib/libc.so").read_bytes() == b"elf"
    assert (dest / str(outside).lstrip("/") / "shadow").read_bytes() == b"x"
    assert (dest / "passwd").read_bytes() == b"root" and not (dest / "passwd").is_symlink()
    # a whiteout of a symlink removes the link, never what it points at
    (outside / "precious").write_text("p")
    third = make_layer([{"name": ".wh.etc"}, {"name": "etc/.wh.precious"}])
    unpack_layer(write(tmp_path, "3.tar", third), dest, overlay_whiteouts=False)
    assert (outside / "precious").read_text() == "p"
    assert not (dest / "etc").is_symlink()


def test_directory_replaced_by_a_file_and_back(tmp_path: Path) -> None:
    dest = tmp_path / "rootfs"
    one = make_layer([{"name": "x/y/z", "data": b"1"}, {"name": "f", "data": b"file"}])
    two = make_layer([{"name": "x", "data": b"now a file"}])
    three = make_layer([{"name": "x", "type": "dir"}, {"name": "x/new", "data": b"n"}])
    unpack_layer(write(tmp_path, "1.tar", one), dest, overlay_whiteouts=False)
    unpack_layer(write(tmp_path, "2.tar", two), dest, overlay_whiteouts=False)
    assert (dest / "x").read_bytes() == b"now a file"
    unpack_layer(write(tmp_path, "3.tar", three), dest, overlay_whiteouts=False)
    assert sorted(p.name for p in (dest / "x").iterdir()) == ["new"]
    # a file under a path that is a file is a broken layer, not a crash
    four = make_layer([{"name": "f/g", "data": b"x"}])
    with pytest.raises(UnsafeLayerError, match="not a directory"):
        unpack_layer(write(tmp_path, "4.tar", four), dest, overlay_whiteouts=False)


# -- layers from overlay upper directories ----------------------------------------------------


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_layer_from_upper_is_deterministic(tmp_path: Path) -> None:
    def build(root: Path) -> None:
        (root / "b/c").mkdir(parents=True)
        (root / "b/c/file").write_bytes(b"data" * 1000)
        (root / "a").write_text("a")
        os.link(root / "a", root / "a-link")
        os.symlink("b/c/file", root / "sym")
        os.chmod(root / "b", 0o700)

    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        root.mkdir()
        build(root)
    os.utime(two / "a", (1, 1))
    out1, out2 = io.BytesIO(), io.BytesIO()
    l1 = layer_from_upper(one, out1)
    l2 = layer_from_upper(two, out2)
    assert out1.getvalue() == out2.getvalue()
    assert l1 == l2
    assert l1.digest == l1.diff_id == hashlib.sha256(out1.getvalue()).hexdigest()
    assert l1.size == len(out1.getvalue()) and l1.media_type == MEDIA_OCI_LAYER
    assert tar_names(out1.getvalue()) == ["a", "a-link", "b", "b/c", "b/c/file", "sym"]
    with tarfile.open(fileobj=io.BytesIO(out1.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["a-link"].islnk() and members["a-link"].linkname == "a"
    assert {m.mtime for m in members.values()} == {0}
    assert {m.uname for m in members.values()} == {""}
    assert members["b"].mode == 0o700
    # excluded paths (mount points) are left out with what is under them
    out3 = io.BytesIO()
    layer_from_upper(one, out3, exclude=["b/c"])
    assert tar_names(out3.getvalue()) == ["a", "a-link", "b", "sym"]
    # round trip: unpacking gives back the tree
    dest = tmp_path / "back"
    unpack_layer(write(tmp_path, "l.tar", out1.getvalue()), dest, overlay_whiteouts=False)
    assert (dest / "b/c/file").read_bytes() == b"data" * 1000
    assert os.readlink(dest / "sym") == "b/c/file"
    assert os.stat(dest / "a").st_ino == os.stat(dest / "a-link").st_ino


class overlay:
    """Mount an overlay (lowers listed top first) on *merged* for the block."""

    def __init__(self, merged: Path, lowers: list[Path], upper: Path | None = None) -> None:
        opts = "lowerdir=" + ":".join(str(p) for p in lowers)
        if upper is not None:
            work = upper.parent / (upper.name + "-work")
            work.mkdir(exist_ok=True)
            opts += f",upperdir={upper},workdir={work}"
        self.cmd = ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]
        self.merged = merged

    def __enter__(self) -> Path:
        proc = subprocess.run(self.cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount an overlay here: {proc.stderr.strip()}")
        return self.merged

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", str(self.merged)], check=True)


@pytest.mark.skipif(not IS_ROOT, reason="mounting an overlay needs root")
def test_layer_from_a_real_overlay_upper(tmp_path: Path) -> None:
    """Changes made in a mounted overlay become a layer; lower + layer = the merged view."""
    base = write(tmp_path, "base.tar", make_layer([*BASE, {"name": "dir/keep", "data": b"k"}]))
    lower = tmp_path / "lower"
    unpack_layer(base, lower, overlay_whiteouts=True)
    upper, merged = tmp_path / "upper", tmp_path / "merged"
    upper.mkdir()
    merged.mkdir()
    with overlay(merged, [lower], upper):
        (merged / "gone").unlink()
        shutil.rmtree(merged / "gonedir")
        shutil.rmtree(merged / "opq")
        (merged / "opq").mkdir()  # recreated over a deleted one: an opaque directory
        (merged / "opq/fresh").write_text("fresh")
        (merged / "keep").write_text("changed")
        (merged / "dir/added").write_text("added")
        os.link(merged / "dir/added", merged / "dir/added-link")
        expected = snapshot_content(merged)
    out = io.BytesIO()
    layer = layer_from_upper(upper, out)
    names = tar_names(out.getvalue())
    assert ".wh.gone" in names and ".wh.gonedir" in names
    assert "opq/.wh..wh..opq" in names
    # flattening base + the new layer gives what the merged view showed
    flat = tmp_path / "flat"
    unpack_layer(base, flat, overlay_whiteouts=False)
    unpack_layer(write(tmp_path, "new.tar", out.getvalue()), flat, overlay_whiteouts=False)
    assert snapshot_content(flat) == expected
    # and as overlay lowers, too
    lower2 = tmp_path / "lower2"
    unpack_layer(tmp_path / "new.tar", lower2, overlay_whiteouts=True)
    merged2 = tmp_path / "merged2"
    merged2.mkdir()
    with overlay(merged2, [lower2, lower]):
        assert snapshot_content(merged2) == expected
    # the same changes made again give the same layer digest
    upper_again = tmp_path / "upper-again"
    upper_again.mkdir()
    merged3 = tmp_path / "merged3"
    merged3.mkdir()
    with overlay(merged3, [lower], upper_again):
        (merged3 / "gone").unlink()
        shutil.rmtree(merged3 / "gonedir")
        shutil.rmtree(merged3 / "opq")
        (merged3 / "opq").mkdir()
        (merged3 / "opq/fresh").write_text("fresh")
        (merged3 / "keep").write_text("changed")
        (merged3 / "dir/added").write_text("added")
        os.link(merged3 / "dir/added", merged3 / "dir/added-link")
    assert layer_from_upper(upper_again, io.BytesIO()).digest == layer.digest


def snapshot_content(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else p.is_dir()
    return out


# -- images ----------------------------------------------------------------------------------

OCI_CONFIG = {
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "created": "2024-01-01T00:00:00Z",
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        "WorkingDir": "/srv",
        "Entrypoint": ["/bin/tini", "--"],
        "Cmd": ["serve"],
        "User": "1000:1000",
        "Labels": {"org.example": "yes"},
        "ExposedPorts": {"8080/tcp": {}},
        "StopSignal": "SIGINT",
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64, "sha256:" + "b" * 64]},
    "history": [
        {"created_by": "ADD rootfs", "created": "2024-01-01T00:00:00Z"},
        {"created_by": "ENV LANG=C.UTF-8", "empty_layer": True},
        {"created_by": "RUN build"},
    ],
}


def test_image_config_round_trip() -> None:
    cfg = ImageConfig.from_oci(OCI_CONFIG)
    assert cfg.env_map() == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    assert (cfg.working_dir, cfg.entrypoint, cfg.cmd, cfg.user) == (
        "/srv", ["/bin/tini", "--"], ["serve"], "1000:1000",
    )  # fmt: skip
    history = [HistoryEntry.model_validate(h) for h in OCI_CONFIG["history"]]
    doc = cfg.to_oci(
        ["a" * 64, "b" * 64],
        history,
        platform=Platform(architecture="arm64", variant="v8"),
        created="2024-01-01T00:00:00Z",
    )
    assert doc == OCI_CONFIG
    assert cfg.with_env("LANG", "fr").env == ["PATH=/usr/bin:/bin", "LANG=fr"]
    # history is padded to one entry per layer, and too many is an error
    padded = ImageConfig().to_oci(["c" * 64, "d" * 64], [HistoryEntry(created_by="x")])
    assert [h.get("created_by") for h in padded["history"]] == ["x", "diracx"]
    with pytest.raises(ImageFormatError, match="history"):
        ImageConfig().to_oci([], [HistoryEntry(created_by="x")])


def test_image_digest_is_stable_and_round_trips() -> None:
    layers = [Layer(digest="1" * 64, size=10, diff_id="2" * 64, media_type=MEDIA_OCI_LAYER_GZIP)]
    image = Image(config=ImageConfig(cmd=["sh"]), layers=layers, platform=Platform())
    again = Image.from_oci(json.loads(image.manifest_bytes()), json.loads(image.config_bytes()))
    assert again.manifest_bytes() == image.manifest_bytes()
    assert again.digest == image.digest == hashlib.sha256(image.manifest_bytes()).hexdigest()
    assert (
        image.config_bytes()
        == json.dumps(
            json.loads(image.config_bytes()), sort_keys=True, separators=(",", ":")
        ).encode()
    )
    with pytest.raises(ImageFormatError, match="diff_ids"):
        Image.from_oci(json.loads(image.manifest_bytes()), {"rootfs": {"diff_ids": []}})


def test_platform_selection() -> None:
    def desc(os_: str, arch: str, variant: str | None = None) -> dict:
        p = {"os": os_, "architecture": arch} | ({"variant": variant} if variant else {})
        return {"digest": f"sha256:{hashlib.sha256(str(p).encode()).hexdigest()}", "platform": p}

    index = {
        "manifests": [
            desc("unknown", "unknown"),
            desc("linux", "arm", "v7"),
            desc("linux", "arm64", "v8"),
            desc("linux", "amd64"),
        ]
    }
    pick = select_manifest
    assert pick(index, Platform.parse("linux/amd64"))["platform"]["architecture"] == "amd64"
    assert pick(index, Platform.parse("linux/arm64"))["platform"]["architecture"] == "arm64"
    assert pick(index, Platform.parse("linux/arm/v7"))["platform"]["variant"] == "v7"
    with pytest.raises(NoPlatformMatchError, match=r"linux/arm/v6.*linux/arm/v7"):
        pick(index, Platform.parse("linux/arm/v6"))
    with pytest.raises(NoPlatformMatchError, match="windows/amd64"):
        pick(index, Platform(os="windows"))
    assert Platform.host().os == "linux"
    with pytest.raises(ValueError):
        Platform.parse("amd64")


# -- layouts and archives -----------------------------------------------------------------------


def sample_image(tmp_path: Path) -> tuple[Image, dict[str, Path]]:
    blobs = {}
    layers = []
    for i, data in enumerate([make_layer(RICH[:4]), gzip.compress(make_layer(BASE), mtime=0)]):
        digest = hashlib.sha256(data).hexdigest()
        path = write(tmp_path, f"blob{i}", data)
        blobs[digest] = path
        layers.append(
            Layer(
                digest=digest,
                size=len(data),
                media_type=MEDIA_OCI_LAYER if i == 0 else MEDIA_OCI_LAYER_GZIP,
                diff_id=layer_diff_id(path),
            )
        )
    config = ImageConfig(env=["PATH=/bin"], working_dir="/w", cmd=["sh"], user="nobody")
    return Image(config=config, layers=layers, platform=Platform.host()), blobs


def same(a: Image, b: Image) -> bool:
    """The same image: digest, and so config, layers and platform (history gets padded)."""
    return a.digest == b.digest and a.layers == b.layers and a.config == b.config


def test_oci_layout_round_trip(tmp_path: Path) -> None:
    image, blobs = sample_image(tmp_path)
    layout = tmp_path / "layout"
    digest = write_oci_layout(image, lambda d: blobs[d].open("rb"), layout, ref_name="v1")
    assert digest == image.digest
    back, paths = read_oci_layout(layout)
    assert same(back, image)
    assert {d: p.read_bytes() for d, p in paths.items()} == {
        d: p.read_bytes() for d, p in blobs.items()
    }
    # a second image in the layout: by name, and an error without one
    other = image.model_copy(update={"config": ImageConfig(cmd=["other"])})
    write_oci_layout(other, lambda d: blobs[d].open("rb"), layout, ref_name="v2")
    assert read_oci_layout(layout, ref="v2")[0].config.cmd == ["other"]
    assert same(read_oci_layout(layout, ref="v1")[0], image)
    with pytest.raises(ImageFormatError, match="holds 2 images"):
        read_oci_layout(layout)
    with pytest.raises(ImageFormatError, match="no image named 'v3'"):
        read_oci_layout(layout, ref="v3")
    # a corrupted manifest is detected
    manifest = layout / "blobs/sha256" / digest
    os.chmod(manifest, 0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    with pytest.raises(DigestMismatchError):
        read_oci_layout(layout, ref="v1")
    with pytest.raises(ImageFormatError, match="not an OCI image layout"):
        read_oci_layout(tmp_path)


def test_oci_layout_with_an_index_per_platform(tmp_path: Path) -> None:
    image, blobs = sample_image(tmp_path)
    layout = tmp_path / "layout"
    arm = image.model_copy(update={"platform": Platform(architecture="arm64", variant="v8")})
    amd = image.model_copy(update={"platform": Platform(architecture="amd64")})
    for img in (arm, amd):
        write_oci_layout(img, lambda d: blobs[d].open("rb"), layout)
    # wrap both manifests in a nested image index, as `docker buildx --output type=oci` does
    index = json.loads((layout / "index.json").read_bytes())
    nested = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", **index}
    ).encode()
    nested_digest = hashlib.sha256(nested).hexdigest()
    (layout / "blobs/sha256" / nested_digest).write_bytes(nested)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": f"sha256:{nested_digest}",
                "size": len(nested),
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(top))
    assert same(read_oci_layout(layout, platform=Platform.parse("linux/arm64"))[0], arm)
    assert same(read_oci_layout(layout, platform=Platform.parse("linux/amd64"))[0], amd)
    with pytest.raises(NoPlatformMatchError):
        read_oci_layout(layout, platform=Platform.parse("linux/s390x"))


def test_docker_archive_round_trip(tmp_path: Path) -> None:
    image, blobs = sample_image(tmp_path)
    archive = tmp_path / "image.tar"
    digest = write_docker_archive(
        image, lambda d: blobs[d].open("rb"), archive, repo_tags=["example/app:1"]
    )
    assert digest == image.digest
    again = tmp_path / "again.tar"
    write_docker_archive(image, lambda d: blobs[d].open("rb"), again, repo_tags=["example/app:1"])
    assert archive.read_bytes() == again.read_bytes()  # deterministic
    back, paths = read_docker_archive(archive, tmp_path / "blobs")
    assert same(back, image)
    assert all(paths[d].read_bytes() == blobs[d].read_bytes() for d in blobs)
    # docker load needs manifest.json; OCI tools need the layout: both are there
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "index.json", "oci-layout"} <= names
    assert manifest[0]["RepoTags"] == ["example/app:1"]
    # the same archive gzipped (docker save | gzip)
    gz = write(tmp_path, "image.tar.gz", gzip.compress(archive.read_bytes()))
    assert same(read_docker_archive(gz, tmp_path / "blobs-gz")[0], image)


def test_classic_docker_save_archive(tmp_path: Path) -> None:
    """The pre-Docker-25 format: <id>/layer.tar, <config>.json, a symlinked duplicate layer."""
    l1 = make_layer([{"name": "a", "data": b"1"}])
    l2 = make_layer([{"name": "b", "data": b"2"}])
    ids = [hashlib.sha256(x).hexdigest() for x in (l1, l2, l1)]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["A=1"], "Cmd": ["true"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i}" for i in ids]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("aaa/layer.tar", l1)
        add("bbb/layer.tar", l2)
        link = tarfile.TarInfo("ccc/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaa/layer.tar"
        tar.addfile(link)
        add(config_name, config_bytes)
        manifest = [
            {
                "Config": config_name,
                "RepoTags": ["x:1"],
                "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
            }
        ]
        add("manifest.json", json.dumps(manifest).encode())
    archive = write(tmp_path, "old.tar", buf.getvalue())
    image, paths = read_docker_archive(archive, tmp_path / "out", tag="x:1")
    assert [layer.digest for layer in image.layers] == ids
    assert image.config.cmd == ["true"] and image.config.env == ["A=1"]
    assert paths[ids[0]].read_bytes() == l1
    with pytest.raises(ImageFormatError, match="no image tagged"):
        read_docker_archive(archive, tmp_path / "out2", tag="y:2")
    # a config that names other layers than the archive holds
    bad = archive.read_bytes().replace(ids[1].encode(), b"0" * 64)
    with pytest.raises((DigestMismatchError, ImageFormatError)):
        read_docker_archive(write(tmp_path, "bad.tar", bad), tmp_path / "out3")
    with pytest.raises(ImageFormatError, match="not a docker save archive"):
        read_docker_archive(write(tmp_path, "t.tar", make_layer(BASE)), tmp_path / "o4")
