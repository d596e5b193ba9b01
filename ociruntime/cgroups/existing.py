"""What acting on an existing cgroup needs: who is in it, and removing its directories.

Apart from cgroupfs.py (which finds, makes and configures cgroups) so that `kill` and
`delete`, which end every container, load only this small module, and no `os` (see
pathlite.py).
"""

import errno
import posix  # not os: the one-shot commands never load it (pathlite.py)
import time

from ociruntime import pathlite
from ociruntime.errors import RuntimeFailure

#: A cgroup removed meanwhile: ENOENT at open, ENODEV at a read or write of a file opened
#: before its rmdir (systemd stops a scope on its own, e.g. after an OOM kill).
GONE = (errno.ENOENT, errno.ENODEV)


def procs(dirs: list[str]) -> list[int]:
    """PIDs in the container's cgroup (read from the first hierarchy that has them)."""
    for d in dirs:
        try:
            with open(pathlite.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError as e:
            if e.errno not in GONE:
                raise
    return []


def all_procs(dirs: list[str]) -> list[int]:
    """PIDs in any of the container's cgroups (a process may have joined only some)."""
    pids: set[int] = set()
    for d in dirs:
        try:
            with open(pathlite.join(d, "cgroup.procs")) as f:
                pids.update(int(x) for x in f.read().split())
        except OSError as e:
            if e.errno not in GONE:
                raise
    return sorted(pids)


def remove(created: list[str], attempts: int = 50) -> None:
    """rmdir what we created, deepest first. The kernel may still be draining exited
    tasks (EBUSY) for a moment after the last one died, so retry briefly. A parent we
    created that now holds another container's cgroup is in use, not ours to take: it
    stays (and this is no error)."""
    for d in sorted(created, key=len, reverse=True):
        for attempt in range(attempts):
            try:
                posix.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and _has_child_cgroups(d):
                    break
                if e.errno != errno.EBUSY or attempt == attempts - 1:
                    raise RuntimeFailure(f"removing cgroup {d}: {e.strerror}") from None
                time.sleep(0.002 * (attempt + 1))


def _has_child_cgroups(path: str) -> bool:
    try:
        return any(entry.is_dir(follow_symlinks=False) for entry in posix.scandir(path))
    except OSError:
        return False
