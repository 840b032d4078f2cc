"""The sandbox of one ``oci`` step: namespaces, an overlay root, the exec. Standard library only.

Two ways to start it (``python -I -S ocisandbox.py ...``, so nothing of the
worker's environment or site-packages is read):

- ``--zygote FD``: the executor's helper, started once per worker process. It
  reads requests on the SEQPACKET socket FD (the path of a spec and the
  container's environment, with the step's stdin, stdout, stderr and status
  pipe as passed file descriptors), forks a sandbox for each and answers with a
  pidfd of it. A fork costs a millisecond; starting Python costs twenty.
- ``SPEC STATUS_FD``: one sandbox, in this process (the environment is the
  container's). The tests use it.

The spec (written by the ``oci`` executor with :mod:`marshal`) holds paths and
settings, never a secret: secrets are in the environment, which only travels
through pipes. The sandbox reports on the status pipe, one marshalled dict per
record (``<8 hex digits of length><marshal>``): ``{"error": ..., "missing": ...}``
when it cannot be set up (``"code": 126/127`` when the command cannot be
started), then ``{"exit": N}`` or ``{"signal": N}`` when the command ended.

What one sandbox does, as root:

1. joins the memory cgroup the executor made (if any); dies with its parent;
2. unshares the mount, IPC, UTS, PID and (unless the step has network) network
   namespaces; makes every mount private;
3. mounts the overlay: the image's layers (unpacked once per worker) below, the
   step's upper directory (the new layer) on top;
4. applies the step's copies (``with_directory``...), or extracts a path;
5. for an exec: mounts /proc, a minimal /dev, /sys (read-only), the inputs and
   cache volumes; forks the command as PID 1 of the new PID namespace, which
   pivots into the root, drops the dangerous capabilities, takes the user and
   group, and execs; waits for it; unmounts and removes the mount points it had
   to create, so that they do not end up in the layer.

Container paths are resolved inside the root (:func:`resolve`): an image's
symlink never leads outside of it.
"""

from __future__ import annotations

import ctypes
import errno
import marshal
import os
import signal
import socket
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

# Docker's default capabilities, minus CAP_MKNOD (there is no device cgroup here):
# CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
# NET_RAW, SYS_CHROOT, AUDIT_WRITE, SETFCAP. Everything else leaves the bounding set.
KEEP_CAPS = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 29, 31})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
MAX_SYMLINKS = 40
SETUP_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    """The sandbox cannot be set up; ``missing`` names what the machine lacks, if that is why."""

    def __init__(self, message: str, missing: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


# --------------------------------------------------------------------------- system calls


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    result = _libc.mount(
        _b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data or None)
    )
    _check(result, f"mount {fstype or 'bind'} on {target}")


