"""`kill`: send a signal to the container's init (or, with --all, every process in it)."""

from __future__ import annotations

import os

from ociruntime import cgroups
from ociruntime.errors import RuntimeFailure
from ociruntime.signals import parse_signal
from ociruntime.state import open_existing, status_of


def kill(root: str, container_id: str, signal_text: str, all_processes: bool) -> None:
    sig = parse_signal(signal_text)
    sd = open_existing(root, container_id)
    state = sd.load()
    if status_of(sd, state) == "stopped":
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
