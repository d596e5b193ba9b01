"""Resolve and create paths inside the rootfs without ever leaving it.

A rootfs comes from an image, which is untrusted: `/etc -> /../../host/etc` style symlinks
must resolve inside the rootfs, as they would after pivot_root. The kernel does that for us
with openat2(RESOLVE_IN_ROOT), so no path is ever resolved by string manipulation. Mounts
then target the resolved file through its /proc/self/fd/N magic link.
"""

from __future__ import annotations

import errno
import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import stat

from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def open_in_root(root_fd: int, path: str, flags: int = posix.O_PATH) -> int:
    """Open `path` (absolute or relative, interpreted inside the root)."""
    return sc.openat2(root_fd, path.lstrip("/") or ".", flags, 0, _RESOLVE)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def ensure_dir(root_fd: int, path: str, mode: int = 0o755) -> int:
    """mkdir -p inside the root; returns an O_PATH fd of the directory."""
    parts = _split(path)
    for i in range(len(parts) + 1):
        prefix = "/".join(parts[:i])
        try:
            fd = open_in_root(root_fd, prefix, posix.O_PATH | posix.O_DIRECTORY)
        except FileNotFoundError:
            parent = open_in_root(
                root_fd, "/".join(parts[: i - 1]), posix.O_PATH | posix.O_DIRECTORY
            )
            try:
                posix.mkdir(parts[i - 1], mode, dir_fd=parent)
            except FileExistsError:
                pass  # a dangling symlink: the next open reports it
            finally:
                posix.close(parent)
            fd = open_in_root(root_fd, prefix, posix.O_PATH | posix.O_DIRECTORY)
        if i == len(parts):
            return fd
        posix.close(fd)
    raise AssertionError("unreachable")


def ensure_file(root_fd: int, path: str) -> int:
    """Make sure a file exists at `path` (a bind target for a non-directory source);
    returns an O_PATH fd of it."""
    try:
        return open_in_root(root_fd, path)
    except FileNotFoundError:
        pass
    parts = _split(path)
    parent = ensure_dir(root_fd, "/".join(parts[:-1]))
    try:
        flags = posix.O_CREAT | posix.O_WRONLY | posix.O_CLOEXEC | posix.O_NOFOLLOW
        fd = posix.open(parts[-1], flags, 0o644, dir_fd=parent)
        posix.close(fd)
    finally:
        posix.close(parent)
    return open_in_root(root_fd, path)


def is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(posix.fstat(fd).st_mode)


def parent_and_name(root_fd: int, path: str) -> tuple[int, str]:
    """An O_PATH fd of the parent directory (created if missing) and the last component."""
    parts = _split(path)
    if not parts:
        raise OSError(errno.EINVAL, "path has no last component", path)
    return ensure_dir(root_fd, "/".join(parts[:-1])), parts[-1]


def bind_fd(source_fd: int, target_fd: int) -> None:
    """Bind-mount the file `source_fd` refers to onto the one `target_fd` refers to, by fd
    alone: open_tree clones the source's mount at that file, move_mount attaches the clone.
    No path is resolved, neither a name the container could swap for a symlink between a
    check and the mount (CVE-2025-31133, CVE-2025-52565) nor /proc/self/fd/N, which after
    pivot_root goes through the container's /proc. Used for masks, /dev/console and the
    device nodes bound from the host."""
    tree = sc.open_tree("", False, source_fd)
    try:
        sc.move_mount(tree, target_fd)
    finally:
        posix.close(tree)


def open_null_device(root_fd: int) -> int:
    """An O_PATH fd of the rootfs's /dev/null, checked through the fd to be the null
    character device (1:3): not a symlink (no component may be one), not another file."""
    try:
        fd = sc.openat2(
            root_fd, "dev/null", posix.O_PATH, 0, RESOLVE_IN_ROOT | k.RESOLVE_NO_SYMLINKS
        )
    except OSError as e:
        why = "it is or passes through a symlink" if e.errno == errno.ELOOP else e.strerror
        raise OSError(e.errno, f"/dev/null is not the null device: {why}") from None
    st = posix.fstat(fd)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == posix.makedev(1, 3):
        return fd
    posix.close(fd)
    kind = f"character device {posix.major(st.st_rdev)}:{posix.minor(st.st_rdev)}"
    if not stat.S_ISCHR(st.st_mode):
        kind = "not a character device"
    raise OSError(errno.EPERM, f"/dev/null is not the null device: {kind}")


def bind_target(dir_fd: int, name: str, mode: int = 0o666) -> int:
    """An O_PATH fd of the file `name` in the directory `dir_fd`, to bind a device onto:
    created (an empty regular file, `mode`) if missing; refused if it is a symlink or
    anything but a regular file or a character device. Never follows a symlink."""
    flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
    try:
        fd = posix.open(name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        pass
    else:
        try:
            posix.fchmod(fd, mode)  # open obeys the umask
        finally:
            posix.close(fd)
    fd = posix.open(name, posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=dir_fd)
    kind = stat.S_IFMT(posix.fstat(fd).st_mode)
    if kind in (stat.S_IFREG, stat.S_IFCHR):
        return fd
    posix.close(fd)
    what = "a symbolic link" if kind == stat.S_IFLNK else "not a file or a device"
    raise OSError(errno.EEXIST, f"exists and is {what}")
