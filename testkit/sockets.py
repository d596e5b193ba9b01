"""What the listeners at the other end of the runtime's sockets (testkit.recvtty's console
socket, testkit.seccomp_agent's listener) share."""

from __future__ import annotations

import os
from typing import Self


class Listener:
    """A listening unix socket (`sock`) at `path` ("@name": an abstract one), closed with
    `close()` or at the end of a `with` block."""

    path: str

    def close(self) -> None:
        raise NotImplementedError

    def remove_socket_file(self) -> None:
        """The socket's file, if it has one (an abstract socket has none)."""
        if self.path.startswith("@"):
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
