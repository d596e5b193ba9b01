"""`start`: release a created container's init to exec the user process."""

from ociruntime.container.container import Container
from ociruntime.container.state import ContainerState, StateDir


def start(root: str, container_id: str) -> None:
    Container.load(root, container_id).start(unlock_while_waiting=True)


def release(sd: StateDir, state: ContainerState) -> None:
    """`run`'s start of the container it has just created (and still holds locked)."""
    Container(sd, state).start()
