"""A write to a file made by a thread outside Python (kernel/_syscall.c).

For the cgroup warm-up (cgroups/warmup.py): the kernel's first cgroup migration after a
quiet spell waits for an RCU grace period (10-25 ms on cgroup v1), and `create`, `run`
and `exec` start that wait first thing so that it overlaps their imports and set-up. A
Python thread could make its first call only once the importing main thread gave up the
GIL, ~2 ms late; this thread needs no GIL. Errors are ignored: the write is only an
optimisation.
"""

from ociruntime.kernel import _syscall

__all__ = ["adopt", "join", "start"]


def start(path: str, data: bytes) -> None:
    """Open `path` write-only, write `data`, close it: in a new thread, returning at once.
    One at a time (RuntimeError while one is under way)."""
    _syscall.write_in_thread(path, data)


def adopt(handle: int) -> None:
    """Take over the thread the compiled launcher started (launcher.c: a pthread_t) as
    if `start` had made it: `join` waits for it."""
    _syscall.adopt_write_thread(handle)


def join() -> None:
    """Wait until the thread `start` made has ended (at once if there is none). Never in
    a forked child: the thread did not survive the fork."""
    _syscall.join_write_thread()
