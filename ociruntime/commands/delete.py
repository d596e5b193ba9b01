"""`delete`: remove a stopped container (killing it first with --force), its cgroups and
its state; then run poststop hooks (ociruntime.container.container does each step).

Devices moved in by linux.netDevices are left alone, as the spec requires: when the
network namespace dies the kernel returns physical ones to the host and destroys virtual
ones."""

from ociruntime.container import container as _container
from ociruntime.container.container import Container
from ociruntime.container.state import ContainerState, StateDir
from ociruntime.errors import RuntimeFailure


def delete(root: str, container_id: str, force: bool) -> None:
    try:
        Container.load(root, container_id).delete(force)
    except RuntimeFailure as e:
        if force and str(e) == "container does not exist":
            return  # runc: `delete --force` of an unknown (or just deleted) one succeeds
        raise


def kill_and_wait(state: ContainerState) -> None:
    """`run`'s cleanup when start fails: every process of the container killed and gone."""
    _container.kill_and_wait(state)


def destroy(sd: StateDir, state: ContainerState) -> None:
    """`run`'s removal of the container it ran (locked by the caller)."""
    Container(sd, state).destroy()