def umount(target: str) -> None:
    _libc.umount2(_b(target), MNT_DETACH)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def pivot_root(new_root: str, put_old: str) -> None:
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SandboxError(f"pivot_root: unknown system call number on {os.uname().machine}")
    _check(_libc.syscall(ctypes.c_long(number), _b(new_root), _b(put_old)), "pivot_root")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def die_with_parent(parent: int, alive_fd: int = -1) -> None:
    """SIGKILL when the parent dies; if it died already, now.

    Seen from a new PID namespace the parent's pid is 0: there, *alive_fd* is the
    read end of a pipe whose write end only the parent holds (its end means it died).
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if alive_fd < 0:
        if os.getppid() != parent:
            os._exit(SETUP_FAILED)
        return
    os.set_blocking(alive_fd, False)
    try:
        gone = os.read(alive_fd, 1) == b""
    except BlockingIOError:
        gone = False
    os.close(alive_fd)
    if gone:
        os._exit(SETUP_FAILED)


def report(status_fd: int, doc: dict) -> None:
    data = marshal.dumps(doc)
    try:  # noqa: SIM105 - contextlib would cost milliseconds of imports
        os.write(status_fd, b"%08x" % len(data) + data)
    except OSError:
        pass


# --------------------------------------------------------------------------- paths


class Root:
    """The container's root directory, seen from the host, and the mount points made in it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.created: list[str] = []  # mount points this sandbox made (removed at the end)

    def resolve(self, path: str, *, create: str = "", record: bool = False) -> str:
        """The host path of the container path *path*, every symlink resolved inside the root.

        With *create* (``"dir"`` or ``"file"``) missing components are made (directories,
        the last one a directory or an empty file); with *record* they are remembered
        as mount points, to be removed at the end.
        """
        root = self.path
        parts = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            current = os.path.join(root, *done, part)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                if not create:
                    raise
                if not parts and create == "file":
                    os.close(os.open(current, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                else:
                    os.mkdir(current, 0o755)
                if record:
                    self.created.append(current)
                done.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SandboxError(f"too many levels of symbolic links in {path!r}")
                target = os.readlink(current)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                raise SandboxError(f"{path!r}: {'/'.join(['', *done, part])} is not a directory")
            done.append(part)
        return os.path.join(root, *done) if done else root

    def container_path(self, host_path: str) -> str:
        return "/" + os.path.relpath(host_path, self.path).lstrip(".")


# --------------------------------------------------------------------------- filesystem steps


def copy_into(root: Root, src: str, dest: str, kind: str, mode: int | None) -> None:
    """Copy the host file or directory *src* to the container path *dest* (merging directories).

    Owned by root, modes as in the source; parents are made as needed. Every directory
    is resolved inside the root, so an image's symlink cannot send a file outside.
    """
    if kind == "file":
        parent, _, name = dest.rstrip("/").rpartition("/")
        _copy_file(src, root.resolve(parent or "/", create="dir"), name, mode)
        return
    stack = [(src, root.resolve(dest, create="dir"))]
    while stack:
        src_dir, dst_dir = stack.pop()
        with os.scandir(src_dir) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    _copy_file(entry.path, dst_dir, entry.name, None)
                    continue
                target = os.path.join(dst_dir, entry.name)
                try:
                    tst = os.lstat(target)
                except FileNotFoundError:
                    os.mkdir(target, 0o755)
                else:
                    if stat.S_ISLNK(tst.st_mode):  # follow it, but inside the root
                        target = root.resolve(root.container_path(target), create="dir")
                    elif not stat.S_ISDIR(tst.st_mode):
                        os.unlink(target)
                        os.mkdir(target, 0o755)
                os.chmod(target, stat.S_IMODE(st.st_mode))
                os.lchown(target, 0, 0)
                stack.append((entry.path, target))


def _copy_file(src: str, dst_dir: str, name: str, mode: int | None) -> None:
    target = os.path.join(dst_dir, name)
    st = os.lstat(src)
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(existing.st_mode):
            raise SandboxError(f"cannot put a file where the directory {name!r} is")
        os.unlink(target)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), target)
        os.lchown(target, 0, 0)
        return
    with open(src, "rb") as fin:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while chunk := fin.read(1 << 20):
                os.write(fd, chunk)
            os.fchown(fd, 0, 0)
            os.fchmod(fd, mode if mode is not None else stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd)


def extract(root: Root, path: str, dest: str, kind: str) -> None:
    """Copy the container path *path* out to the host directory *dest* (symlinks kept as links).

    A directory's content lands in *dest*; a file lands as ``dest/<its name>``.
    Device nodes, sockets and FIFOs are skipped: a tree cannot hold them.
    """
    try:
        source = root.resolve(path)
        st = os.stat(source)
    except FileNotFoundError:
        raise SandboxError(f"{path!r} does not exist in the container") from None
    if kind == "file":
        if not stat.S_ISREG(st.st_mode):
            raise SandboxError(f"{path!r} is not a regular file in the container")
        _copy_out(source, os.path.join(dest, os.path.basename(path.rstrip("/")) or "file"))
        return
    if not stat.S_ISDIR(st.st_mode):
        raise SandboxError(f"{path!r} is not a directory in the container")
    stack = [(source, dest)]
    while stack:
        src_dir, dst_dir = stack.pop()
        with os.scandir(src_dir) as it:
            for entry in it:
                est = entry.stat(follow_symlinks=False)
                target = os.path.join(dst_dir, entry.name)
                if stat.S_ISDIR(est.st_mode):
                    os.mkdir(target, 0o755)
                    stack.append((entry.path, target))
                elif stat.S_ISLNK(est.st_mode):
                    os.symlink(os.readlink(entry.path), target)
                elif stat.S_ISREG(est.st_mode):
                    _copy_out(entry.path, target)


