"""The syscall layer: thin wrappers over the Linux system calls the runtime makes that
Python's `os` module lacks (3.11), or whose order matters enough to be checked in tests.

Every wrapper raises `OSError` with errno and the path/operation it failed on, so callers
can turn kernel refusals into one clear line. Nothing here decides policy. Numbers come
from `kernel.numbers` (per architecture), flags from `kernel.constants`.

Callers use `from ociruntime.kernel import syscalls as sc` and call `sc.mount(...)`, never
`from ... import mount`: the attribute is looked up at each call, so a test can replace
every name in `WRAPPERS` with a recording fake (tests/kernelfake.py, as youki's `Syscall`
trait and its test double) and check which calls the runtime makes, in which order, with
which flags, without root.
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.kernel.constants import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_RECURSIVE,
    FSCONFIG_CMD_CREATE,
    FSMOUNT_CLOEXEC,
    FSOPEN_CLOEXEC,
    IOPRIO_WHO_PROCESS,
    KEYCTL_DESCRIBE,
    KEYCTL_JOIN_SESSION_KEYRING,
    KEYCTL_SETPERM,
    MOVE_MOUNT_F_EMPTY_PATH,
    MOVE_MOUNT_T_EMPTY_PATH,
    OPEN_TREE_CLONE,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_SET_MODE_FILTER,
)
from ociruntime.kernel.numbers import (
    SYS_BPF,
    SYS_FSCONFIG,
    SYS_FSMOUNT,
    SYS_FSOPEN,
    SYS_IOPRIO_SET,
    SYS_KEYCTL,
    SYS_MOUNT_SETATTR,
    SYS_MOVE_MOUNT,
    SYS_OPEN_TREE,
    SYS_OPENAT2,
    SYS_PIDFD_GETFD,
    SYS_PIVOT_ROOT,
    SYS_SCHED_SETATTR,
    SYS_SECCOMP,
    SYS_SET_MEMPOLICY,
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.personality.restype = ctypes.c_int
_libc.personality.argtypes = (ctypes.c_ulong,)

#: The layer's contract: every system call the runtime makes through it. A fake must
#: provide each (tests/test_kernel_layer.py checks both lists agree).
WRAPPERS = (
    "mount", "umount2", "pivot_root", "unshare", "setns", "sethostname", "setdomainname",
    "openat2", "mount_setattr", "open_tree", "move_mount", "fsmount_new", "fstatfs_type",
    "set_parent_death_signal", "set_child_subreaper", "pidfd_getfd",
    "keyctl_join_session_keyring", "keyctl_describe", "keyctl_setperm",
    "personality", "sched_setattr", "ioprio_set", "set_mempolicy", "bpf", "seccomp_set_mode_filter",
    "capbset_read", "capbset_drop", "set_keepcaps", "set_no_new_privs",
    "set_capabilities", "ambient_clear_all", "ambient_raise",
    "setgroups", "setgid", "setuid",
)  # fmt: skip


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
    """struct mount_attr: four __u64."""

    _fields_ = [
        (name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")
    ]


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


def keyctl_join_session_keyring(name: str) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): join (or create) the keyring `name`."""
    return _check(_libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, name.encode()),
                  "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")  # fmt: skip


def keyctl_describe(serial: int) -> bytes:
    """keyctl(KEYCTL_DESCRIBE): b"type;uid;gid;perm;description"."""
    buf = ctypes.create_string_buffer(512)
    _check(_libc.syscall(SYS_KEYCTL, KEYCTL_DESCRIBE, serial, buf, len(buf)),
           "keyctl(KEYCTL_DESCRIBE)")  # fmt: skip
    return buf.value


def keyctl_setperm(serial: int, perm: int) -> None:
    _check(_libc.syscall(SYS_KEYCTL, KEYCTL_SETPERM, serial, perm), "keyctl(KEYCTL_SETPERM)")


def personality(persona: int) -> None:
    if _libc.personality(persona) == -1:
        _check(-1, "personality")


