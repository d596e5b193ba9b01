"""The trusted procfs: every file the runtime writes (or trusts) under /proc is opened here.

Why: a path such as /proc/sys/kernel/domainname or /proc/self/attr/exec is resolved through
whatever is mounted on it. Inside the container that is the container's /proc, on which
the config, a createContainer hook or (for `exec`) the container's own processes may have
mounted files of their choosing: a sysctl, oom_score_adj or LSM label written there lands
in their file instead of the kernel's, silently (runc's CVE-2025-52881), and a value read
there (cap_last_cap) is their answer. So no such file is ever opened by path:

- Files are opened with openat2 relative to a procfs handle with RESOLVE_NO_XDEV (a mount
  anywhere on the path is refused), RESOLVE_NO_SYMLINKS (also no magic links; "self" and
  "thread-self" are read with readlinkat on the handle instead) and RESOLVE_BENEATH, then
  checked with fstatfs to be on a procfs (PROC_SUPER_MAGIC).
- The container init's handle (`use_private`) is a private procfs instance made with
  fsopen/fsmount before any container mount: a detached mount no other process can reach
  or mount over, in the container's PID namespace (so "self" is the init), and there even
  when the config mounts no /proc. Preferred to the container's own /proc with
  RESOLVE_NO_XDEV (the legitimate read-only bind of /proc/sys would refuse every sysctl,
  and a config may mount no /proc) and to the host's /proc kept open past pivot_root (a
  handle on the host's PID namespace is the worse thing to leak). Being unmasked, it
  must not outlive the writes: the init closes it before it reports ready (`close`;
  the exec fifo goes back through the container's own /proc, see `fd_dir`).
- Everywhere else (`create` writing a user namespace's maps, exec's child before it joins
  the container's mount namespace, until its last write) the handle is the /proc of the
  caller's mount namespace, opened once and checked to be the root of a procfs
  (`use_host`).
"""

from __future__ import annotations

import errno
import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc

_RESOLVE = k.RESOLVE_NO_XDEV | k.RESOLVE_NO_SYMLINKS | k.RESOLVE_BENEATH
_PROC_ROOT_INO = 1  # only the root of a procfs has this inode number
_handle = -1  # O_PATH fd of the procfs root in use


def use_private() -> None:
    """In the container init, before the rootfs is built: a private procfs instance (see
    the module's docstring). Where the kernel refuses one (an old kernel, or a user
    namespace whose mount namespace shows no full procfs), the caller's /proc."""
    try:
        fd = sc.fsmount_new("proc", k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV | k.MOUNT_ATTR_NOEXEC)
    except OSError:
        use_host()
        return
    _replace(_checked_root(fd, "a new procfs instance"))


def use_host() -> None:
    """The /proc of the current mount namespace, checked to be a procfs root, from now on
    (exec's child calls this before it joins the container's mount namespace)."""
    _replace(
        _checked_root(
            posix.open("/proc", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC), "/proc"
        )
    )


def _replace(fd: int) -> None:
    global _handle
    if _handle >= 0:
        posix.close(_handle)
    _handle = fd


def _checked_root(fd: int, what: str) -> int:
    try:
        if sc.fstatfs_type(fd) != k.PROC_SUPER_MAGIC or posix.fstat(fd).st_ino != _PROC_ROOT_INO:
            raise OSError(errno.EXDEV, f"{what} is not the root of a procfs")
    except OSError:
        posix.close(fd)
        raise
    return fd


def _root() -> int:
    if _handle < 0:
        use_host()
    return _handle


def _resolve(path: str) -> str:
    """ "self/..." and "thread-self/..." as the handle's procfs names us ("1/...")."""
    head, sep, rest = path.partition("/")
    if head in ("self", "thread-self"):
        return posix.readlink(head, dir_fd=_root()) + sep + rest
    return path


def open_file(path: str, flags: int) -> int:
    """Open `path` (relative to /proc, e.g. "sys/kernel/domainname", "self/oom_score_adj")
    on the trusted procfs; the fd is close-on-exec."""
    fd = sc.openat2(_root(), _resolve(path), flags | posix.O_CLOEXEC, 0, _RESOLVE)
    try:
        if sc.fstatfs_type(fd) != k.PROC_SUPER_MAGIC:
            raise OSError(errno.EXDEV, "not on a procfs", "/proc/" + path)
    except OSError:
        posix.close(fd)
        raise
    return fd


def write(path: str, data: str | bytes) -> None:
    """One write(2) of `data` (procfs files take a value in one write)."""
    fd = open_file(path, posix.O_WRONLY)
    try:
        posix.write(fd, data.encode() if isinstance(data, str) else data)
    finally:
        posix.close(fd)


def read(path: str) -> bytes:
    fd = open_file(path, posix.O_RDONLY)
    try:
        chunks = []
        while chunk := posix.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        posix.close(fd)


def exists(path: str) -> bool:
    try:
        posix.close(open_file(path, posix.O_PATH))
    except FileNotFoundError:
        return False
    return True


def close() -> None:
    """Drop the handle once nothing more is written (see `fd_dir`)."""
    _replace(-1)


def fd_dir() -> int:
    """An O_PATH fd of our fd directory, through which an fd of ours can be reopened by
    its magic link with a plain openat later (the init's exec fifo, after seccomp is
    loaded: openat2 and fstatfs may be filtered by then).

    Taken from the container's own /proc where that is a procfs root (no mount or
    symlink below it, checked as in `open_file`), not from the private instance: the fd
    stays open until execve, and a process `exec` runs in the created container could
    reach whatever it is on through /proc/1/fd (the init is root and dumpable), and the
    private instance has no masks or read-only paths. Without a procfs at /proc the
    container has no /proc/1/fd to reach it by: then the trusted handle's."""
    try:
        proc = _checked_root(
            posix.open("/proc", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC), "/proc"
        )
    except OSError:
        return open_file("self/fd", posix.O_PATH | posix.O_DIRECTORY)
    try:
        pid = posix.readlink("self", dir_fd=proc)
        fd = sc.openat2(
            proc, f"{pid}/fd", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC, 0, _RESOLVE
        )
        if sc.fstatfs_type(fd) != k.PROC_SUPER_MAGIC:
            posix.close(fd)
            raise OSError(errno.EXDEV, "not on a procfs", f"/proc/{pid}/fd")
        return fd
    finally:
        posix.close(proc)
