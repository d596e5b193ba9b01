"""`resume ID`: thaw a paused container."""

from __future__ import annotations

from ociruntime.container.container import Container


def resume(root: str, container_id: str) -> None:
    Container.load(root, container_id).resume()
