"""`delete`: remove a stopped container (killing it first with --force), its cgroups and
its state; then run poststop hooks.

Devices moved in by linux.netDevices are left alone, as the spec requires: when the
network namespace dies the kernel returns physical ones to the host and destroys virtual
ones."""

from __future__ import annotations

import _signal
import errno
import os
import select

from ociruntime.cgroups import cgroupfs, freezer
from ociruntime.container.state import (
    ContainerState,
    StateDir,
    init_alive,
    open_existing,
    proc_stat,
    public_state,
    status_of,
)
from ociruntime.errors import RuntimeFailure
from ociruntime.process import hooks


def delete(root: str, container_id: str, force: bool) -> None:
    try:
        sd = open_existing(root, container_id)
        state = sd.load()
    except RuntimeFailure as e:
        if force and str(e) == "container does not exist":
            return  # runc: `delete --force` of an unknown container succeeds silently
        raise
    status = status_of(sd, state)
    # runtime.md: deleting a container that is not stopped (created included) MUST fail
    # and change nothing. runc deletes a created one anyway; engines that mean it pass
    # --force (containerd's shim and podman do).
    if status != "stopped" and not force:
        raise RuntimeFailure(
            f"cannot delete container {container_id} that is not stopped: {status}"
        )
    if status != "stopped":
        kill_and_wait(state)
    destroy(sd, state)


def kill_and_wait(state: ContainerState) -> None:
    """SIGKILL every process of the container and wait until they are all gone, on
    pidfds: no timer involved while they die as they should.

    "Every process": the init when it is still the recorded one, and everything in the
    container's cgroups (all hierarchies for a create that died: it may have left its
    init in some only), read again after each round in case one forked meanwhile; that
    also kills an init whose pid a killed create never recorded.

    A process that is already exiting counts as gone: an exiting PID-namespace init
    waits in the kernel until every process of its namespace has been reaped, and one
    whose parent is outside the container (an exec'd process whose `exec` was killed)
    becomes a zombie of the host's PID 1 or the engine's reaper. It has left its cgroups
    already; waiting for the reaper would hang delete on a machine whose PID 1 reaps
    nothing (and its cgroups can be removed: it counts in cgroup.procs, not for rmdir).
    While any is left, the processes are looked at again every 50 ms."""
    for _ in range(100):
        pids = {pid for pid in _procs(state) if not _exiting(pid)}
        if state.pid and init_alive(state) and not _exiting(state.pid):
            pids.add(state.pid)
        if not pids:
            return
        _kill_round(state, pids)


def _kill_round(state: ContainerState, pids: set[int]) -> None:
    pidfds = {}
    for pid in pids:
        try:
            pidfds[os.pidfd_open(pid)] = pid
            os.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            continue
        except OSError as e:
            # EINVAL: the pid lives on only as the session/group id of the init's children
            # (a reaping PID 1 or subreaper already collected the init): nothing to kill.
            if e.errno != errno.EINVAL:
                raise
    if state.cgroup_paths and freezer.is_frozen(state.cgroup_paths):
        freezer.thaw(state.cgroup_paths)  # paused: on v1, killed processes die once thawed
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    try:
        remaining = set(pidfds)
        while remaining:
            ready = poller.poll(50)
            done = {fd for fd, _ in ready} if ready else {
                fd for fd in remaining if _exiting(pidfds[fd])
            }  # fmt: skip
            for fd in done:
                poller.unregister(fd)
            remaining -= done
    finally:
        for fd in pidfds:
            os.close(fd)


def _procs(state: ContainerState) -> list[int]:
    """The container's processes: from its first cgroup (every process joins that one
    first), or from all of them for a create that died (its init may have joined only
    some; reading one file instead of one per hierarchy keeps delete fast)."""
    if state.creator is not None:
        return cgroupfs.all_procs(state.cgroup_dirs)
    return cgroupfs.procs(state.cgroup_dirs)


def _exiting(pid: int) -> bool:
    """Gone, a zombie, or inside exit (PF_EXITING in /proc/<pid>/stat's flags, field 9)."""
    fields = proc_stat(pid)
    return fields is None or fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)


_PF_EXITING = 0x4


def destroy(sd: StateDir, state: ContainerState) -> None:
    """Remove cgroups and state, then run poststop hooks. Processes can outlive a stopped
    init when it did not have its own PID namespace: they are killed first, as runc does;
    so is the init of a create that died (stopped, though it may still run)."""
    if state.pid and init_alive(state) or _procs(state):
        kill_and_wait(state)
    cgroupfs.remove(state.cgroup_created)
    sd.remove()
    poststop = state.hooks.get("poststop") or []
    if poststop:
        hooks.run_hooks_warn("poststop", poststop, public_state(state, "stopped"))
