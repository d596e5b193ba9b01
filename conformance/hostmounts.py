"""Where a host path lives in its filesystem, as mountinfo's root field shows it.

proc(5): the 4th field of a mountinfo line ("root") is "the pathname of the directory in
the filesystem which forms the root of this mount", not a host path. A bind of
/tmp/x/shared shows root `/tmp/x/shared` only when /tmp is a directory of the root
filesystem; with /tmp on its own tmpfs (Debian 13, Fedora, Arch) it shows `/x/shared`.
So the expected root of a bind is the source relative to the host mount that holds it,
joined to that mount's own root (itself not `/` when the host mount is a bind).
"""

from __future__ import annotations

import posixpath
import re

#: The runner's (and so the runtimes') mount table; a test points it at a file of its own.
MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse(text: str) -> list[tuple[str, str]]:
    """(root, mount point) of each mountinfo line, in the file's order."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            out.append((_unescape(fields[3]), _unescape(fields[4])))
    return out


def _under(path: str, point: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip("/") + "/")


def root_in_filesystem(path: str, mountinfo: str) -> str:
    """The root field a bind mount of the (absolute, resolved) host `path` shows.

    The host mount holding `path` is the one with the longest mount point above it; of
    several at the same point the last listed is on top (mounted later)."""
    best: tuple[str, str] | None = None
    for root, point in parse(mountinfo):
        if _under(path, point) and (best is None or len(point) >= len(best[1])):
            best = (root, point)
    if best is None:
        return path
    root, point = best
    rest = path[len(point.rstrip("/")) :]
    return posixpath.normpath(root.rstrip("/") + "/" + rest.lstrip("/"))


def host_root_of(path: str) -> str:
    """root_in_filesystem for this process's mount namespace (the runtimes' too)."""
    with open(MOUNTINFO) as f:
        return root_in_filesystem(path, f.read())
