"""Resolve and create paths inside the rootfs without ever leaving it.

A rootfs comes from an image, which is untrusted: `/etc -> /../../host/etc` style symlinks
must resolve inside the rootfs, as they would after pivot_root. The kernel does that for us
with openat2(RESOLVE_IN_ROOT), so no path is ever resolved by string manipulation. Mounts
then target the resolved file through its /proc/self/fd/N magic link.
"""

from __future__ import annotations

import errno
import os
import stat

from ociruntime.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open `path` (absolute or relative, interpreted inside the root)."""
    return openat2(root_fd, path.lstrip("/") or ".", flags, 0, _RESOLVE)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def ensure_dir(root_fd: int, path: str, mode: int = 0o755) -> int:
    """mkdir -p inside the root; returns an O_PATH fd of the directory."""
    parts = _split(path)
    for i in range(len(parts) + 1):
        prefix = "/".join(parts[:i])
        try:
            fd = open_in_root(root_fd, prefix, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            parent = open_in_root(root_fd, "/".join(parts[: i - 1]), os.O_PATH | os.O_DIRECTORY)
            try:
                os.mkdir(parts[i - 1], mode, dir_fd=parent)
            except FileExistsError:
                pass  # a dangling symlink: the next open reports it
            finally:
                os.close(parent)
            fd = open_in_root(root_fd, prefix, os.O_PATH | os.O_DIRECTORY)
        if i == len(parts):
            return fd
        os.close(fd)
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
        fd = os.open(parts[-1], os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o644, dir_fd=parent)  # fmt: skip
        os.close(fd)
    finally:
        os.close(parent)
    return open_in_root(root_fd, path)


def is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def parent_and_name(root_fd: int, path: str) -> tuple[int, str]:
    """An O_PATH fd of the parent directory (created if missing) and the last component."""
    parts = _split(path)
    if not parts:
        raise OSError(errno.EINVAL, "path has no last component", path)
    return ensure_dir(root_fd, "/".join(parts[:-1])), parts[-1]
