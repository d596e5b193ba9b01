"""A recording fake of the kernel layer (ociruntime.kernel.syscalls), as youki's test
double of its `Syscall` trait: it logs every call the runtime makes through the layer,
with its arguments, and changes nothing in the kernel, so that unit tests can check flags
and orders without root.

Calls that only look (openat2, fstatfs_type) go through to the real kernel by default,
so the runtime's path resolution inside a temporary rootfs still works. Mount targets
given as /proc/self/fd/N (how the runtime names a safely resolved destination) are
recorded as the path the fd resolves to, so a test can compare them with paths it knows.

    @pytest.fixture
    def fake_kernel(monkeypatch):
        return kernelfake.install(monkeypatch)

    def test_x(fake_kernel):
        ...run runtime code...
        assert fake_kernel.calls == [("mount", None, "/", None, MS_SLAVE | MS_REC, None)]
"""

from __future__ import annotations

import errno
import os

from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import AT_FDCWD, SECCOMP_FILTER_FLAG_NEW_LISTENER


def _where(target: str | None) -> str | None:
    if target and target.startswith("/proc/self/fd/"):
        try:
            return os.readlink(target)
        except OSError:
            return target
    return target


class RecordingKernel:
    """Every method of the layer's contract (sc.WRAPPERS), same parameters; `calls` holds
    one tuple (name, *arguments) per call, in order. `fail[name] = errno` makes that call
    raise OSError(errno) (after recording it)."""

    def __init__(self, real: dict | None = None) -> None:
        #: the real layer's functions, for the calls that only look
        self.real = real or {name: getattr(sc, name) for name in sc.WRAPPERS}
        self.calls: list[tuple] = []
        self.fail: dict[str, int] = {}
        self.next_fd = 1000
        self.bounding: set[int] = set(range(64))  # capbset_read answers from here
        self.keyring_description = b"keyring;0;0;3f010000;_ses.test"

    def _record(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        err = self.fail.get(name)
        if err:
            raise OSError(err, f"{name}: {os.strerror(err)}")

    def _fd(self) -> int:
        self.next_fd += 1
        return self.next_fd

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def only(self, *names: str) -> list[tuple]:
        return [call for call in self.calls if call[0] in names]

    # mounts and the root
    def mount(self, source, target, fstype, flags=0, data=None) -> None:
        self._record("mount", source, _where(target), fstype, flags, data)
        if not os.path.exists(target):  # as the kernel: nothing to mount on
            raise FileNotFoundError(errno.ENOENT, f"mount: {os.strerror(errno.ENOENT)}", target)

    def umount2(self, target, flags=0) -> None:
        self._record("umount2", _where(target), flags)

    def pivot_root(self, new_root, put_old) -> None:
        self._record("pivot_root", new_root, put_old)

    def openat2(self, dirfd, path, flags, mode=0, resolve=0) -> int:
        self.calls.append(("openat2", path, resolve))
        return self.real["openat2"](dirfd, path, flags, mode, resolve)

    def mount_setattr(self, fd, attr_set, attr_clr, recursive=True, userns_fd=0) -> None:
        self._record("mount_setattr", _where(sc.fd_path(fd)), attr_set, attr_clr, recursive,
                     userns_fd)  # fmt: skip

    def open_tree(self, path, recursive, dirfd=AT_FDCWD) -> int:
        self._record("open_tree", path, recursive)
        return self._fd()

    def move_mount(self, tree_fd, target_fd) -> None:
        self._record("move_mount", tree_fd, _where(sc.fd_path(target_fd)))

    def fsmount_new(self, fstype, attrs) -> int:
        self._record("fsmount_new", fstype, attrs)
        return self._fd()

    def fstatfs_type(self, fd) -> int:
        return self.real["fstatfs_type"](fd)

    # namespaces and names
    def unshare(self, flags) -> None:
        self._record("unshare", flags)

    def setns(self, fd, nstype=0) -> None:
        self._record("setns", _where(sc.fd_path(fd)), nstype)

    def sethostname(self, name) -> None:
        self._record("sethostname", name)

    def setdomainname(self, name) -> None:
        self._record("setdomainname", name)

    # process attributes
    def set_parent_death_signal(self, signum) -> None:
        self._record("set_parent_death_signal", signum)

    def set_child_subreaper(self) -> None:
        self._record("set_child_subreaper")

    def set_dumpable(self, dumpable) -> None:
        self._record("set_dumpable", dumpable)

    def pidfd_getfd(self, pidfd, target_fd) -> int:
        self._record("pidfd_getfd", pidfd, target_fd)
        return self._fd()

    def keyctl_join_session_keyring(self, name) -> int:
        self._record("keyctl_join_session_keyring", name)
        return 4242

    def keyctl_describe(self, serial) -> bytes:
        self._record("keyctl_describe", serial)
        return self.keyring_description

    def keyctl_setperm(self, serial, perm) -> None:
        self._record("keyctl_setperm", serial, perm)

    def personality(self, persona) -> None:
        self._record("personality", persona)

    def sched_setattr(self, attr) -> None:
        self._record("sched_setattr", attr.policy, attr.flags, attr.nice, attr.priority)

    def ioprio_set(self, value) -> None:
        self._record("ioprio_set", value)

    def set_mempolicy(self, mode, nodes) -> None:
        self._record("set_mempolicy", mode, list(nodes))

    def bpf(self, cmd, attr) -> int:
        self._record("bpf", cmd, bytes(attr))
        return self._fd()

    def seccomp_set_mode_filter(self, flags, program) -> int:
        self._record("seccomp_set_mode_filter", flags, len(program) // 8)
        return self._fd() if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1

    # capabilities and the user switch
    def capbset_read(self, cap) -> bool:
        return cap in self.bounding

    def capbset_drop(self, cap) -> None:
        self._record("capbset_drop", cap)
        self.bounding.discard(cap)

    def set_keepcaps(self, keep) -> None:
        self._record("set_keepcaps", keep)

    def set_no_new_privs(self) -> None:
        self._record("set_no_new_privs")

    def set_capabilities(self, effective, permitted, inheritable, last_cap) -> None:
        self._record("set_capabilities", set(effective), set(permitted), set(inheritable),
                     last_cap)  # fmt: skip

    def ambient_clear_all(self) -> None:
        self._record("ambient_clear_all")

    def ambient_raise(self, cap) -> None:
        self._record("ambient_raise", cap)

    def setgroups(self, groups) -> None:
        self._record("setgroups", list(groups))

    def setgid(self, gid) -> None:
        self._record("setgid", gid)

    def setuid(self, uid) -> None:
        self._record("setuid", uid)

    def setrlimit(self, resource, soft, hard) -> None:
        self._record("setrlimit", resource, soft, hard)


def install(monkeypatch) -> RecordingKernel:
    """Replace every wrapper of the kernel layer with a RecordingKernel's until the test
    ends (`monkeypatch`: pytest's fixture); a test module makes its fixture with it."""
    fake = RecordingKernel()
    for name in sc.WRAPPERS:
        monkeypatch.setattr(sc, name, getattr(fake, name))
    return fake
