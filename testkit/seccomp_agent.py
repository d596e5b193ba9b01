"""A small seccomp agent (the other end of `linux.seccomp.listenerPath`) for tests, in the
manner of runc's contrib/cmd/seccompagent.

The runtime connects to the listener socket once per process whose filter has
SCMP_ACT_NOTIFY rules and sends one message: the ContainerProcessState JSON
(`{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state": {...}}`) with the
filter's notify fd attached (SCM_RIGHTS). The agent then answers the process's
notifications on that fd with the SECCOMP_IOCTL_NOTIF_RECV / _SEND ioctls.

As a helper: `SeccompAgent(path, answers)` listens on a unix socket (an abstract one for a
path starting with "@", as Go spells it) and serves in background threads. `answers` maps a
syscall name to what it returns: `("errno", N)` fails it with errno N, `("value", V)`
makes it "succeed" with V without running it, and every other notified syscall continues
(SECCOMP_USER_NOTIF_FLAG_CONTINUE: the kernel runs it). `received` holds every
ContainerProcessState received and `calls` every notification answered, as
`(name, pid, path)`, `path` being the first string argument for mkdir/mkdirat (read from
the caller's memory). `wait_for(n)` waits, with a deadline, until n states arrived.

As a script: `python -m testkit.seccomp_agent SOCKET [NAME=errno:N | NAME=value:V]...`
serves until SIGINT or SIGTERM and prints each state and notification as it arrives (to try
runc by hand).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import threading

import pyseccomp

from testkit.sockets import Listener

# struct seccomp_notif: u64 id, u32 pid, u32 flags, then struct seccomp_data: int nr,
# u32 arch, u64 instruction_pointer, u64 args[6]. struct seccomp_notif_resp: u64 id,
# s64 val, s32 error, u32 flags.
NOTIF = struct.Struct("=QIIiIQ6Q")
NOTIF_RESP = struct.Struct("=QqiI")


def _iowr(nr: int, size: int) -> int:
    """_IOWR('!', nr, size) of linux/seccomp.h."""
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


SECCOMP_IOCTL_NOTIF_RECV = _iowr(0, NOTIF.size)
SECCOMP_IOCTL_NOTIF_SEND = _iowr(1, NOTIF_RESP.size)
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
PATH_ARG = {"mkdir": 0, "mkdirat": 1}  # which argument is the path


class SeccompAgent(Listener):
    def __init__(self, path: str, answers: dict[str, tuple[str, int]] | None = None) -> None:
        self.path, self.answers = path, dict(answers or {})
        self.received: list[dict] = []
        self.calls: list[tuple[str, int, str | None]] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stop_r, self._stop_w = os.pipe()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.listen(8)
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    # -- accepting ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while True:
            ready = select.select([self.sock, self._stop_r], [], [])[0]
            if self._stop_r in ready:
                return
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10)
                try:
                    state, fd = _receive(conn)
                except (OSError, ValueError) as e:
                    self._record_error(f"receiving the state and fd: {e}")
                    continue
            with self._cond:
                self.received.append(state)
                self._cond.notify_all()
            t = threading.Thread(target=self._serve, args=(fd,), daemon=True)
            self._threads.append(t)
            t.start()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"the agent received {self.received}, wanted {count}")
            return list(self.received)

    # -- answering notifications -------------------------------------------------------
    def _serve(self, fd: int) -> None:
        """Answer notifications until every process using the filter is gone (POLLHUP)
        or the agent stops."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if self._stop_r in events:
                    return
                if events.get(fd, 0) & select.POLLIN:
                    self._answer_one(fd)
                elif events.get(fd, 0) & (select.POLLHUP | select.POLLERR):
                    return
        finally:
            os.close(fd)

    def _answer_one(self, fd: int) -> None:
        buf = bytearray(NOTIF.size)  # the kernel wants it zeroed
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
        except OSError:  # ENOENT: the caller went away meanwhile
            return
        notif_id, pid, _flags, nr, _arch, _ip, *args = NOTIF.unpack(buf)
        name = _syscall_name(nr)
        path = _read_string(pid, args[PATH_ARG[name]]) if name in PATH_ARG else None
        kind, value = self.answers.get(name, ("continue", 0))
        if kind == "errno":
            resp = NOTIF_RESP.pack(notif_id, 0, -value, 0)
        elif kind == "value":
            resp = NOTIF_RESP.pack(notif_id, value, 0, 0)
        else:
            resp = NOTIF_RESP.pack(notif_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        with self._cond:
            self.calls.append((name, pid, path))
            self._cond.notify_all()
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, bytearray(resp))
        except OSError as e:
            if e.errno != 2:  # ENOENT: the caller was killed meanwhile
                self._record_error(f"answering {name}: {e}")

    def _record_error(self, message: str) -> None:
        with self._cond:
            self.errors.append(message)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        for t in self._threads:
            t.join(timeout=10)
        self.sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)
        self.remove_socket_file()


def _receive(conn: socket.socket) -> tuple[dict, int]:
    """One ContainerProcessState and its fd. The JSON is read until it parses, not until
    EOF: runc 1.1.5 keeps its end of the connection open."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"expected one fd with the state, got {len(fds)}: {data!r}")
    while True:
        try:
            return json.loads(data), fds[0]
        except ValueError:
            more = conn.recv(1 << 20)
            if not more:
                os.close(fds[0])
                raise
            data += more


def _syscall_name(nr: int) -> str:
    try:
        return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, nr).decode()
    except ValueError:
        return str(nr)


def _read_string(pid: int, address: int) -> str | None:
    """A NUL-terminated string from the caller's memory (for the record only: a real
    agent would also check the notification is still valid after reading)."""
    try:
        with open(f"/proc/{pid}/mem", "rb") as f:
            f.seek(address)
            return f.read(4096).split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None


def main(path: str, specs: list[str]) -> int:
    answers = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        kind, _, value = rest.partition(":")
        answers[name] = (kind, int(value))
    for sig in (signal.SIGINT, signal.SIGTERM):  # a shell's background job ignores SIGINT
        signal.signal(sig, signal.default_int_handler)
    with SeccompAgent(path, answers) as agent:
        seen_states = seen_calls = 0
        try:
            while True:
                with agent._cond:
                    agent._cond.wait()
                    states, calls = agent.received[seen_states:], agent.calls[seen_calls:]
                    seen_states, seen_calls = len(agent.received), len(agent.calls)
                for state in states:
                    print(json.dumps(state), flush=True)
                for call in calls:
                    print("notified:", *call, flush=True)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: seccomp_agent.py SOCKET [NAME=errno:N | NAME=value:V]...")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
