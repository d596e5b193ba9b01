"""The typed messages `create` and the container init exchange over a pair of pipes.

Pipes rather than a socketpair: the `socket` module is not imported on the hot path, and
EOF on the init's pipe is how the parent learns that the init died. One JSON object per
line; each message has a `type`.

init -> create:  {"type": "ready"}
                 {"type": "error", "message": str}
                 {"type": "hooks"}                  (run prestart/createRuntime now)
                 {"type": "map-ids"}                (user namespace made: write its maps)
                 {"type": "init-pid", "pid": int}   (the real init, forked in the userns)
                 {"type": "netns"}                  (linux.netDevices: move them in now)
                 {"type": "seccomp", "fd": int}     (send my notify fd to the agent)
create -> init:  {"type": "ids-mapped"}              (user namespace only: first)
                 {"type": "cgroups-joined"}
                 {"type": "netdevices-moved"}
                 {"type": "hooks-done"}
                 {"type": "seccomp-done"}
"""

from __future__ import annotations

import os
import sys

from ociruntime import jsonlite
from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable


class Channel:
    """One end: reads from `rfd`, writes to `wfd`."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self._buffer = b""

    def send(self, kind: str, **fields: object) -> bool:
        """A peer that already exited is not an error here: the next `receive` says why
        (its error message, still in the pipe, or EOF). Returns False then."""
        try:
            os.write(self.wfd, jsonlite.dumps({"type": kind, **fields}).encode() + b"\n")
        except BrokenPipeError:
            return False
        return True

    def receive(self) -> dict | None:
        """The next message, or None at EOF (the other side exited)."""
        while b"\n" not in self._buffer:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return jsonlite.loads(line)  # type: ignore[return-value]

    def close(self) -> None:
        """Idempotent: a second close must not hit an fd number reused meanwhile."""
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = -1


def channel_pair() -> tuple[Channel, Channel]:
    """(parent end, child end), all fds close-on-exec."""
    to_child_r, to_child_w = os.pipe2(os.O_CLOEXEC)
    to_parent_r, to_parent_w = os.pipe2(os.O_CLOEXEC)
    return Channel(to_parent_r, to_child_w), Channel(to_child_r, to_parent_w)


def run_stage(chan: Channel, body: Callable[[], None], label: str, exit_code: int) -> None:
    """Run a forked stage (the init, exec's intermediate or its process): never returns.
    `body` ends in execve or os._exit; whatever it raises reaches the parent as one
    `error` message (`label` says who failed), or stderr once the channel is gone, and
    the stage exits with `exit_code`: a child must never unwind into its parent's code."""
    try:
        body()
    except RuntimeFailure as e:
        _report(chan, str(e))
    except OSError as e:
        _report(chan, f"{label}: {e}")
    except BaseException as e:  # noqa: BLE001 - see the docstring
        _report(chan, f"{label}: unexpected {type(e).__name__}: {e}")
    os._exit(exit_code)


def _report(chan: Channel, message: str) -> None:
    try:
        sent = chan.send("error", message=message)
    except OSError:
        sent = False
    if not sent:
        sys.stderr.write(message + "\n")
