"""Namespaces from `linux.namespaces`: new ones are unshared, ones with a `path` joined.

PID and time namespaces only take effect for the caller's *children*, so `create` sets
them up around the fork of the init (and then goes back to its own, so that hooks it
runs later stay in the runtime namespace). The others are entered by the init itself.
"""

from __future__ import annotations

import errno
import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import sys

from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.security import procfs

FLAGS = {
    "pid": k.CLONE_NEWPID,
    "network": k.CLONE_NEWNET,
    "mount": k.CLONE_NEWNS,
    "ipc": k.CLONE_NEWIPC,
    "uts": k.CLONE_NEWUTS,
    "user": k.CLONE_NEWUSER,
    "cgroup": k.CLONE_NEWCGROUP,
    "time": k.CLONE_NEWTIME,
}
#: Namespaces a process enters only for its children (setns and unshare of these apply
#: to the children it forks next): `create` around the init's fork, the user-namespace
#: stage before forking the init, exec's intermediate before forking the process.
FOR_CHILDREN = ("pid", "time")
#: setns order for joined namespaces: the mount namespace last, because entering it
#: changes what the other paths resolve to.
_JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "pid", "time", "mount")


def configured(linux: dict) -> dict[str, str | None]:
    """type -> path (None for a new namespace), refusing duplicates and unknown types."""
    result: dict[str, str | None] = {}
    for index, ns in enumerate(linux.get("namespaces") or []):
        kind = ns.get("type")
        if kind not in FLAGS:
            raise field_error(
                pointer("linux", "namespaces", index, "type"), f"unknown type {kind!r}"
            )
        if kind in result:
            raise field_error(
                pointer("linux", "namespaces", index, "type"), f"duplicate namespace {kind!r}"
            )
        result[kind] = ns.get("path") or None
    return result


def _path_error(kind: str, path: str, e: OSError) -> RuntimeFailure:
    """A namespace's path that cannot be opened. configured() keeps no index, so the
    message names the list and the namespace's type."""
    return field_error(pointer("linux", "namespaces"), f"{kind} path {path}: {e.strerror}")


def _open_ns(kind: str, path: str) -> int:
    try:
        return posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError as e:
        raise _path_error(kind, path, e) from None


def _setns(kind: str, path: str, in_parent: bool = False) -> None:
    """Join the namespace at `path`. In the parent (for_children) the cgroup warm-up
    thread may still run; the forked init never has other threads (and must not wait
    for a thread that did not survive the fork)."""
    fd = _open_ns(kind, path)
    try:
        if in_parent:
            _setns_in_parent(fd, FLAGS[kind])
        else:
            sc.setns(fd, FLAGS[kind])
    except OSError as e:
        raise RuntimeFailure(f"joining {kind} namespace {path}: {e.strerror}") from None
    finally:
        posix.close(fd)


class for_children:  # noqa: N801 - used as a `with` statement, like a function
    """While inside, children are born in the configured PID and time namespaces.
    (A class rather than @contextmanager: contextlib costs ~1 ms to import.)"""

    def __init__(self, namespaces: dict[str, str | None], time_offsets: dict | None) -> None:
        self.namespaces, self.time_offsets = namespaces, time_offsets
        self.saved: list[tuple[int, int]] = []

    def __enter__(self) -> None:
        try:
            for kind in FOR_CHILDREN:
                if kind in self.namespaces:
                    self._enter(kind)
        except BaseException:
            self.__exit__()
            raise

    def _enter(self, kind: str) -> None:
        own = posix.open(f"/proc/self/ns/{kind}", posix.O_RDONLY | posix.O_CLOEXEC)
        self.saved.append((own, FLAGS[kind]))
        _enter_for_children(kind, self.namespaces[kind], self.time_offsets, in_parent=True)

    def __exit__(self, *exc: object) -> None:
        for fd, flag in reversed(self.saved):
            _setns_in_parent(fd, flag)
            posix.close(fd)
        self.saved = []


def _enter_for_children(
    kind: str, path: str | None, time_offsets: dict | None, in_parent: bool
) -> None:
    if path:
        _setns(kind, path, in_parent=in_parent)
        return
    try:
        sc.unshare(FLAGS[kind])
    except OSError as e:
        raise RuntimeFailure(f"creating {kind} namespace: {e.strerror}") from None
    if kind == "time" and time_offsets:
        _write_time_offsets(time_offsets)


def enter_for_children_for_good(
    namespaces: dict[str, str | None], time_offsets: dict | None
) -> None:
    """The PID and time namespaces for our future children, in a single-threaded process
    that will not go back (the init's user-namespace stage, userns_stage.py)."""
    for kind in FOR_CHILDREN:
        if kind in namespaces:
            _enter_for_children(kind, namespaces[kind], time_offsets, in_parent=False)


