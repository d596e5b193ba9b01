"""Small file helpers shared by the container record and the cgroup code.

Kept free of any ociruntime import so that `container/` and `cgroups/` can both use it
without a cycle, and free of anything heavy: it is on every command's hot path.
"""

from __future__ import annotations

import os


def read_file(directory: str | None, name: str) -> str | None:
    """`directory/name`'s text, or None when there is no directory or no such readable
    file: a cgroup file a controller or kernel lacks is an answer, not an error."""
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return None


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: a
    reader (or a command killed half-way) sees the old content or the new, never part
    of it. No fsync: a crash of the host loses the containers anyway."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)
