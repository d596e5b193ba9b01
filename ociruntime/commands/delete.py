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

from ociruntime import cgroups, freezer, hooks
from ociruntime.errors import RuntimeFailure
from ociruntime.state import ContainerState, StateDir, open_existing, public_state, status_of


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
    """SIGKILL every process of the container (its cgroup, or just the init) and wait
    until they are all gone, on pidfds: no timer involved."""
    pidfds = []
    for pid in set(cgroups.procs(state.cgroup_dirs)) | {state.pid}:
        try:
            pidfds.append(os.pidfd_open(pid))
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
        remaining = len(pidfds)
        while remaining:
            for fd, _ in poller.poll():
                poller.unregister(fd)
                remaining -= 1
    finally:
        for fd in pidfds:
            os.close(fd)


def destroy(sd: StateDir, state: ContainerState) -> None:
    """Remove cgroups and state, then run poststop hooks. Processes can outlive a stopped
    init when it did not have its own PID namespace: they are killed first, as runc does."""
    if cgroups.procs(state.cgroup_dirs):
        kill_and_wait(state)
    cgroups.remove(state.cgroup_created)
    sd.remove()
    poststop = state.hooks.get("poststop") or []
    if poststop:
        hooks.run_hooks_warn("poststop", poststop, public_state(state, "stopped"))
