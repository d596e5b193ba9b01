"""Thin, typed wrappers over the Linux system calls Python's `os` module lacks (3.11).

Every wrapper raises `OSError` with errno and the path/operation it failed on, so callers
can turn kernel refusals into one clear line. Nothing here decides policy.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 syscall numbers for calls glibc 2.36 has no wrapper for.
SYS_PIVOT_ROOT = 155
SYS_OPENAT2 = 437
SYS_PIDFD_GETFD = 438
SYS_MOUNT_SETATTR = 442
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

# Namespace clone flags (linux/sched.h).
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MNT_DETACH = 2
AT_FDCWD = -100

# openat2 resolve flags (linux/openat2.h).
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

PROC_SUPER_MAGIC = 0x9FA0  # statfs f_type of a procfs (linux/magic.h)


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2); `target` may be a /proc/self/fd/N path of an fd resolved safely."""
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
        "mount",
        target,
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", new_root)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): the kernel resolves `path` with `resolve` rules (e.g. RESOLVE_IN_ROOT)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(
        SYS_OPENAT2, dirfd, _b(path), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
    )
    return _check(fd, "openat2", path)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000


MOUNT_ATTR_IDMAP = 0x00100000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40


def mount_setattr(
    fd: int, attr_set: int, attr_clr: int, recursive: bool = True, userns_fd: int = 0
) -> None:
    """mount_setattr(2) on the mount `fd` refers to: the only way to make bind mounts
    recursively read-only (rro) and the like, or id-mapped (MOUNT_ATTR_IDMAP + userns_fd)."""
    attr = _MountAttr(attr_set, attr_clr, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(
        _libc.syscall(
            SYS_MOUNT_SETATTR,
            fd,
            b"",
            flags,
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )


def open_tree(path: str, recursive: bool, dirfd: int = AT_FDCWD) -> int:
    """A detached copy of the mount tree at `path` (OPEN_TREE_CLONE), close-on-exec. With
    `path` "" it is the file `dirfd` refers to (AT_EMPTY_PATH): a bind by fd alone."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    flags |= AT_EMPTY_PATH if not path else 0
    return _check(_libc.syscall(SYS_OPEN_TREE, dirfd, _b(path), flags), "open_tree", path)


def move_mount(tree_fd: int, target_fd: int) -> None:
    """Attach the detached tree `tree_fd` on what `target_fd` (an O_PATH fd) refers to."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
    _check(_libc.syscall(SYS_MOVE_MOUNT, tree_fd, b"", target_fd, b"", flags), "move_mount")


FSOPEN_CLOEXEC = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_NOSUID = 0x02
MOUNT_ATTR_NODEV = 0x04
MOUNT_ATTR_NOEXEC = 0x08


def fsmount_new(fstype: str, attrs: int) -> int:
    """A new, detached instance of `fstype` (fsopen + fsconfig(CREATE) + fsmount): an fd
    of its root that no other process can reach or mount over. Close-on-exec."""
    fs_fd = _check(_libc.syscall(SYS_FSOPEN, _b(fstype), FSOPEN_CLOEXEC), "fsopen", fstype)
    try:
        _check(_libc.syscall(SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0),
               "fsconfig", fstype)  # fmt: skip
        return _check(_libc.syscall(SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, attrs), "fsmount", fstype)
    finally:
        os.close(fs_fd)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]


def fstatfs_type(fd: int) -> int:
    """The filesystem magic (statfs f_type) of what `fd` refers to; os.fstatvfs lacks it."""
    buf = _StatFs()
    _check(_libc.fstatfs(fd, ctypes.byref(buf)), "fstatfs")
    return buf.f_type


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): `signum` when the thread that forked us exits (0: none)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def set_child_subreaper() -> None:
    """Orphaned descendants become our children (so `run` can wait for a container init
    that was forked by an intermediate process, as with user namespaces)."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """pidfd_getfd(2): a close-on-exec copy of another process's fd `target_fd` (needs
    ptrace access to it: the runtime is root over its containers)."""
    return _check(_libc.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0), "pidfd_getfd")


def fd_path(fd: int) -> str:
    """The magic-link path through which a mount(2) can target what `fd` resolved to."""
    return f"/proc/self/fd/{fd}"
