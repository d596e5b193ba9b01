"""Small file helpers shared by the container record and the cgroup code.

Kept free of any ociruntime import so that `container/` and `cgroups/` can both use it
without a cycle, and free of anything heavy: it is on every command's hot path.
"""

import posix  # not os: the one-shot commands never load it (pathlite.py)

from ociruntime import pathlite


def read_file(directory: str | None, name: str) -> str | None:
    """`directory/name`'s text, or None when there is no directory or no such readable
    file: a cgroup file a controller or kernel lacks is an answer, not an error."""
    if directory is None:
        return None
    try:
        with open(pathlite.join(directory, name)) as f:
            return f.read()
    except OSError:
        return None


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: a
    reader (or a command killed half-way) sees the old content or the new, never part
    of it. No fsync: a crash of the host loses the containers anyway."""
    tmp = pathlite.join(pathlite.dirname(path), f".{pathlite.basename(path)}.tmp")
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, mode)
    try:
        posix.write(fd, data)
    finally:
        posix.close(fd)
    posix.rename(tmp, path)


def make_dirs(path: str, mode: int = 0o777) -> None:
    """`os.makedirs(path, mode, exist_ok=True)` without `os`: the missing parents with
    the default mode (0o777 less the umask), `path` itself with `mode`; an existing
    directory is fine, an existing file is not (FileExistsError)."""
    if pathlite.isdir(path):
        return
    parent = pathlite.dirname(path.rstrip("/"))
    if parent and parent != path and not pathlite.exists(parent):
        make_dirs(parent)
    try:
        posix.mkdir(path, mode)
    except FileExistsError:
        if not pathlite.isdir(path):
            raise
