"""Building the container's filesystem view inside its new mount namespace.

The order is the spec's and runc's: stop mount events from leaking to the host, bind the
rootfs onto itself, do `mounts` in order, populate /dev, let createRuntime/createContainer
hooks run, pivot_root, then remount read-only the /dev and tmpfs entries that asked for it
(readonly_last: later steps write into them), mask and write-protect paths and apply
rootfsPropagation. Every destination is resolved inside the rootfs by the kernel (see
safepath). A failed entry is named in runc's words: which source, to which destination,
of which type (mounting).
"""

from __future__ import annotations

import errno
import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import stat

from ociruntime import pathlite
from ociruntime.cgroups.cgroupfs import Hierarchy
from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import (
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_UNBINDABLE,
)
from ociruntime.rootfs.mountopts import MountOptions, parse_mount_options
from ociruntime.rootfs.safepath import (
    bind_fd,
    bind_target,
    ensure_dir,
    ensure_file,
    open_in_root,
    open_null_device,
    parent_and_name,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

# statvfs f_flag bits that share their value with the MS_* flag of the same meaning.
_PRESERVED_STATVFS_FLAGS = 0x1 | 0x2 | 0x4 | 0x8 | 0x400 | 0x800 | 0x1000

PROPAGATION = {
    "shared": MS_SHARED,
    "slave": MS_SLAVE,
    "private": MS_PRIVATE,
    "unbindable": MS_UNBINDABLE,
}

#: (path, major, minor) of the devices every container gets (runtime-spec "Default Devices").
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


#: Filesystems that get no context= option for linux.mountLabel (runc 1.1.5's choice:
#: proc and sysfs keep their own labels, mqueue is labelled after mounting, binds keep
#: their source's). Every other filesystem a container mounts is labelled.
_UNLABELLED = frozenset({"proc", "sysfs", "mqueue", "cgroup2", "bind"})


#: runc's checkProcMount allow-list (libcontainer/rootfs_linux.go): the files lxcfs
#: emulates are the only mount destinations under /proc. Anything else there could
#: redirect what the runtime (or the kernel's users) read and write in /proc.
PROC_ALLOWED = frozenset(
    (
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
        "/proc/sys/crypto/fips_enabled",
    )
)


def readonly_last(m: dict) -> bool:
    """Whether a read-only `mounts` entry is mounted read-write and turned read-only only
    at the end (remount_readonly_last), runc's rule (mountPropagate, finalizeRootfs): /dev
    is filled after its mount (device nodes, /dev/pts and the later mountpoints in it, the
    symlinks, the hooks' nodes, the console), and a tmpfs is where later mountpoints are
    made. Mounted read-only at once, every one of those steps would fail (EROFS)."""
    if m.get("type") == "tmpfs":
        return True
    return pathlite.normpath("/" + (m.get("destination") or "").lstrip("/")) == "/dev"


def _entry_options(m: dict) -> MountOptions:
    """The entry's options, without `ro` where that comes last (readonly_last)."""
    opts = parse_mount_options(m.get("options") or [])
    if not opts.flags & MS_RDONLY or not readonly_last(m):
        return opts
    values = {name: getattr(opts, name) for name in MountOptions.FIELDS}
    return MountOptions(**dict(values, flags=opts.flags & ~MS_RDONLY))


def mounting(m: dict) -> str:
    """What a failed `mounts` entry was doing, in runc's words (`error mounting "<source>"
    to rootfs at "<destination>"`, which engines match) and with its type: which source
    went where, not only the entry's index."""
    what = f'error mounting "{m.get("source") or ""}" to rootfs at "{m.get("destination")}"'
    return f"{what} (type {m['type']})" if m.get("type") else what


class ProcMountRefused(RuntimeFailure):
    """A mounts entry over /proc; its message names the field already."""


def proc_refusal(resolved: str, is_procfs: Callable[[], bool]) -> str | None:
    """Why nothing may be mounted at `resolved` (a clean absolute path in the rootfs), or
    None. /proc itself takes a proc mount or a bind of a procfs (runc's rule)."""
    if resolved == "/proc":
        if is_procfs():
            return None
        return "only a proc mount or a bind of a procfs may be mounted on /proc: not a procfs"
    if resolved.startswith("/proc/") and resolved not in PROC_ALLOWED:
        return "mounting over /proc is not allowed"
    return None


def _is_procfs_path(path: str) -> bool:
    try:
        fd = posix.open(path, posix.O_PATH | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        return sc.fstatfs_type(fd) == k.PROC_SUPER_MAGIC
    finally:
        posix.close(fd)


def _fail(what: str, err: OSError) -> RuntimeFailure:
    return RuntimeFailure(f"{what}: {err.strerror or err}")


def _field_fail(where: str, subject: str, err: OSError) -> RuntimeFailure:
    """An OSError while doing what config.json's field at `where` asks, on `subject`."""
    return field_error(where, f"{subject}: {err.strerror or err}")


def _labelled(data: str | None, label: str) -> str | None:
    """Mount data with linux.mountLabel as SELinux's context= option (quoted: a label
    holds commas). Without SELinux the kernel refuses the option, as it does for runc."""
    if not label:
        return data
    option = f'context="{label}"'
    return f"{data},{option}" if data else option


def _label_error(what: str, label: str, err: OSError) -> RuntimeFailure:
    return RuntimeFailure(
        f"{what} with /linux/mountLabel {label!r} (context= option): {err.strerror or err}"
    )


def rootfs_propagation(linux: dict) -> int:
    """The flag for `linux.rootfsPropagation` (r-prefixed names are recursive)."""
    name = linux.get("rootfsPropagation") or ""
    if not name:
        return 0
    base = PROPAGATION.get(name) or PROPAGATION.get(name.removeprefix("r"))
    if base is None:
        raise field_error(pointer("linux", "rootfsPropagation"), f"unknown value {name!r}")
    return base | (MS_REC if name not in PROPAGATION else 0)


def isolate_root(rootfs: str, propagation: int) -> None:
    """Make / a slave (or the configured propagation) so nothing the container mounts
    reaches the host, then bind the rootfs to itself so it is a mount point pivot_root
    accepts."""
    # An unbindable / would forbid the bind below: it is applied to the new root once
    # that is in place (finish_root), like every rootfsPropagation.
    if not propagation or propagation & PROPAGATION["unbindable"]:
        propagation = MS_SLAVE | MS_REC
    try:
        sc.mount(None, "/", None, propagation)
        _make_parent_private(rootfs)
        sc.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    except OSError as e:
        raise _fail(f"preparing rootfs {rootfs}", e) from None


def _make_parent_private(path: str) -> None:
    """pivot_root refuses when the new root's parent mount is shared."""
    best = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4]
            if (path + "/").startswith(mp.rstrip("/") + "/") and len(mp) >= len(best):
                best, optional = mp, fields[6 : fields.index("-")]
    if best and any(o.startswith("shared:") for o in optional):
        sc.mount(None, best, None, MS_PRIVATE)


class Mounter:
    """Performs the `mounts` of one container against a root fd of its rootfs."""

    def __init__(
        self,
        rootfs: str,
        bundle: str,
        cgroups: list[tuple[Hierarchy, str]],
        cgroup_ns: bool,
        before_cgroup_mount: Callable[[], None],
        in_userns: bool = False,
        idmapped: dict[int, int] | None = None,
    ) -> None:
        self.mount_label = ""
        self.cgroup_ns = cgroup_ns
        #: Inside a user namespace: no mknod (devices are bind-mounted from the host), no
        #: v1 cgroupfs or foreign-netns sysfs mounts (binds instead), and flags the host
        #: locked on a bind source must be kept on remount.
        self.in_userns = in_userns
        #: mounts index -> detached id-mapped tree made by `create` (userns.idmapped_tree)
        self.idmapped = idmapped or {}
        self.rootfs = rootfs
        self.bundle = bundle
        self.cgroups = cgroups
        self.before_cgroup_mount = before_cgroup_mount
        self.root_fd = posix.open(rootfs, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        #: the rootfs as the kernel names it (symlinks resolved), to place destinations
        self.root_path = posix.readlink(sc.fd_path(self.root_fd))
        self.dev_is_bind = False
        self.index, self.entry = 0, {}  # the mounts entry being done (checks, errors)

    def close(self) -> None:
        """Done: no fd of ours may stay open in a process the container can see."""
        posix.close(self.root_fd)

    def label_with(self, mount_label: str) -> None:
        """linux.mountLabel, for the filesystems mounted from now on."""
        self.mount_label = mount_label
        if mount_label:
            from ociruntime.security import lsm  # imported by create before the fork (importguard)

            self.lsm = lsm

    def mount_all(self, mounts: list[dict]) -> None:
        for index, m in enumerate(mounts):
            where = pointer("mounts", index)
            self.index, self.entry = index, m
            try:
                dest = m["destination"]
                self._check_proc(dest, pathlite.normpath("/" + dest.lstrip("/")), m)
                if index in self.idmapped:
                    self._attach_tree(self.idmapped[index], m)
                else:
                    self.mount_one(m)
            except ProcMountRefused:
                raise
            except RuntimeFailure as e:
                raise field_error(where, f"{mounting(m)}: {e}") from None
            except OSError as e:
                raise _field_fail(where, mounting(m), e) from None

    def _check_proc(self, dest: str, resolved: str, m: dict, tree_fd: int = -1) -> None:
        """Refuse a destination in /proc (see PROC_ALLOWED): first as written, then where
        it resolved in the rootfs (through symlinks, `..` and earlier mounts)."""

        def is_procfs() -> bool:
            if tree_fd >= 0:
                return sc.fstatfs_type(tree_fd) == k.PROC_SUPER_MAGIC
            opts = parse_mount_options(m.get("options") or [])
            if opts.is_bind or m.get("type") == "bind":
                return _is_procfs_path(pathlite.join(self.bundle, m.get("source") or ""))
            return m.get("type") == "proc"

        why = proc_refusal(resolved, is_procfs)
        if why:
            via = f"resolves to {resolved}: " if resolved != dest else ""
            at = pointer("mounts", self.index, "destination")
            raise ProcMountRefused(str(field_error(at, f"{dest}: {via}{why}")))

    def _target(self, make: Callable[[int, str], int], dest: str, tree_fd: int = -1) -> int:
        """The destination, made and opened inside the rootfs, checked for where it
        resolved (before anything is mounted on it)."""
        fd = make(self.root_fd, dest)
        where = posix.readlink(sc.fd_path(fd))
        if where == self.root_path or where.startswith(self.root_path + "/"):
            m = self.entry
            try:
                self._check_proc(m["destination"], where[len(self.root_path) :] or "/", m, tree_fd)
            except RuntimeFailure:
                posix.close(fd)
                raise
        return fd

    def mount_one(self, m: dict) -> None:
        dest = m["destination"]
        if not dest.startswith("/"):
            dest = "/" + dest  # runc treats relative destinations as relative to /
        fstype = m.get("type") or ""
        opts = _entry_options(m)
        if opts.is_bind or fstype == "bind":
            self._bind(m.get("source") or "", dest, opts)
        elif fstype == "cgroup":
            self._cgroup(dest, opts)
        else:
            try:
                self._mount_fs(m.get("source") or fstype, dest, fstype, opts)
            except PermissionError:
                if not (self.in_userns and fstype == "sysfs"):
                    raise
                # A user namespace may mount sysfs only with a network namespace of its
                # own; otherwise show the host's /sys, as runc does.
                self._bind("/sys", dest, parse_mount_options([*(m.get("options") or []), "rbind"]))
                return
            if fstype == "mqueue" and self.mount_label:
                self._label_root(dest)
            self._finish(dest, opts)

    def _mount_fs(self, source: str, dest: str, fstype: str, opts: MountOptions) -> None:
        label = "" if fstype in _UNLABELLED else self.mount_label
        fd = self._target(ensure_dir, dest)
        try:
            try:
                sc.mount(source, sc.fd_path(fd), fstype, opts.flags, _labelled(opts.data, label))
            except OSError as e:
                if label:
                    raise _label_error(fstype, label, e) from None
                raise
        finally:
            posix.close(fd)

    def _label_root(self, dest: str) -> None:
        """The new mount's root (which `dest` resolves to only now) gets the label."""
        fd = open_in_root(self.root_fd, dest)
        try:
            self.lsm.label_mount_root(sc.fd_path(fd), self.mount_label)
        finally:
            posix.close(fd)

    def _attach_tree(self, tree_fd: int, m: dict) -> None:
        """An id-mapped bind: `create` cloned and mapped the source on the host; attach it
        at the destination, then apply the mount's flags as for any bind."""
        dest = m["destination"] if m["destination"].startswith("/") else "/" + m["destination"]
        opts = _entry_options(m)
        is_dir = pathlite.isdir(sc.fd_path(tree_fd))
        fd = self._target(ensure_dir if is_dir else ensure_file, dest, tree_fd)
        try:
            sc.move_mount(tree_fd, fd)
        finally:
            posix.close(fd)
            posix.close(tree_fd)
        if opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT):
            self._remount(dest, opts.flags | MS_BIND | MS_REMOUNT)
        self._finish(dest, opts)

    def _bind(self, source: str, dest: str, opts: MountOptions) -> None:
        if not pathlite.isabs(source):
            source = pathlite.join(self.bundle, source)
        try:
            st = posix.stat(source)
        except OSError as e:
            raise RuntimeFailure(f"stat {source}: {e.strerror}") from None
        if dest.rstrip("/") == "/dev":
            self.dev_is_bind = True
        make = ensure_dir if stat.S_ISDIR(st.st_mode) else ensure_file
        fd = self._target(make, dest)
        try:
            sc.mount(
                source, sc.fd_path(fd), None, MS_BIND | (MS_REC if opts.is_recursive_bind else 0)
            )
        finally:
            posix.close(fd)
        # A bind mount ignores every flag but MS_REC: flags take a remount.
        if opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT):
            locked = 0
            if self.in_userns:  # the kernel refuses to clear what the host set
                locked = posix.statvfs(source).f_flag & _PRESERVED_STATVFS_FLAGS
            self._remount(dest, opts.flags | locked | MS_BIND | MS_REMOUNT)
        self._finish(dest, opts)

    def _bind_cgroup2(self, dest: str, fd: int, opts: MountOptions) -> None:
        """cgroup2 cannot be mounted from a user namespace that does not own the cgroup
        namespace (no cgroup namespace of its own): bind the container's v2 cgroup with a
        cgroup namespace, the whole hierarchy without, as runc does."""
        v2 = [(h, d) for h, d in self.cgroups if h.is_v2]
        source = "/sys/fs/cgroup"
        if v2:
            source = v2[0][1] if self.cgroup_ns else v2[0][0].mountpoint
        sc.mount(source, sc.fd_path(fd), None, MS_BIND)
        flags = opts.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if self.in_userns:  # a bind from a user namespace keeps the source's locked flags
            flags |= posix.statvfs(source).f_flag & _PRESERVED_STATVFS_FLAGS
        if flags:
            self._remount(dest, MS_BIND | MS_REMOUNT | flags)

    def _remount(self, dest: str, flags: int) -> None:
        fd = open_in_root(self.root_fd, dest)
        try:
            sc.mount(None, sc.fd_path(fd), None, flags & ~MS_REC)
        finally:
            posix.close(fd)

    def _finish(self, dest: str, opts: MountOptions) -> None:
        """Propagation changes and recursive attributes apply to the new mount, which the
        destination path resolves to only now that it is mounted."""
        if not opts.propagation and opts.recursive_attrs == (0, 0):
            return
        fd = open_in_root(self.root_fd, dest)
        try:
            for flag in opts.propagation:
                sc.mount(None, sc.fd_path(fd), None, flag)
            attr_set, attr_clr = opts.recursive_attrs
            if attr_set or attr_clr:
                sc.mount_setattr(fd, attr_set, attr_clr, recursive=True)
        finally:
            posix.close(fd)

    def _cgroup(self, dest: str, opts: MountOptions) -> None:
        """`type: cgroup`: cgroup2 where the host is pure v2; otherwise a tmpfs with one
        directory per v1 hierarchy, each showing the container's own cgroup (a fresh
        cgroupfs mount inside a cgroup namespace, else a bind of the container's dir)."""
        self.before_cgroup_mount()
        v1 = [h for h, _ in self.cgroups if not h.is_v2]
        fd = self._target(ensure_dir, dest)
        try:
            if not v1:
                try:
                    sc.mount("cgroup", sc.fd_path(fd), "cgroup2", opts.flags, None)
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.EBUSY):
                        raise
                    self._bind_cgroup2(dest, fd, opts)
                return
            flags, data = MS_NOSUID | MS_NODEV | MS_NOEXEC, _labelled("mode=755", self.mount_label)
            try:
                sc.mount("tmpfs", sc.fd_path(fd), "tmpfs", flags, data)
            except OSError as e:
                if self.mount_label:
                    raise _label_error("tmpfs", self.mount_label, e) from None
                raise
        finally:
            posix.close(fd)
        for h, container_dir in self.cgroups:
            if h.is_v2:
                continue
            sub = f"{dest}/{pathlite.basename(h.mountpoint)}"
            sfd = ensure_dir(self.root_fd, sub)
            try:
                if self.cgroup_ns and not self.in_userns:  # v1 cgroupfs: init userns only
                    data = ",".join(sorted(h.controllers)) or None
                    sc.mount("cgroup", sc.fd_path(sfd), "cgroup", opts.flags & ~MS_RDONLY, data)
                else:
                    sc.mount(container_dir, sc.fd_path(sfd), None, MS_BIND | MS_REC)
            finally:
                posix.close(sfd)
            # A bind ignores flags and a fresh mount takes all but ro: the configured
            # ro/nosuid/nodev/noexec take a remount.
            flags = opts.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            if self.in_userns:
                flags |= posix.statvfs(container_dir).f_flag & _PRESERVED_STATVFS_FLAGS
            if flags & MS_RDONLY or (flags and not (self.cgroup_ns and not self.in_userns)):
                self._remount(sub, MS_BIND | MS_REMOUNT | flags)
        if opts.flags & MS_RDONLY:
            self._remount(dest, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def make_cwd(self, cwd: str) -> None:
        """process.cwd made if the rootfs lacks it (0755, as root), as runc does after
        the mounts: an image's working directory need not exist in its layers. What
        cannot be made (a file in the way) is left to the chdir to report."""
        try:
            posix.close(ensure_dir(self.root_fd, cwd))
        except OSError:
            pass

    def populate_dev(self, devices: list[dict]) -> None:
        """Default devices plus `linux.devices`, and the standard /dev symlinks; skipped
        for the defaults when /dev is a bind mount of something else (as runc)."""
        wanted: list[dict] = []
        if not self.dev_is_bind:
            wanted = [
                {"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666}
                for p, ma, mi in DEFAULT_DEVICES
            ]
        wanted += devices
        for index, dev in enumerate(wanted):
            try:
                self._mknod(dev)
            except OSError as e:
                own = index - (len(wanted) - len(devices))  # its index in linux.devices
                if own < 0:
                    raise _fail(f"default device {dev.get('path')}", e) from None
                raise _field_fail(
                    pointer("linux", "devices", own), str(dev.get("path")), e
                ) from None
        if self.dev_is_bind:
            return
        for target, link in DEV_LINKS:
            self._symlink(target, link)
        if pathlite.exists("/proc/kcore"):
            self._symlink("/proc/kcore", "/dev/core")
        self._setup_ptmx()

    def _mknod(self, dev: dict) -> None:
        if self.in_userns:
            self._bind_device(dev)
            return
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        mode = kinds[dev["type"]] | (dev.get("fileMode", 0o666) & 0o7777)
        parent, name = parent_and_name(self.root_fd, dev["path"])
        try:
            try:
                posix.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            rdev = posix.makedev(dev.get("major", 0), dev.get("minor", 0))
            posix.mknod(name, mode, rdev, dir_fd=parent)
            # mknod obeys the umask; the config's mode is exact.
            fd = posix.open(name, posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=parent)
            try:
                posix.chmod(sc.fd_path(fd), mode & 0o7777)
                posix.chown(sc.fd_path(fd), dev.get("uid", 0), dev.get("gid", 0))
            finally:
                posix.close(fd)
        finally:
            posix.close(parent)

    def _bind_device(self, dev: dict) -> None:
        """In a user namespace mknod is refused: bind the host's node of the same path
        instead (as runc), so the device keeps the host's owner and mode. By fd, onto a
        target that is not a symlink (an image's /dev may be bound from the bundle)."""
        path = dev["path"]
        source = posix.open(path, posix.O_PATH | posix.O_CLOEXEC)
        try:
            parent, name = parent_and_name(self.root_fd, path)
            try:
                target = bind_target(parent, name, 0o644)
            finally:
                posix.close(parent)
            try:
                bind_fd(source, target)
            finally:
                posix.close(target)
        finally:
            posix.close(source)

    def _symlink(self, target: str, link: str) -> None:
        parent, name = parent_and_name(self.root_fd, link)
        try:
            posix.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            pass
        finally:
            posix.close(parent)

    def _setup_ptmx(self) -> None:
        """/dev/ptmx must be the container's own devpts multiplexer."""
        try:
            fd = open_in_root(self.root_fd, "/dev/pts/ptmx")
        except OSError:
            return
        posix.close(fd)
        parent, name = parent_and_name(self.root_fd, "/dev/ptmx")
        try:
            try:
                posix.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            posix.symlink("pts/ptmx", name, dir_fd=parent)
        finally:
            posix.close(parent)


def enter_rootfs(rootfs: str, no_pivot: bool) -> None:
    """pivot_root into the rootfs and detach the old root; never chroot unless asked
    (--no-pivot), because a chroot alone can be escaped."""
    try:
        if no_pivot:
            posix.chdir(rootfs)
            with open("/proc/self/mountinfo") as f:  # getcwd: the rootfs, symlinks resolved
                hide_host_procfs(posix.getcwd(), f.read().splitlines())
            sc.mount(rootfs, "/", None, MS_MOVE)
            posix.chroot(".")
            posix.chdir("/")
            return
        old_root = posix.open("/", posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        new_root = posix.open(rootfs, posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        posix.fchdir(new_root)
        sc.pivot_root(".", ".")
        posix.fchdir(old_root)
        sc.mount(None, ".", None, MS_SLAVE | MS_REC)
        sc.umount2(".", k.MNT_DETACH)
        posix.chdir("/")
        posix.close(old_root)
        posix.close(new_root)
    except OSError as e:
        raise _fail("pivot_root", e) from None


def _unescape(field: str) -> str:
    """A mountinfo path: the kernel writes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def hide_host_procfs(rootfs: str, mountinfo: list[str]) -> None:
    """--no-pivot leaves the host's mounts under the container's root, in its mount
    namespace: a full procfs or sysfs there lets the kernel's "mount too revealing" check
    pass, and a user namespace made inside the container could mount a fresh, unmasked
    procfs. As runc's msMoveRoot: every procfs and sysfs mounted whole (root "/") outside
    the rootfs is detached (a slave first, so the host sees no umount), or covered by a
    tmpfs where the kernel keeps it locked (a user namespace)."""
    for line in mountinfo:
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        where = _unescape(fields[4])
        if fields[3] != "/" or fstype not in ("proc", "sysfs"):
            continue
        if where == rootfs or where.startswith(rootfs.rstrip("/") + "/"):
            continue
        try:
            sc.mount(None, where, None, MS_SLAVE | MS_REC)
        except FileNotFoundError:
            continue  # under a mount detached already
        try:
            sc.umount2(where, k.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise
            sc.mount("tmpfs", where, "tmpfs", 0, None)


def mask_paths(paths: list[str], mount_label: str = "") -> None:
    """Hide each path: the null device over files, an empty read-only tmpfs over
    directories (labelled with linux.mountLabel, as runc). Files are bound by fd from the
    container's /dev/null once it is checked to be the null device: an image's /dev (bound
    from the bundle) may make it a symlink to, say, /proc/sys/kernel/ostype, and the mask
    would then show that file (CVE-2025-31133)."""
    null = -1
    try:
        for index, path in enumerate(paths):
            where = pointer("linux", "maskedPaths", index)
            try:
                target = posix.open(path, posix.O_PATH | posix.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _field_fail(where, path, e) from None
            try:
                if stat.S_ISDIR(posix.fstat(target).st_mode):
                    _mask_dir(path, mount_label, where)
                    continue
                if null < 0:
                    null = _open_null()
                bind_fd(null, target)
            except OSError as e:
                raise _field_fail(where, path, e) from None
            finally:
                posix.close(target)
    finally:
        if null >= 0:
            posix.close(null)


def _open_null() -> int:
    root = posix.open("/", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        return open_null_device(root)
    finally:
        posix.close(root)


def _mask_dir(path: str, mount_label: str, where: str) -> None:
    try:
        sc.mount("tmpfs", path, "tmpfs", MS_RDONLY, _labelled(None, mount_label))
    except OSError as e:
        if mount_label:
            raise field_error(where, str(_label_error(f"{path}: tmpfs", mount_label, e))) from None
        raise


def readonly_paths(paths: list[str]) -> None:
    for index, path in enumerate(paths):
        where = pointer("linux", "readonlyPaths", index)
        try:
            sc.mount(path, path, None, MS_BIND | MS_REC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise _field_fail(where, path, e) from None
        try:
            remount_readonly(path)
        except OSError as e:
            raise _field_fail(where, path, e) from None


def remount_readonly(path: str) -> None:
    """Remount read-only, keeping the mount's other flags (nosuid, nodev...), which the
    kernel would otherwise clear (or refuse to, when they are locked)."""
    kept = posix.statvfs(path).f_flag & _PRESERVED_STATVFS_FLAGS
    sc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def remount_readonly_last(entries: list[dict], root: str = "/") -> None:
    """The read-only remounts readonly_last deferred, in the config's order, once /dev is
    filled, the hooks ran and the console is in place (where runc's finalizeRootfs does
    them). Inside the new root: each destination is resolved there, as written."""
    root_fd = posix.open(root, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        for index, m in enumerate(entries):
            if not readonly_last(m):
                continue
            if not parse_mount_options(m.get("options") or []).flags & MS_RDONLY:
                continue
            dest = m.get("destination") or ""
            try:
                fd = open_in_root(root_fd, dest)
                try:
                    remount_readonly(sc.fd_path(fd))
                finally:
                    posix.close(fd)
            except OSError as e:
                where = pointer("mounts", index)
                raise _field_fail(where, f"remounting {dest} read-only", e) from None
    finally:
        posix.close(root_fd)


def finish_root(readonly: bool, propagation: int) -> None:
    try:
        if readonly:
            remount_readonly("/")
        if propagation:
            sc.mount(None, "/", None, propagation)
    except OSError as e:
        raise _fail("root", e) from None
