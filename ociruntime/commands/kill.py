"""`kill`: send a signal to the container's init (or, with --all, every process in it)."""

from __future__ import annotations

import os

from ociruntime import cgroups
from ociruntime.errors import RuntimeFailure
from ociruntime.signals import parse_signal
from ociruntime.state import open_existing, status_of


def kill(root: str, container_id: str, signal_text: str, all_processes: bool) -> None:
    sd = open_existing(root, container_id)
    state = sd.load()
    sig = parse_signal(signal_text)
    if status_of(sd, state) == "stopped":
        if all_processes:
            return  # runc: nothing left to signal is not an error for --all
        raise RuntimeFailure("container not running")
    if all_processes:
        for pid in cgroups.procs(state.cgroup_dirs):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return
    try:
        os.kill(state.pid, sig)
    except ProcessLookupError:
        raise RuntimeFailure("container not running") from None
