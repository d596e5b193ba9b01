"""`delete`: remove a stopped container (killing it first with --force, or when it was
only created, as runc does), its cgroups and its state; then run poststop hooks."""

from __future__ import annotations

import _signal
import os
import select

from ociruntime import cgroups, hooks
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
    if status not in ("stopped", "created") and not force:
        raise RuntimeFailure(
            f"cannot delete container {container_id} that is not stopped: {status}"
        )
    if status != "stopped":
        kill_and_wait(state)
    destroy(sd, state)


def kill_and_wait(state: ContainerState) -> None:
    """SIGKILL everything in the container and wait until the init is gone (pidfd)."""
    for pid in cgroups.procs(state.cgroup_dirs) or [state.pid]:
        try:
            os.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        pidfd = os.pidfd_open(state.pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll()
    finally:
        os.close(pidfd)


def destroy(sd: StateDir, state: ContainerState) -> None:
    cgroups.remove(state.cgroup_created)
    sd.remove()
    poststop = state.hooks.get("poststop") or []
    if poststop:
        hooks.run_hooks_warn("poststop", poststop, public_state(state, "stopped"))
