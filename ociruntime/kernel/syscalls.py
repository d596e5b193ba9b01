"""The syscall layer: thin wrappers over the Linux system calls the runtime makes that
Python's `os` module lacks (3.11), or whose order matters enough to be checked in tests.
They are made through `_syscall.syscall` (kernel/_syscall.c: syscall(2) with int, str and
buffer arguments), not ctypes, whose import alone cost ~1.3 ms on every create and exec.

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

import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import sys

from ociruntime.kernel import _syscall
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
    PR_SET_DUMPABLE,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_SET_MODE_FILTER,
)
from ociruntime.kernel.numbers import (
    SYS_BPF,
    SYS_CAPSET,
    SYS_FSCONFIG,
    SYS_FSMOUNT,
    SYS_FSOPEN,
    SYS_FSTATFS,
    SYS_IOPRIO_SET,
    SYS_KEYCTL,
    SYS_MOUNT,
    SYS_MOUNT_SETATTR,
    SYS_MOVE_MOUNT,
    SYS_OPEN_TREE,
    SYS_OPENAT2,
    SYS_PERSONALITY,
    SYS_PIDFD_GETFD,
    SYS_PIVOT_ROOT,
    SYS_PRCTL,
    SYS_PRLIMIT64,
    SYS_SCHED_SETATTR,
    SYS_SECCOMP,
    SYS_SET_MEMPOLICY,
    SYS_SETDOMAINNAME,
    SYS_SETHOSTNAME,
    SYS_SETNS,
    SYS_UMOUNT2,
    SYS_UNSHARE,
)

#: The layer's contract: every system call the runtime makes through it. A fake must
#: provide each (tests/test_kernel_layer.py checks both lists agree).
WRAPPERS = (
    "mount", "umount2", "pivot_root", "unshare", "setns", "sethostname", "setdomainname",
    "openat2", "mount_setattr", "open_tree", "move_mount", "fsmount_new", "fstatfs_type",
    "set_parent_death_signal", "set_child_subreaper", "set_dumpable", "pidfd_getfd",
    "keyctl_join_session_keyring", "keyctl_describe", "keyctl_setperm",
    "personality", "sched_setattr", "ioprio_set", "set_mempolicy", "bpf", "seccomp_set_mode_filter",
    "capbset_read", "capbset_drop", "set_keepcaps", "set_no_new_privs",
    "set_capabilities", "ambient_clear_all", "ambient_raise",
    "setgroups", "setgid", "setuid", "setrlimit",
)  # fmt: skip

_ORDER = sys.byteorder


def _call(what: str, nr: int, *args: object, path: str | None = None) -> int:
    """syscall(2); a failure raises OSError naming `what` (and `path`)."""
    try:
        return _syscall.syscall(nr, *args)
    except OSError as e:
        raise OSError(e.errno, f"{what}: {posix.strerror(e.errno)}", path) from None


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2); `target` may be a /proc/self/fd/N path of an fd resolved safely."""
    _call("mount", SYS_MOUNT, source, target, fstype, flags, data, path=target)


def umount2(target: str, flags: int = 0) -> None:
    _call("umount2", SYS_UMOUNT2, target, flags, path=target)


def pivot_root(new_root: str, put_old: str) -> None:
    _call("pivot_root", SYS_PIVOT_ROOT, new_root, put_old, path=new_root)


def unshare(flags: int) -> None:
    _call("unshare", SYS_UNSHARE, flags)


def setns(fd: int, nstype: int = 0) -> None:
    _call("setns", SYS_SETNS, fd, nstype)


def sethostname(name: str) -> None:
    raw = name.encode()
    _call("sethostname", SYS_SETHOSTNAME, raw, len(raw))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _call("setdomainname", SYS_SETDOMAINNAME, raw, len(raw))


