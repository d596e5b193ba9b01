"""A small recvtty (runc's contrib/cmd/recvtty) for tests: the other end of
`--console-socket`.

As a helper: `ConsoleSocket(path)` listens on a unix socket; the runtime connects to it
during `create` and sends the pty master (SCM_RIGHTS, one fd, the message being its name,
"/dev/ptmx"). The connection waits in the listen backlog, so a test can run `create` to
completion first and `accept()` afterwards; the returned `Console` writes to and reads from
the container's terminal, always with a deadline.

As a script: `python -m testkit.recvtty SOCKET` accepts one console and proxies it to our
stdio until the container's side of the terminal is closed (run it, then `runc create
--console-socket`).
"""

from __future__ import annotations

import os
import re
import select
import socket
import sys
import time

from testkit.sockets import Listener


class ConsoleSocket(Listener):
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)

    def accept(self, timeout: float = 10) -> Console:
        """The next runtime's console: (name, master) from its one message."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if len(fds) != 1:
            raise AssertionError(f"expected one fd with the console message, got {fds} ({msg!r})")
        return Console(fds[0], msg.decode())

    def close(self) -> None:
        self.sock.close()
        self.remove_socket_file()


class Console:
    """The pty master of a container's terminal."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd, self.name = fd, name
        self.output = b""  # everything read so far

    def write(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def read_until(self, *needles: str, timeout: float = 10) -> str:
        """Read until every needle appeared in the output read since the last call; returns
        that output. Raises with what was read if the deadline passes or the terminal
        closes first."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output[start:].decode(errors="replace")
            if all(n in text for n in needles):
                return text
            if not self._read_some(deadline):
                raise AssertionError(f"wanted {needles!r} on the terminal, got {text!r}")

    def expect(self, pattern: str, timeout: float = 10) -> re.Match:
        """Read until the regex matches the output read since the last call."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output[start:].decode(errors="replace")
            found = re.search(pattern, text)
            if found:
                return found
            if not self._read_some(deadline):
                raise AssertionError(f"wanted /{pattern}/ on the terminal, got {text!r}")

    def read_to_end(self, timeout: float = 10) -> str:
        """Read until the container's side is closed (EIO); returns what was read."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while self._read_some(deadline):
            pass
        if time.monotonic() >= deadline:
            raise AssertionError("the container's terminal was still open at the deadline")
        return self.output[start:].decode(errors="replace")

    def _read_some(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: no process has the slave open any more
            return False
        self.output += data
        return bool(data)

    def close(self) -> None:
        os.close(self.fd)


def main(path: str) -> int:
    """Accept one console and proxy it to stdin/stdout until it closes."""
    with ConsoleSocket(path) as listener:
        console = listener.accept(timeout=None)  # type: ignore[arg-type]
    sys.stderr.write(f"recvtty: received {console.name}\n")
    stdin_open = True
    while True:
        ready = select.select([console.fd] + ([0] if stdin_open else []), [], [])[0]
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                console.write(data)
            else:
                stdin_open = False
        if console.fd in ready:
            try:
                data = os.read(console.fd, 65536)
            except OSError:
                break
            if not data:
                break
            os.write(1, data)
    console.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: recvtty.py SOCKET")
    sys.exit(main(sys.argv[1]))