def join_fds(fds: dict[str, int], kinds: tuple[str, ...]) -> None:
    """setns into the container's namespaces open as `fds` (exec's intermediate: the
    init's, opened by exec before it forked), those of `kinds` in that order; each fd is
    closed once used and removed from `fds`. For FOR_CHILDREN kinds, only the children
    forked next are in them, as with `for_children`."""
    for kind in kinds:
        fd = fds.pop(kind, None)
        if fd is None:
            continue
        try:
            sc.setns(fd, FLAGS[kind])
        except OSError as e:
            raise RuntimeFailure(
                f"joining the container's {kind} namespace: {e.strerror}"
            ) from None
        finally:
            posix.close(fd)


def join(namespaces: dict[str, str | None], kinds: tuple[str, ...]) -> None:
    """setns into those of `kinds` that have a path, in `kinds` order."""
    for kind in kinds:
        path = namespaces.get(kind)
        if path:
            _setns(kind, path)


def _setns_in_parent(fd: int, flag: int) -> None:
    """setns in a process that may have create's cgroup warm-up thread. The kernel lets
    only a single-threaded process enter a time namespace (EUSERS otherwise), and that
    thread lives through an RCU grace period (~10-16 ms): for a time namespace, wait for
    its work, then for the thread itself to be gone (microseconds) rather than fail.
    Any other namespace is entered at once: waiting there would hold the fork's parent
    back for the whole grace period."""
    if flag != FLAGS["time"]:
        sc.setns(fd, flag)
        return
    # Only a process that imported the warm-up can have started the thread; exec's
    # stages never do, and may import nothing after their fork (importguard).
    warmup = sys.modules.get("ociruntime.cgroups.warmup")
    if warmup is not None:
        warmup.wait()
    for attempt in range(400):
        try:
            sc.setns(fd, flag)
            return
        except OSError as e:
            if e.errno != errno.EUSERS or attempt == 399:
                raise
            import time  # only on this slow path: the hot path imports nothing it can avoid

            time.sleep(0.005)


def _write_time_offsets(offsets: dict) -> None:
    """linux.timeOffsets: must be written before the first process enters the namespace."""
    lines = []
    for clock, off in offsets.items():
        lines.append(f"{clock} {off.get('secs', 0)} {off.get('nanosecs', 0)}\n")
    try:
        procfs.write("self/timens_offsets", "".join(lines))
    except OSError as e:
        raise field_error(pointer("linux", "timeOffsets"), e.strerror) from None


def enter(namespaces: dict[str, str | None], but: tuple[str, ...] = ()) -> None:
    """In the init: join the namespaces given by path, then unshare the new ones at once
    (all but PID and time, which `for_children` handled, and those in `but`)."""
    skip = ("pid", "time", "user", *but)
    for kind in _JOIN_ORDER:
        path = namespaces.get(kind)
        if path and kind not in skip:
            _setns(kind, path)
    flags = 0
    for kind, path in namespaces.items():
        if path is None and kind not in skip:
            flags |= FLAGS[kind]
    if flags:
        try:
            sc.unshare(flags)
        except OSError as e:
            raise RuntimeFailure(f"creating namespaces: {e.strerror}") from None


#: Sysctls the IPC namespace isolates (runc's list), besides fs.mqueue.*.
_IPC_SYSCTLS = frozenset((
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
))  # fmt: skip


def check_sysctl(linux: dict) -> None:
    """runc's rule for `linux.sysctl`: only keys a namespace of the container's own
    isolates. The init writes them through its /proc/sys, so a `net.*` key without a
    network namespace (or joining the runtime's) or a global one such as vm.swappiness
    would change the host's value."""
    sysctl = linux.get("sysctl") or {}
    if not sysctl:
        return
    ns = configured(linux)
    for key in sysctl:
        at = pointer("linux", "sysctl", key)
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" in ns:
                continue
            raise field_error(at, "not allowed in the host's IPC namespace (/linux/namespaces)")
        if key.startswith("net."):
            if "network" in ns and not _is_own_netns(ns["network"]):
                continue
            raise field_error(at, "not allowed in the host's network namespace (/linux/namespaces)")
        if "uts" in ns and key == "kernel.domainname":
            continue
        if "uts" in ns and key == "kernel.hostname":
            raise field_error(at, "conflicts with the hostname field")
        raise field_error(at, "not isolated by a namespace of the container's own")


def _is_own_netns(path: str | None) -> bool:
    """Is `path` (None: a new namespace) the network namespace this runtime runs in?"""
    if path is None:
        return False
    try:
        theirs, mine = posix.stat(path), posix.stat("/proc/self/ns/net")
    except OSError as e:
        raise _path_error("network", path, e) from None
    return (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino)
