"""`run`: create + start, then (unless detached) wait for the process, forward signals to
it, delete the container (unless --keep: it then stays, stopped, with its state and
cgroups, until `delete`, as with runc) and return the process's exit code (128+N for
signal N).

With `process.terminal` (and no -d), the container's terminal is attached to the caller's:
`create` hands the init one end of a socketpair, the master arrives on the other, and the
caller's stdin/stdout are proxied to it until the container exits (ociruntime.process.terminal)."""

from __future__ import annotations

import _signal
import gc
import os

from ociruntime.commands.create import CreateOptions, create
from ociruntime.commands.delete import destroy
from ociruntime.commands.start import release
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG
from ociruntime.signals import FORWARDED_SIGNALS


def run(opts: CreateOptions, detach: bool, keep: bool = False) -> int:
    """`keep`: never destroy the container, even when start fails (runc's shouldDestroy
    is simply !keep): a detached one never is anyway."""
    opts.detach = detach
    if not detach:
        # With a user namespace the init is forked by an intermediate process: it must
        # become our child when that one exits, for us to wait for it.
        sc.set_child_subreaper()
    sd, state = create(opts)
    attached = None
    try:
        if opts.console_peer is not None:
            from ociruntime.process import terminal  # loaded by create already

            try:
                attached = terminal.Attached(terminal.receive_master(opts.console_peer))
            finally:
                opts.console_peer.close()  # type: ignore[attr-defined]
            attached.prepare()
        release(sd, state)
        LOG.stage("run: started")
    except BaseException:
        from ociruntime.commands.delete import kill_and_wait

        if attached is not None:
            attached.close()
        kill_and_wait(state)
        os.waitpid(state.pid, 0)
        LOG.drain_child()
        if not keep:
            destroy(sd, state)
        raise
    # The init has exec'd (or failed after start: startContainer hooks, execve): its
    # last records, up to EOF, into the log, as runc copies its init's log pipe.
    LOG.drain_child()
    if detach:
        return 0
    pid = state.pid
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda n, _frame: _forward(pid, n))
    sd.unlock()  # let `state`/`kill` from other processes in while we wait
    gc.enable()  # a long wait: cycles are collected again (cli.run_and_exit)
    if attached is None:
        _, status = os.waitpid(pid, 0)
        LOG.stage("run: exited")
    else:  # the kernel tells the container's foreground process of a new size itself
        _signal.signal(_signal.SIGWINCH, lambda _n, _frame: attached.resize())
        status = attached.run(pid)
    if not keep:
        try:
            sd.lock()
        except RuntimeFailure:
            pass  # deleted meanwhile by someone else (and the id maybe reused: not ours)
        else:
            destroy(sd, state)
            LOG.stage("run: deleted")
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
