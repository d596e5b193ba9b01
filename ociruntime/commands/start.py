"""`start`: release a created container's init to exec the user process."""

from __future__ import annotations

import os
import select

from ociruntime.container.state import (
    ContainerState,
    StateDir,
    open_existing,
    public_state,
    status_of,
)
from ociruntime.errors import RuntimeFailure
from ociruntime.process import hooks


def start(root: str, container_id: str) -> None:
    sd = open_existing(root, container_id)
    state = sd.load()
    release(sd, state)


def release(sd: StateDir, state: ContainerState) -> None:
    """Open the exec fifo's read side (unblocking the init), read its byte, remove the fifo,
    then run poststart hooks. A pidfd tells us if the init died instead of writing."""
    status = status_of(sd, state)
    if status == "stopped":
        raise RuntimeFailure("cannot start a container that has stopped")
    if status == "running":
        raise RuntimeFailure("cannot start an already running container")
    if status != "created":
        raise RuntimeFailure(f"cannot start a container in the {status} state")
    # The pidfd first: once the fifo is open the process may exec, exit and be reaped at
    # once (conmon, a subreaper, reaps immediately), and its pid would be gone.
    try:
        pidfd = os.pidfd_open(state.pid)
    except ProcessLookupError:
        raise RuntimeFailure("cannot start a container that has stopped") from None
    try:
        fifo = os.open(sd.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.close(pidfd)
        raise
    try:
        poller = select.poll()
        poller.register(fifo, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        released = False
        while True:
            ready = dict(poller.poll())
            if ready.get(fifo, 0) & (select.POLLIN | select.POLLHUP):
                data = os.read(fifo, 64)
                if data:
                    released = released or data.startswith(b"0")
                    continue
                if released:
                    break  # EOF: the init has exec'd the process (or died trying)
            if pidfd in ready and not released:
                raise RuntimeFailure("container init exited before it could start")
    finally:
        os.close(fifo)
        os.close(pidfd)
    os.unlink(sd.fifo_path)
    poststart = state.hooks.get("poststart") or []
    if poststart:
        hooks.run_hooks_warn("poststart", poststart, public_state(state, "running"))
