"""`kill`: send a signal to the container's init (or, with --all, every process in it)."""

from __future__ import annotations

import _signal
import os

from ociruntime.cgroups import cgroupfs, freezer
from ociruntime.container.state import ContainerState, open_existing, status_of
from ociruntime.errors import RuntimeFailure
from ociruntime.signals import parse_signal


def kill(root: str, container_id: str, signal_text: str, all_processes: bool) -> None:
    sd = open_existing(root, container_id)
    state = sd.load()
    sig = parse_signal(signal_text)
    status = status_of(sd, state)
    if status in ("stopped", "creating"):  # creating: no init to signal yet (pid 0)
        if all_processes:
            return  # runc: nothing left to signal is not an error for --all
        raise RuntimeFailure("container not running")
    if all_processes:
        kill_all(state, sig)
        return
    try:
        os.kill(state.pid, sig)
    except ProcessLookupError:
        raise RuntimeFailure("container not running") from None
    if status == "paused" and sig == _signal.SIGKILL:
        freezer.thaw(state.cgroup_paths)  # a frozen process dies only once thawed (v1)


def kill_all(state: ContainerState, sig: int) -> None:
    """Every process of the container's cgroup. SIGKILL through cgroup v2's cgroup.kill
    where the container has it (the kernel kills them all, forks included); otherwise, as
    runc 1.1.5, freeze the cgroup so nothing forks meanwhile, signal each process, thaw
    (a paused container is thawed too, as runc does)."""
    unified = state.cgroup_paths.get("")
    if sig == _signal.SIGKILL and unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
        with open(os.path.join(unified, "cgroup.kill"), "w") as f:
            f.write("1")
        if freezer.is_frozen(state.cgroup_paths):
            freezer.thaw(state.cgroup_paths)
        return
    frozen = False
    if state.cgroup_paths:
        try:
            freezer.freeze(state.cgroup_paths)
            frozen = True
        except RuntimeFailure:
            pass  # as runc: signal them anyway
    try:
        for pid in cgroupfs.procs(state.cgroup_dirs):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        if frozen:
            freezer.thaw(state.cgroup_paths)
