"""`--version`: what runc's prints (version, commit, spec, the language, libseccomp), which
people paste into bug reports and tools grep for `spec:`.

Nothing here runs on the hot path: the commit is the one tools/install.sh wrote into an
installed copy (ociruntime/_build_info.py), else read from the checkout's .git (no git
process); libseccomp's version from the library itself (loaded only here).
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
        f"commit: {installed_commit() or commit() or 'unknown'}\n"
        f"spec: {SPEC_VERSION}\n"
        f"python: {py}\n"
        f"libseccomp: {libseccomp_version() or 'unavailable'}\n"
    )


def installed_commit() -> str | None:
    """The commit tools/install.sh wrote into the installed package (none in a checkout)."""
    try:
        from ociruntime._build_info import COMMIT  # type: ignore[import-not-found]
    except ImportError:
        return None
    return COMMIT or None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _git_dirs(repo: str) -> tuple[str, str]:
    """(the checkout's own git dir, the common one): both .git in a plain clone; in a
    `git worktree` .git is a file naming its own dir, whose `commondir` has the refs."""
    git = os.path.join(repo, ".git")
    if os.path.isdir(git):
        return git, git
    pointer = _read(git) or ""
    if not pointer.startswith("gitdir: "):
        return git, git
    own = os.path.join(repo, pointer[8:])
    common = _read(os.path.join(own, "commondir"))
    return own, os.path.normpath(os.path.join(own, common)) if common else own


def commit(repo: str = _REPO) -> str | None:
    """The checkout's HEAD commit (12 hex digits), read from .git (a clone's or a
    worktree's): a branch's ref file, packed-refs, or a detached HEAD; None outside a git
    checkout."""
    own, common = _git_dirs(repo)
    head = _read(os.path.join(own, "HEAD"))
    if not head:
        return None
    if not head.startswith("ref: "):
        return head[:12]
    ref = head[5:]
    sha = _read(os.path.join(common, ref))
    if sha:
        return sha[:12]
    for line in (_read(os.path.join(common, "packed-refs")) or "").splitlines():
        sha, _, name = line.strip().partition(" ")
        if name == ref:
            return sha[:12]
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
