"""Running commands whose children may outlive them, and finding what they leave: the
processes in cgroups, the cgroups, mounts and state dirs."""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def run_to_files(cmd: list[str], *, stdin: str | None = None, timeout: float = 60, **kw) -> Result:
    """Run `cmd`, its output to files, not pipes: what it starts (a created container's
    init, conmon) inherits its stdio and would hold a pipe open. No `stdin`: /dev/null."""
    if stdin is None:
        kw["stdin"] = subprocess.DEVNULL
    else:
        kw["input"] = stdin.encode()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(cmd, stdout=out, stderr=err, timeout=timeout, **kw)
        out.seek(0)
        err.seek(0)
        return Result(p.returncode, out.read().decode(), err.read().decode())


def reap_children() -> None:
    """Collect the exit status of every finished child (orphaned container processes, for
    a subreaper). Only call it when no subprocess of ours runs: it could steal its status."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_exited(pid: int, timeout: float = 30, message: str = "") -> None:
    """Until `pid` has exited, our child or not (a zombie counts: this machine's PID 1 may
    reap nothing): its pidfd turns readable. An AssertionError after `timeout` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], message or f"process {pid} still runs"
    finally:
        os.close(fd)


def command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process that still runs when its /proc/PID/cmdline is read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        yield int(entry), argv


def cgroup_procs(dirs: Iterable[str | os.PathLike]) -> set[int]:
    """The pids in cgroup.procs of each of `dirs` and every cgroup below them."""
    pids: set[int] = set()
    for top in dirs:
        for d, _, _ in os.walk(top):
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(pid) for pid in f.read().split())
            except OSError:
                pass
    return pids


def cgroup_dirs_named(ids: set[str]) -> list[str]:
    """Every cgroup directory, in any hierarchy, named one of `ids`."""
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(dirpath, d) for d in dirnames if d in ids]
    return found


#: ociruntime's compiled seccomp filters, in its state root beside the containers
#: (ociruntime/security/seccomp_cache.py DIR_NAME; tests/test_seccomp_cache.py checks
#: the two agree). Not a container's: it outlives them by design.
SECCOMP_CACHE_DIR = ".seccomp@cache"


def state_dirs(root: str | os.PathLike) -> list[str]:
    """The containers' state dirs left in a runtime's root (sorted names; none when the
    root does not exist): every entry but ociruntime's seccomp filter cache."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if name != SECCOMP_CACHE_DIR)


def mount_lines() -> set[str]:
    """This mount namespace's mounts as "root mount-point" lines of mountinfo."""
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}
