"""`kill`: send a signal to the container's init (or, with --all, every process in it)."""

from ociruntime.container.container import Container
from ociruntime.signals import parse_signal


def kill(root: str, container_id: str, signal_text: str, all_processes: bool) -> None:
    container = Container.load(root, container_id)
    container.signal(parse_signal(signal_text), all_processes)
