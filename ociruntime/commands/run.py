"""`run`: create + start, then (unless detached) wait for the process, forward signals to
it, delete the container and return the process's exit code (128+N for signal N)."""

from __future__ import annotations

import _signal
import os

from ociruntime.commands.create import CreateOptions, create
from ociruntime.commands.delete import destroy
from ociruntime.commands.start import release

_FORWARDED = (_signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM, _signal.SIGUSR1,
              _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT)  # fmt: skip


def run(opts: CreateOptions, detach: bool) -> int:
    sd, state = create(opts)
    try:
        release(sd, state)
    except BaseException:
        from ociruntime.commands.delete import kill_and_wait

        kill_and_wait(state)
        os.waitpid(state.pid, 0)
        destroy(sd, state)
        raise
    if detach:
        return 0
    pid = state.pid
    for sig in _FORWARDED:
        _signal.signal(sig, lambda n, _frame: _forward(pid, n))
    sd.unlock()  # let `state`/`kill` from other processes in while we wait
    _, status = os.waitpid(pid, 0)
    sd.lock()
    destroy(sd, state)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
