"""The few `os.path` functions the hot path needs, over the built-in `posix` alone.

`import os` costs ~0.9 ms here (it loads `_collections_abc`, `posixpath`, `stat`...), a
tenth of a whole `state`, `start`, `kill` or `delete`, and `os.path` is `posixpath`, which
imports `os`. So the modules those commands load, and those of a plain config's `create`
(parent and init), use `posix` and this module instead (tests/test_hot_path.py checks
that none of them loads `os`; tests/test_pathlite.py that each function answers as
`os.path`'s does). Paths are `str`, as everywhere in ociruntime.
"""

import _stat
import posix


def join(path: str, *parts: str) -> str:
    """`os.path.join`: an absolute part starts over."""
    for part in parts:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def basename(path: str) -> str:
    """What follows the last slash (`os.path.basename`: "" for a path ending in one)."""
    return path[path.rfind("/") + 1 :]


def dirname(path: str) -> str:
    """What precedes the last slash, without trailing slashes unless only slashes."""
    head = path[: path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def exists(path: str) -> bool:
    """Whether stat(2) succeeds (a dangling symlink does not exist), as `os.path.exists`."""
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def isdir(path: str) -> bool:
    """Whether `path` is (or links to) a directory, as `os.path.isdir`."""
    try:
        return _stat.S_ISDIR(posix.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def normpath(path: str) -> str:
    """`os.path.normpath`: no empty or `.` components, `..` folded lexically (never past
    the root), and POSIX's rule that exactly two leading slashes are kept."""
    if not path:
        return "."
    leading = len(path) - len(path.lstrip("/"))
    if leading > 2:
        leading = 1
    kept: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not leading and not kept) or (kept and kept[-1] == ".."):
            kept.append(part)
        elif kept:
            kept.pop()
    return "/" * leading + "/".join(kept) or "."


def abspath(path: str) -> str:
    """`os.path.abspath`: relative to the working directory, normalised."""
    if not path.startswith("/"):
        path = join(posix.getcwd(), path)
    return normpath(path)


def isfile(path: str) -> bool:
    """Whether `path` is (or links to) a regular file, as `os.path.isfile`."""
    try:
        return _stat.S_ISREG(posix.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def isabs(path: str) -> bool:
    """`os.path.isabs`: whether it starts with a slash."""
    return path.startswith("/")


def relpath(path: str, start: str) -> str:
    """`os.path.relpath(path, start)`: `path` from `start`, both made absolute and
    normalised first; `..` where `path` is not below `start`."""
    to = [p for p in abspath(path).split("/") if p]
    base = [p for p in abspath(start).split("/") if p]
    common = 0
    while common < min(len(to), len(base)) and to[common] == base[common]:
        common += 1
    return "/".join([".."] * (len(base) - common) + to[common:]) or "."
