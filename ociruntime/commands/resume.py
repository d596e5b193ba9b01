"""`resume ID`: thaw a paused container."""

from __future__ import annotations

from ociruntime.cgroups import freezer
from ociruntime.container.state import open_existing, status_of
from ociruntime.errors import RuntimeFailure


def resume(root: str, container_id: str) -> None:
    sd = open_existing(root, container_id)
    state = sd.load()
    if status_of(sd, state) != "paused":
        raise RuntimeFailure("container not paused")
    freezer.thaw(state.cgroup_paths)
