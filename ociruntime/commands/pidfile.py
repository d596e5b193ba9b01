"""`--pid-file` (create, run, exec): where engines learn the pid of what was started.

Kept apart from the commands so that `create`, `exec` and the CLI share it without
importing each other (the CLI imports every command)."""

from __future__ import annotations

import os

from ociruntime.errors import RuntimeFailure
from ociruntime.fsutil import write_atomic


def check_dir(path: str) -> None:
    """The pid file is written once the process exists (engines poll for it), so a
    directory that is not there would fail only then, after a process was started that
    must be killed again: refuse it before anything starts."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RuntimeFailure(f"--pid-file {path}: no such directory {directory}")


def write(path: str, pid: int) -> None:
    """Atomically, as runc: engines poll for this file and must never read it half-written."""
    write_atomic(os.path.abspath(path), str(pid).encode(), 0o644)