def _u64s(*values: int) -> bytes:
    """A struct of __u64 fields (struct open_how, struct mount_attr)."""
    return b"".join(v.to_bytes(8, _ORDER) for v in values)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): the kernel resolves `path` with `resolve` rules (e.g. RESOLVE_IN_ROOT)."""
    how = _u64s(flags | posix.O_CLOEXEC, mode, resolve)  # struct open_how
    return _call("openat2", SYS_OPENAT2, dirfd, path, how, len(how), path=path)


def mount_setattr(
    fd: int, attr_set: int, attr_clr: int, recursive: bool = True, userns_fd: int = 0
) -> None:
    """mount_setattr(2) on the mount `fd` refers to: the only way to make bind mounts
    recursively read-only (rro) and the like, or id-mapped (MOUNT_ATTR_IDMAP + userns_fd)."""
    attr = _u64s(attr_set, attr_clr, 0, userns_fd)  # struct mount_attr
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _call("mount_setattr", SYS_MOUNT_SETATTR, fd, b"\0", flags, attr, len(attr))


def open_tree(path: str, recursive: bool, dirfd: int = AT_FDCWD) -> int:
    """A detached copy of the mount tree at `path` (OPEN_TREE_CLONE), close-on-exec. With
    `path` "" it is the file `dirfd` refers to (AT_EMPTY_PATH): a bind by fd alone."""
    flags = OPEN_TREE_CLONE | posix.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    flags |= AT_EMPTY_PATH if not path else 0
    return _call("open_tree", SYS_OPEN_TREE, dirfd, path, flags, path=path)


def move_mount(tree_fd: int, target_fd: int) -> None:
    """Attach the detached tree `tree_fd` on what `target_fd` (an O_PATH fd) refers to."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
    _call("move_mount", SYS_MOVE_MOUNT, tree_fd, b"\0", target_fd, b"\0", flags)


def fsmount_new(fstype: str, attrs: int) -> int:
    """A new, detached instance of `fstype` (fsopen + fsconfig(CREATE) + fsmount): an fd
    of its root that no other process can reach or mount over. Close-on-exec."""
    fs_fd = _call("fsopen", SYS_FSOPEN, fstype, FSOPEN_CLOEXEC, path=fstype)
    try:
        _call("fsconfig", SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0, path=fstype)
        return _call("fsmount", SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, attrs, path=fstype)
    finally:
        posix.close(fs_fd)


def fstatfs_type(fd: int) -> int:
    """The filesystem magic (statfs f_type) of what `fd` refers to; posix.fstatvfs lacks it."""
    buf = bytearray(120)  # struct statfs: f_type is its first field, a long
    _call("fstatfs", SYS_FSTATFS, fd, buf)
    return int.from_bytes(buf[:8], _ORDER, signed=True)