def _copy_out(src: str, target: str) -> None:
    st = os.stat(src)
    with open(src, "rb") as fin, open(target, "xb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
    os.chmod(target, 0o755 if st.st_mode & 0o111 else 0o644)


def mount_overlay(spec: dict) -> None:
    """The root: the layers (top first, as ``lower/0``, ``lower/1``... so that the options
    stay short), with the upper directory on top, or read-only without one."""
    root, lowers, upper = spec["root"], spec["lowers"], spec.get("upper")
    if lowers == 0:
        if upper:  # no layers at all: the upper directory is the root
            mount(upper, root, None, MS_BIND)
        return  # else a plain directory (extracting from copies)
    names = [str(i) for i in range(lowers)]
    if not upper and len(names) < 2:
        names.append("empty")  # overlayfs wants two lower directories when it has no upper
    options = "lowerdir=" + ":".join(names)
    if upper:
        # every change as plain files in the upper directory: no redirects, no
        # metadata-only copies (the new layer is read from it)
        options += f",upperdir={upper},workdir={spec['work']},redirect_dir=off,metacopy=off"
    os.chdir(spec["lower_dir"])
    try:
        try:
            mount("overlay", root, "overlay", 0 if upper else MS_RDONLY, options)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not upper:
                raise
            # an older kernel without these options: its defaults are off anyway
            plain = options.replace(",redirect_dir=off,metacopy=off", "")
            mount("overlay", root, "overlay", 0, plain)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise SandboxError(
                "the kernel has no overlay filesystem", missing="overlayfs (modprobe overlay)"
            ) from None
        if exc.errno == errno.EPERM:
            raise SandboxError(
                "mounting the overlay root is not permitted", missing="CAP_SYS_ADMIN"
            ) from None
        raise SandboxError(
            f"cannot mount the overlay root ({os.strerror(exc.errno or 0)}): the worker's data "
            "directory must be on a filesystem that overlayfs accepts as an upper layer "
            "(ext4, xfs, btrfs; not overlayfs or NFS)",
            missing="an overlay-capable filesystem for the data directory",
        ) from None
    finally:
        os.chdir("/")


def setup_dev(root: Root) -> str:
    dev = root.resolve("/dev", create="dir", record=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEV_NODES:
        if not os.path.exists(f"/dev/{name}"):  # a worker in a container may lack /dev/tty
            continue
        target = os.path.join(dev, name)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o666))
        mount(f"/dev/{name}", target, None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ):
        os.symlink(target, os.path.join(dev, name))
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, name), 0o755)
    flags = MS_NOSUID | MS_NOEXEC
    mount("shm", dev + "/shm", "tmpfs", flags | MS_NODEV, "mode=1777,size=65536k")
    try:  # nice to have; a kernel (or an outer container) may refuse them
        mount("devpts", dev + "/pts", "devpts", flags, "newinstance,ptmxmode=0666,mode=620")
        mount("mqueue", dev + "/mqueue", "mqueue", flags | MS_NODEV)
    except OSError:
        pass
    return dev


def bind(src: str, target: str, *, readonly: bool) -> None:
    mount(src, target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)


