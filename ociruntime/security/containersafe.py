"""Make a runtime process safe for a container to see (the CVE-2019-5736 class).

The init (while the container is created) and an `exec` child (until its execve) are
the runtime's own Python processes inside the container's PID namespace. Through
/proc/<pid>/{exe,map_files,fd,cwd,root} a process in the container could reach what such
a process holds: for a Python runtime the "runtime binary" is the interpreter, libpython,
libc, the extension modules and the package, and one overwrite of any of them as root
gives the host to whoever runs Python next. Three steps close that, as runc's do:

1. `hide`: not dumpable from the first instruction on. The kernel then lets only a
   process with CAP_SYS_PTRACE in the *host* user namespace open those /proc links (runc
   does the same in nsexec). execve makes the user's program dumpable again.
2. `detach_from_host_files`: for a container that holds every capability (a privileged
   one, which the kernel would let through step 1), no link may lead to a writable host
   file: every file mapping is replaced in place by the same bytes reached through a
   read-only overlayfs (never written: zero copy, page cache shared) or, for pages the
   process wrote, by an anonymous copy; /proc/self/exe becomes an empty sealed memfd (so
   a `#!/proc/self/exe` program runs nothing). runc 1.2 reaches its binary through a
   read-only overlayfs too. See `_anonexe.c`.
3. `close_fds`: no fd beyond what the process needs and the spec gives the container
   (stdio, --preserve-fds) survives, so no host namespace or directory fd is held.

The init detaches just before pivot_root, when every file it will ever map is mapped (it
cannot import anything afterwards) and the host's paths are still there for the overlays;
an `exec` does it before it forks the process that enters the container.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc

# Here, not in detach_from_host_files: the init and an exec's intermediate call that after
# their fork, and nothing may be imported after a fork (see ociruntime/importguard.py).
from ociruntime.security import _anonexe

#: Set by the test suite: the init and an exec's intermediate then refuse any import after
#: their fork (ociruntime/importguard.py). Here because both import this module anyway.
IMPORT_GUARD_ENV = "OCIRUNTIME_IMPORT_GUARD"


def import_guard_on() -> bool:
    """Whether the test suite asked for the import guard (IMPORT_GUARD_ENV)."""
    return IMPORT_GUARD_ENV.encode() in posix.environ


def hide() -> None:
    """Not dumpable: /proc/<pid>/* is closed to the container's (unprivileged) processes."""
    sc.set_dumpable(False)


def detach_from_host_files() -> int:
    """Leave no host file mapped and /proc/self/exe pointing at nothing writable.
    Returns the bytes that had to be copied (those the process had written to)."""
    try:
        copied = _anonexe.detach_mappings()  # C: no Python between a copy and its mremap
    except OSError as e:
        raise RuntimeFailure(f"protecting the runtime's files from the container: {e}") from None
    try:
        _anonexe.replace_exe()
    except PermissionError:
        # Unprivileged (an exec into a rootless container): the kernel lets only
        # CAP_SYS_ADMIN change it. The container's root is then our uid at most, and
        # step 1 keeps its processes out of our /proc links all the same.
        if posix.geteuid() == 0:
            raise RuntimeFailure(
                "protecting the runtime's files from the container: /proc/self/exe: not permitted"
            ) from None
    except OSError as e:
        raise RuntimeFailure(
            f"protecting the runtime's files from the container: /proc/self/exe: {e}"
        ) from None
    return copied


def close_fds(keep: set[int] | frozenset[int], first: int = 3) -> None:
    """Close every fd from `first` on that is not in `keep` (not merely close-on-exec:
    a container process may look at ours through /proc before we exec)."""
    for name in posix.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first and fd not in keep:
            try:
                posix.close(fd)
            except OSError:
                pass  # the listdir fd itself, already closed