def sched_setattr(attr: ctypes.Structure) -> None:
    """sched_setattr(2) of the calling thread (`attr`: a struct sched_attr)."""
    _check(_libc.syscall(SYS_SCHED_SETATTR, 0, ctypes.byref(attr), 0), "sched_setattr")


def ioprio_set(value: int) -> None:
    """ioprio_set(2) of the calling process."""
    _check(_libc.syscall(SYS_IOPRIO_SET, IOPRIO_WHO_PROCESS, 0, value), "ioprio_set")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    """set_mempolicy(2) of the calling thread: `mode` with its MPOL_F_* flags, `nodes` the
    node numbers of the mask. The kernel reads maxnode - 1 bits (get_nodes decrements it
    first), so maxnode is one more than the highest bit the mask holds."""
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = (max(nodes, default=0) // bits) + 1
    mask = (ctypes.c_ulong * words)()
    for node in nodes:
        mask[node // bits] |= 1 << (node % bits)
    maxnode = ctypes.c_ulong(words * bits + 1 if nodes else 0)
    result = _libc.syscall(SYS_SET_MEMPOLICY, mode, mask if nodes else None, maxnode)
    _check(result, "set_mempolicy")


def bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(2) with the union bpf_attr in `attr` (a ctypes buffer)."""
    result = _libc.syscall(
        ctypes.c_long(SYS_BPF), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr))
    )
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


def seccomp_set_mode_filter(flags: int, fprog: ctypes.Structure) -> int:
    """seccomp(2) SECCOMP_SET_MODE_FILTER of `fprog` (a struct sock_fprog) with `flags`:
    the notify fd with SECCOMP_FILTER_FLAG_NEW_LISTENER, else -1."""
    result = _check(
        _libc.syscall(
            ctypes.c_long(SYS_SECCOMP), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
            ctypes.c_uint(flags), ctypes.byref(fprog),
        ),
        "seccomp",
    )  # fmt: skip
    return int(result) if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1


def _prctl(option: int, arg2: int, what: str) -> int:
    return _check(_libc.prctl(option, arg2, 0, 0, 0), what)


def capbset_read(cap: int) -> bool:
    """Whether `cap` is in the bounding set."""
    return _prctl(PR_CAPBSET_READ, cap, "prctl(PR_CAPBSET_READ)") == 1


def capbset_drop(cap: int) -> None:
    _prctl(PR_CAPBSET_DROP, cap, "prctl(PR_CAPBSET_DROP)")


def set_keepcaps(keep: bool) -> None:
    """prctl(PR_SET_KEEPCAPS): keep the permitted set over a setuid away from root."""
    _prctl(PR_SET_KEEPCAPS, 1 if keep else 0, "prctl(PR_SET_KEEPCAPS)")


def set_no_new_privs() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")


def set_capabilities(effective: set[int], permitted: set[int], inheritable: set[int],
                     last_cap: int) -> None:  # fmt: skip
    """capset(2): exactly these effective, permitted and inheritable sets (python-prctl,
    which ociruntime.process.settings imports before any fork: nothing is imported here)."""
    import prctl

    everything = set(range(last_cap + 1))
    prctl.set_caps(
        (list(effective), prctl.CAP_EFFECTIVE, True),
        (list(everything - effective), prctl.CAP_EFFECTIVE, False),
        (list(permitted), prctl.CAP_PERMITTED, True),
        (list(everything - permitted), prctl.CAP_PERMITTED, False),
        (list(inheritable), prctl.CAP_INHERITABLE, True),
        (list(everything - inheritable), prctl.CAP_INHERITABLE, False),
    )


def ambient_clear_all() -> None:
    """prctl(PR_CAP_AMBIENT_CLEAR_ALL); its result is not checked (as before: a kernel
    without ambient capabilities has none to clear)."""
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def ambient_raise(cap: int) -> None:
    if _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"raising ambient capability {cap}: {os.strerror(err)}")


# The user switch: os's own calls, here so that their order is seen by a fake.
def setgroups(groups: list[int]) -> None:
    os.setgroups(groups)


def setgid(gid: int) -> None:
    os.setgid(gid)


def setuid(uid: int) -> None:
    os.setuid(uid)
