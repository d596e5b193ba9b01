"""`pause ID`: freeze every process of a created or running container (its cgroup)."""

from __future__ import annotations

from ociruntime.cgroups import freezer
from ociruntime.container.state import open_existing, status_of
from ociruntime.errors import RuntimeFailure


def pause(root: str, container_id: str) -> None:
    sd = open_existing(root, container_id)
    state = sd.load()
    if status_of(sd, state) not in ("created", "running"):  # as runc: paused is "not running"
        raise RuntimeFailure("container not running")
    freezer.freeze(state.cgroup_paths)