def setup_mounts(root: Root, spec: dict) -> list[str]:
    """/proc's mount point, /dev, /sys, the inputs and caches. Returns what to unmount."""
    mounted = [setup_dev(root)]
    root.resolve("/proc", create="dir", record=True)
    sys_dir = root.resolve("/sys", create="dir", record=True)
    try:  # as Docker: read-only; an outer container may refuse it
        mount("sysfs", sys_dir, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mounted.append(sys_dir)
    except OSError:
        pass
    if spec.get("network"):  # the host's name resolution, as Docker gives it (not in the layer)
        for name in ("resolv.conf", "hosts"):
            if os.path.isfile(f"/etc/{name}"):
                target = root.resolve(f"/etc/{name}", create="file", record=True)
                bind(f"/etc/{name}", target, readonly=True)
                mounted.append(target)
    for m in spec.get("mounts", []):
        kind = "file" if m["kind"] == "file" else "dir"
        target = root.resolve(m["dest"], create=kind, record=True)
        if m.get("overlay"):  # a private cache: copy-on-write over the volume, changes dropped
            o = m["overlay"]
            options = f"lowerdir={m['src']},upperdir={o}/upper,workdir={o}/work"
            mount("overlay", target, "overlay", 0, options)
        else:
            bind(m["src"], target, readonly=m.get("readonly", False))
        mounted.append(target)
    return mounted


def loopback_up() -> None:
    """A new network namespace has ``lo`` down: bring it up, as Docker's ``--network none``."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, b"lo".ljust(16, b"\0") + b"\x01\x00" + bytes(22))


# --------------------------------------------------------------------------- the exec


def parse_user(user: str) -> tuple[int, int, list[int], str | None]:
    """uid, gid, supplementary groups and home of ``user``, ``uid``, ``user:group`` or
    ``uid:gid``, looked up in the image's /etc/passwd and /etc/group (after the pivot)."""
    name, _, group = user.partition(":")
    passwd = _read_db("/etc/passwd")
    groups_db = _read_db("/etc/group")
    uid = gid = 0
    home: str | None = None
    username: str | None = None
    if name:
        entry = next((e for e in passwd if e[0] == name), None)
        if entry is None and name.isdigit():
            uid = int(name)
            entry = next((e for e in passwd if len(e) > 3 and e[2] == name), None)
        elif entry is None:
            raise SandboxError(f"user {name!r} is not in the image's /etc/passwd")
        if entry is not None and len(entry) > 3:
            username = entry[0]
            uid = int(entry[2]) if entry[2].isdigit() else uid
            gid = int(entry[3]) if entry[3].isdigit() else 0
            home = entry[5] if len(entry) > 5 else None
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = next((e for e in groups_db if e[0] == group and len(e) > 2), None)
            if gentry is None or not gentry[2].isdigit():
                raise SandboxError(f"group {group!r} is not in the image's /etc/group")
            gid = int(gentry[2])
    extra: set[int] = set()
    if username is not None:
        for e in groups_db:
            if len(e) > 3 and username in e[3].split(",") and e[2].isdigit():
                extra.add(int(e[2]))
    return uid, gid, sorted(extra - {gid}), home


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and line[0] != "#"]
    except OSError:
        return []


def find_program(name: str, path: str) -> str:
    """*name* looked up on *path* as execvp does (a name with '/' is taken as is).

    Not ``os.execvpe``: it imports modules lazily, and they are not there after the pivot.
    """
    if "/" in name:
        return name
    denied = False
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = True
    raise (PermissionError if denied else FileNotFoundError)(name)


