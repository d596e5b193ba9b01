"""Signal names as runc accepts them: KILL, SIGKILL, kill, or a number."""

import _signal  # not `signal`: its enum wrappers cost ~3 ms to import
import posix  # not os: the one-shot commands never load it (pathlite.py)

from ociruntime.errors import RuntimeFailure

#: What a foreground `run` or `exec` passes on to the container's process, as runc does.
FORWARDED_SIGNALS = (
    _signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM, _signal.SIGUSR1,
    _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT,
)  # fmt: skip

#: Names as runc accepts them: real signals only (no SIG_DFL/SIG_IGN, no RT names).
_NOT_SIGNALS = ("SIG_DFL", "SIG_IGN", "SIGRTMIN", "SIGRTMAX")


def parse_signal(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if 0 <= number < _signal.NSIG:  # 0: only check the process exists
            return number
        raise RuntimeFailure("unable to signal init: invalid argument")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(_signal, name, None)
    if name in _NOT_SIGNALS or not isinstance(number, int):
        raise RuntimeFailure(f'unknown signal "{text}"')
    return number


def kill_and_reap(pid: int) -> None:
    """SIGKILL `pid` and wait until it is gone, then reap it if it is our child.

    Waiting on a pidfd rather than waitpid alone works whether or not the process is
    our child (the init forked by the user-namespace stage is not); a process already
    gone is no error: the point is that it no longer runs."""
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        posix.kill(pid, _signal.SIGKILL)
        import select

        select.select([pidfd], [], [])  # readable once it has exited
    except ProcessLookupError:
        pass
    finally:
        posix.close(pidfd)
    try:
        posix.waitpid(pid, 0)
    except ChildProcessError:
        pass
