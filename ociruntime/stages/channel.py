"""The transport between a runtime parent and its forked stages: a pair of pipes.

Pipes rather than a socketpair: the `socket` module is not imported on the hot path, and
EOF on the stage's pipe is how the parent learns that the stage died. One JSON object per
line; each message has a `type`. What the messages are and who sends which is
`protocol.py`'s: nothing else names them.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime import jsonlite


class Channel:
    """One end: reads from `rfd`, writes to `wfd`."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self._buffer = b""

    def send(self, kind: str, **fields: object) -> bool:
        """A peer that already exited is not an error here: the next `receive` says why
        (its error message, still in the pipe, or EOF). Returns False then."""
        try:
            posix.write(self.wfd, jsonlite.dumps({"type": kind, **fields}).encode() + b"\n")
        except BrokenPipeError:
            return False
        return True

    def receive(self) -> dict | None:
        """The next message, or None at EOF (the other side exited)."""
        while b"\n" not in self._buffer:
            chunk = posix.read(self.rfd, 65536)
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
                    posix.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = -1


def channel_pair() -> tuple[Channel, Channel]:
    """(parent end, child end), all fds close-on-exec."""
    to_child_r, to_child_w = posix.pipe2(posix.O_CLOEXEC)
    to_parent_r, to_parent_w = posix.pipe2(posix.O_CLOEXEC)
    return Channel(to_parent_r, to_child_w), Channel(to_child_r, to_parent_w)
