"""Running commands whose children may outlive them, and finding what they leave: the
processes in cgroups, the cgroups, mounts and state dirs; waiting processes out and
removing an engine's cgroup parent (testkit/containerd.py, docker.py, podman.py)."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")
PR_SET_PDEATHSIG = 1


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


MNT_DETACH = 2


def umount_lazy(path: str) -> str:
    """umount2(path, MNT_DETACH) ("" or the error): the syscall itself, not umount(8),
    which would create /run/mount (utab) on the host."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        return os.strerror(ctypes.get_errno())
    return ""


def mount_lines() -> set[str]:
    """This mount namespace's mounts as "root mount-point" lines of mountinfo."""
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def wait_pids_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait (pidfd, no polling) for these processes to exit; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


def cgroup_hierarchies() -> list[Path]:
    """Each v1 hierarchy's mountpoint, or on a pure v2 host the unified one itself."""
    if (CGROUP_MOUNT / "cgroup.controllers").exists():
        return [CGROUP_MOUNT]
    return [p for p in CGROUP_MOUNT.iterdir() if p.is_dir() and not p.is_symlink()]


def remove_cgroup_subtrees(names: Iterable[str], expected: Iterable[str] = ()) -> list[str]:
    """Remove the cgroup /NAME of each of `names` in every hierarchy, with what is below
    it: an engine's cgroup parent (containerd's namespace, dockerd's or podman's
    --cgroup-parent), which a runtime never removes itself. A container cgroup still in
    it is a leftover: what runs there (an init whose shim was killed before its `delete`)
    is killed, and the dirs removed deepest first. Returns the leftovers found; a child
    named in `expected` is not one (podman's `conmon`)."""
    parents = [h / name.strip("/") for h in cgroup_hierarchies() for name in names]
    parents = [p for p in parents if p.is_dir()]
    expected = set(expected)
    leftovers = [
        f"cgroup {c}" for p in parents for c in p.iterdir() if c.is_dir() and c.name not in expected
    ]
    pids = cgroup_procs(parents)
    leftovers += [f"process {pid} in a container cgroup" for pid in sorted(pids)]
    for pid in pids:
        kill_pid(pid)
    wait_pids_gone(pids, timeout=5)
    for parent in parents:
        dirs = sorted((d for d, _, _ in os.walk(parent)), key=len, reverse=True)
        for d in dirs:  # deepest first, the parent last
            error = rmdir_cgroup(d)
            if error:
                leftovers.append(f"cgroup {d}: {error}")
    return leftovers


def die_with_parent() -> Callable[[], None]:
    """For the child, before exec: SIGTERM when its parent dies, so a killed test run or
    bench does not leave containerd running (this survives exec; nothing setuid is run)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def rmdir_cgroup(path: str, attempts: int = 50) -> str:
    """rmdir, retrying while the kernel drains exited tasks (EBUSY); "" or the error."""
    for attempt in range(attempts):
        try:
            os.rmdir(path)
            return ""
        except FileNotFoundError:
            return ""
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == attempts - 1:
                return e.strerror or str(e)
            time.sleep(0.02)
    return "busy"


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
