"""`--version`: what runc's prints (version, commit, spec, the language, libseccomp), which
people paste into bug reports and tools grep for `spec:`.

Nothing here runs on the hot path: the commit is read from the checkout's .git (no git
process), libseccomp's version from the library itself (loaded only here).
"""

from __future__ import annotations

import os
import sys

from ociruntime import SPEC_VERSION, __version__

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def version_text() -> str:
    py = ".".join(str(n) for n in sys.version_info[:3])
    return (
        f"ociruntime version {__version__}\n"
        f"commit: {commit() or 'unknown'}\n"
        f"spec: {SPEC_VERSION}\n"
        f"python: {py}\n"
        f"libseccomp: {libseccomp_version() or 'unavailable'}\n"
    )


def commit(repo: str = _REPO) -> str | None:
    """The checkout's HEAD commit (12 hex digits), read from .git: a branch's ref file,
    packed-refs, or a detached HEAD; None outside a git checkout."""
    git = os.path.join(repo, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
    except OSError:
        return None
    if not head.startswith("ref: "):
        return head[:12] or None
    ref = head[5:]
    try:
        with open(os.path.join(git, ref)) as f:
            return f.read().strip()[:12] or None
    except OSError:
        pass
    try:
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                sha, _, name = line.strip().partition(" ")
                if name == ref:
                    return sha[:12]
    except OSError:
        pass
    return None


def libseccomp_version() -> str | None:
    """seccomp_version() of the libseccomp the seccomp support loads."""
    import ctypes

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"