def container_main(spec: dict, env: dict, status_fd: int, alive: tuple[int, int]) -> None:
    """PID 1 of the new PID namespace: pivot into the root, become the user, exec."""
    code = SETUP_FAILED
    try:
        os.close(alive[1])
        die_with_parent(0, alive[0])
        os.set_inheritable(status_fd, False)  # the command never sees the status pipe
        root = spec["root"]
        unshare(CLONE_NEWNS)  # pivot in a mount namespace of our own: the parent keeps its view
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chdir(root)
        pivot_root(".", ".")
        umount(".")
        os.chdir("/")
        env = dict(env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOSTNAME", spec["hostname"])
        uid, gid, groups, home = parse_user(spec.get("user", ""))
        env.setdefault("HOME", home or ("/root" if uid == 0 else "/"))
        workdir = spec.get("workdir") or "/"
        if not os.path.isdir(workdir):
            os.makedirs(workdir, 0o755, exist_ok=True)  # as BuildKit: part of the layer
            if uid or gid:
                os.chown(workdir, uid, gid)
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        for cap in range(last_cap + 1):
            if cap not in KEEP_CAPS:
                prctl(PR_CAPBSET_DROP, cap)
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        os.chdir(workdir)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: changing the uid cleared it
        argv = spec["argv"]
        try:
            program = find_program(argv[0], env["PATH"])
            os.execve(program, argv, env)
        except FileNotFoundError:
            code, message = 127, f"{argv[0]}: no such file or directory in the container"
        except PermissionError:
            code, message = 126, f"{argv[0]}: permission denied"
        except OSError as exc:
            code, message = 126, f"cannot run {argv[0]}: {exc.strerror}"
        report(status_fd, {"error": message, "code": code})
    except SandboxError as exc:
        report(status_fd, {"error": exc.message, "missing": exc.missing})
    except OSError as exc:
        report(status_fd, {"error": f"cannot set up the container: {exc}"})
    except BaseException as exc:  # never a traceback on the container's stderr
        report(status_fd, {"error": f"cannot set up the container: {type(exc).__name__}: {exc}"})
    os._exit(code)


def run(spec: dict, env: dict, status_fd: int) -> None:
    """One sandbox, in this process (see the module's docstring)."""
    if spec.get("cgroup"):
        with open(spec["cgroup"], "w") as f:
            f.write(str(os.getpid()))
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    if spec.get("argv"):
        flags |= CLONE_NEWPID
        if not spec.get("network"):
            flags |= CLONE_NEWNET
    try:
        unshare(flags)
    except OSError as exc:
        raise SandboxError(
            f"cannot create Linux namespaces ({os.strerror(exc.errno or 0)}): the oci executor "
            "needs root (CAP_SYS_ADMIN) on the worker",
            missing="root or CAP_SYS_ADMIN, and namespace support in the kernel",
        ) from None
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = Root(spec["root"])
    mount_overlay(spec)
    for c in spec.get("copies", []):
        copy_into(root, c["src"], c["dest"], c["kind"], c.get("mode"))
    if spec.get("extract"):
        e = spec["extract"]
        extract(root, e["path"], e["dest"], e["kind"])
    if not spec.get("argv"):
        report(status_fd, {"exit": 0})
        return
    mounted = setup_mounts(root, spec)
    hostname = spec["hostname"].encode()
    _libc.sethostname(hostname, len(hostname))
    if not spec.get("network"):
        loopback_up()
    alive = os.pipe()
    pid = os.fork()
    if pid == 0:
        container_main(spec, env, status_fd, alive)
    os.close(alive[0])
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        report(status_fd, {"signal": os.WTERMSIG(status)})
    else:
        report(status_fd, {"exit": os.WEXITSTATUS(status)})
    for target in reversed(mounted):
        umount(target)
    for path in reversed(root.created):  # mount points made here: not part of the layer
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass  # the command put something there: keep it


def sandbox(spec: dict, env: dict, status_fd: int) -> int:
    """:func:`run`, with every failure reported on the status pipe; the exit code."""
    try:
        run(spec, env, status_fd)
    except SandboxError as exc:
        report(status_fd, {"error": exc.message, "missing": exc.missing})
        return SETUP_FAILED
    except OSError as exc:
        report(status_fd, {"error": f"cannot set up the container: {exc}"})
        return SETUP_FAILED
    except BaseException as exc:
        report(status_fd, {"error": f"cannot set up the container: {type(exc).__name__}: {exc}"})
        return SETUP_FAILED
    return 0


def _load_spec(path: str) -> dict:
    with open(path, "rb") as f:
        spec = marshal.load(f)
    if not isinstance(spec, dict):
        raise ValueError("the sandbox spec is not a dict")
    return spec


# --------------------------------------------------------------------------- the zygote


def serve(sock_fd: int) -> None:
    """The zygote: one request at a time, a forked sandbox for each (see the docstring)."""
    die_with_parent(os.getppid())
    sock = socket.socket(fileno=sock_fd)
    me = os.getpid()
    while True:
        _reap()
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        except OSError:
            return
        if not data:
            return  # the executor is gone
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            sock.send(marshal.dumps({"error": "a request needs 4 file descriptors"}))
            continue
        try:
            request = marshal.loads(data)
            spec, env = _load_spec(request["spec"]), request["env"]
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            for fd in fds:
                os.close(fd)
            sock.send(marshal.dumps({"error": f"bad sandbox request: {exc}"}))
            continue
        pid = os.fork()
        if pid == 0:  # the sandbox
            code = SETUP_FAILED
            try:
                sock.close()
                os.setsid()
                die_with_parent(me)
                for target, fd in zip((0, 1, 2), fds[:3], strict=True):
                    os.dup2(fd, target)
                    os.close(fd)
                code = sandbox(spec, env, fds[3])
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        # Not reaped until the next request: the pid cannot be reused before the pidfd
        # exists. The executor waits on the pidfd and kills through it.
        pidfd = os.pidfd_open(pid)
        socket.send_fds(sock, [marshal.dumps({"pid": pid})], [pidfd])
        os.close(pidfd)


def _reap() -> None:
    """Collect the sandboxes that have ended (the executor saw them end on their pidfd)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--zygote":
        serve(int(argv[1]))
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: ocisandbox.py (--zygote FD | SPEC STATUS_FD)\n")
        return 2
    status_fd = int(argv[1])
    try:
        spec = _load_spec(argv[0])
    except (OSError, ValueError, EOFError) as exc:
        report(status_fd, {"error": f"cannot read the sandbox spec: {exc}"})
        return SETUP_FAILED
    return sandbox(spec, dict(os.environ), status_fd)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
