"""`pause ID`: freeze every process of a created or running container (its cgroup)."""

from __future__ import annotations

from ociruntime.container.container import Container


def pause(root: str, container_id: str) -> None:
    Container.load(root, container_id).pause()