def _prctl(what: str, option: int, arg2: int = 0, arg3: int = 0) -> int:
    return _call(what, SYS_PRCTL, option, arg2, arg3, 0, 0)


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): `signum` when the thread that forked us exits (0: none)."""
    _prctl("prctl(PR_SET_PDEATHSIG)", PR_SET_PDEATHSIG, signum)


def set_child_subreaper() -> None:
    """Orphaned descendants become our children (so `run` can wait for a container init
    that was forked by an intermediate process, as with user namespaces)."""
    _prctl("prctl(PR_SET_CHILD_SUBREAPER)", PR_SET_CHILD_SUBREAPER, 1)


def set_dumpable(dumpable: bool) -> None:
    """prctl(PR_SET_DUMPABLE): who may open /proc/<pid>/* of this process (see
    security/containersafe.py)."""
    _prctl("prctl(PR_SET_DUMPABLE)", PR_SET_DUMPABLE, 1 if dumpable else 0)


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """pidfd_getfd(2): a close-on-exec copy of another process's fd `target_fd` (needs
    ptrace access to it: the runtime is root over its containers)."""
    return _call("pidfd_getfd", SYS_PIDFD_GETFD, pidfd, target_fd, 0)


def fd_path(fd: int) -> str:
    """The magic-link path through which a mount(2) can target what `fd` resolved to."""
    return f"/proc/self/fd/{fd}"


def keyctl_join_session_keyring(name: str) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): join (or create) the keyring `name`."""
    return _call("keyctl(KEYCTL_JOIN_SESSION_KEYRING)", SYS_KEYCTL,
                 KEYCTL_JOIN_SESSION_KEYRING, name.encode())  # fmt: skip


def keyctl_describe(serial: int) -> bytes:
    """keyctl(KEYCTL_DESCRIBE): b"type;uid;gid;perm;description"."""
    buf = bytearray(512)
    _call("keyctl(KEYCTL_DESCRIBE)", SYS_KEYCTL, KEYCTL_DESCRIBE, serial, buf, len(buf))
    return bytes(buf.split(b"\0", 1)[0])


def keyctl_setperm(serial: int, perm: int) -> None:
    _call("keyctl(KEYCTL_SETPERM)", SYS_KEYCTL, KEYCTL_SETPERM, serial, perm)


def personality(persona: int) -> None:
    _call("personality", SYS_PERSONALITY, persona)


def sched_setattr(attr: object) -> None:
    """sched_setattr(2) of the calling thread (`attr`: a struct sched_attr, as a buffer)."""
    _call("sched_setattr", SYS_SCHED_SETATTR, 0, attr, 0)


def ioprio_set(value: int) -> None:
    """ioprio_set(2) of the calling process."""
    _call("ioprio_set", SYS_IOPRIO_SET, IOPRIO_WHO_PROCESS, 0, value)


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    """set_mempolicy(2) of the calling thread: `mode` with its MPOL_F_* flags, `nodes` the
    node numbers of the mask (unsigned longs). The kernel reads maxnode - 1 bits
    (get_nodes decrements it first), so maxnode is one more than the highest bit the
    mask holds."""
    bits = 64
    words = (max(nodes, default=0) // bits) + 1
    mask = 0
    for node in nodes:
        mask |= 1 << node
    raw = mask.to_bytes(words * 8, "little")  # word i holds nodes 64i..64i+63
    if _ORDER == "big":
        raw = b"".join(raw[i : i + 8][::-1] for i in range(0, len(raw), 8))
    maxnode = words * bits + 1 if nodes else 0
    _call("set_mempolicy", SYS_SET_MEMPOLICY, mode, raw if nodes else None, maxnode)


def bpf(cmd: int, attr: object) -> int:
    """bpf(2) with the union bpf_attr in `attr` (a buffer)."""
    try:
        return _syscall.syscall(SYS_BPF, cmd, attr, len(attr))  # type: ignore[arg-type]
    except OSError as e:
        raise OSError(e.errno, posix.strerror(e.errno)) from None


def seccomp_set_mode_filter(flags: int, program: bytes) -> int:
    """seccomp(2) SECCOMP_SET_MODE_FILTER of `program` (struct sock_filter instructions,
    8 bytes each) with `flags`: the notify fd with SECCOMP_FILTER_FLAG_NEW_LISTENER,
    else -1."""
    try:
        result = _syscall.syscall_fprog(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, program)
    except OSError as e:
        raise OSError(e.errno, f"seccomp: {posix.strerror(e.errno)}") from None
    return int(result) if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1


def capbset_read(cap: int) -> bool:
    """Whether `cap` is in the bounding set."""
    return _prctl("prctl(PR_CAPBSET_READ)", PR_CAPBSET_READ, cap) == 1


def capbset_drop(cap: int) -> None:
    _prctl("prctl(PR_CAPBSET_DROP)", PR_CAPBSET_DROP, cap)


def set_keepcaps(keep: bool) -> None:
    """prctl(PR_SET_KEEPCAPS): keep the permitted set over a setuid away from root."""
    _prctl("prctl(PR_SET_KEEPCAPS)", PR_SET_KEEPCAPS, 1 if keep else 0)


def set_no_new_privs() -> None:
    _prctl("prctl(PR_SET_NO_NEW_PRIVS)", PR_SET_NO_NEW_PRIVS, 1)


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def set_capabilities(effective: set[int], permitted: set[int], inheritable: set[int],
                     last_cap: int) -> None:  # fmt: skip
    """capset(2): exactly these effective, permitted and inheritable sets (version 3:
    two 32-bit words per set). `last_cap` bounds the sets (capabilities above it do not
    exist on this kernel)."""
    header = _LINUX_CAPABILITY_VERSION_3.to_bytes(4, _ORDER) + (0).to_bytes(4, _ORDER)
    masks = []
    for caps in (effective, permitted, inheritable):
        mask = 0
        for cap in caps:
            if cap <= last_cap:
                mask |= 1 << cap
        masks.append(mask)
    data = b"".join(  # struct __user_cap_data_struct[2]: low words, then high words
        b"".join((m >> shift & 0xFFFFFFFF).to_bytes(4, _ORDER) for m in masks) for shift in (0, 32)
    )
    _call("capset", SYS_CAPSET, header, data)


def ambient_clear_all() -> None:
    """prctl(PR_CAP_AMBIENT_CLEAR_ALL); its result is not checked (a kernel without
    ambient capabilities has none to clear)."""
    try:
        _syscall.syscall(SYS_PRCTL, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    except OSError:
        pass


def ambient_raise(cap: int) -> None:
    try:
        _syscall.syscall(SYS_PRCTL, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    except OSError as e:
        reason = posix.strerror(e.errno)
        raise OSError(e.errno, f"raising ambient capability {cap}: {reason}") from None


# The user switch: os's own calls, here so that their order is seen by a fake.
def setgroups(groups: list[int]) -> None:
    posix.setgroups(groups)


def setgid(gid: int) -> None:
    posix.setgid(gid)


def setuid(uid: int) -> None:
    posix.setuid(uid)


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit64(2) on ourselves (the `resource` module would be one more shared object to
    load and for the init to detach from). struct rlimit64: two __u64, RLIM64_INFINITY
    their maximum; a value outside them raises OverflowError."""
    _call("prlimit64", SYS_PRLIMIT64, 0, resource, _u64s(soft, hard), None)
