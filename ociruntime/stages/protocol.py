"""The messages a runtime parent (`create`, exec's P) and its forked stages exchange.

Every message type is named here and only here: each exchange is one method on each
side, so a new exchange is one constant and one method pair, and nothing else compares a
message's type. The transport is `channel.Channel` (one JSON object per line over a pair
of pipes); EOF means the other side exited.

create (ParentEnd)                                  init (StageEnd), forked
------------------                                  -----------------------
                                                    [user namespace stage (userns_stage)]
wait_for_id_mapping_request()  <------ MAP_IDS ---- request_id_mapping()
  (write uid_map/gid_map)
ids_mapped()                   --- IDS_MAPPED ---->   (become root, fork the real init)
wait_for_init_pid()            <----- INIT_PID ---- send_init_pid(pid); the stage exits
                                                    [the init]
cgroups_joined()               - CGROUPS_JOINED -> wait_for_cgroups_joined()
serve_until_ready():
  on_netns (move devices)      <------ NETNS ------ announce_netns()
                               - NETDEVICES_MOVED > wait_for_netdevices_moved()
  on_hooks (prestart, ...)     <------ HOOKS ------ request_hooks()
                               --- HOOKS_DONE ---->
  on_seccomp (fd to the agent) <----- SECCOMP ----- report_seccomp_fd(fd)
                               -- SECCOMP_DONE --->
  returns                      <------ READY ------ send_ready(); the channel closes

exec P (ParentEnd)                                  I, then C (StageEnd)
wait_for_pid()                 <------- PID ------- send_pid(pid)            (I)
serve_until_exec():
  on_seccomp                   <----- SECCOMP ----- report_seccomp_fd(fd)    (C)
                               -- SECCOMP_DONE --->
  returns at EOF                                    execve (the pipe is close-on-exec)

Any stage, at any point:       <------ ERROR ------ report_error(message) (run_stage)

A parent side method raises RuntimeFailure on the stage's ERROR (its message), on EOF and
on any other message than the one it expects. A stage side wait exits the stage (status
1) when the answer does not come: the parent failed and reports why itself.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import sys

from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.log import LOG

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from ociruntime.stages.channel import Channel

# stage -> parent
MAP_IDS = "map-ids"  # user namespace unshared: write its maps
INIT_PID = "init-pid"  # {pid}: the real init, forked in the user namespace
NETNS = "netns"  # the init's network namespace exists: move linux.netDevices in
HOOKS = "hooks"  # run prestart + createRuntime now
SECCOMP = "seccomp"  # {fd}: filter loaded, take its notify fd for the agent
READY = "ready"  # set up, waiting on the exec fifo
PID = "pid"  # {pid}: exec's C, as its intermediate I forked it
ERROR = "error"  # {message}: one line, the operation fails and rolls back
# parent -> stage
IDS_MAPPED = "ids-mapped"
CGROUPS_JOINED = "cgroups-joined"
NETDEVICES_MOVED = "netdevices-moved"
HOOKS_DONE = "hooks-done"
SECCOMP_DONE = "seccomp-done"


class StageEnd:
    """The forked side: the init (and its user-namespace stage), exec's I and C."""

    __slots__ = ("chan",)

    def __init__(self, chan: Channel) -> None:
        self.chan = chan

    def fds(self) -> tuple[int, int]:
        """The channel's fds, for a stage closing every other fd it inherited."""
        return self.chan.rfd, self.chan.wfd

    def close(self) -> None:
        self.chan.close()

    def _await(self, kind: str) -> None:
        """The parent's answer; anything else means it failed and reports it: exit."""
        reply = self.chan.receive()
        if not reply or reply.get("type") != kind:
            posix._exit(1)

    def request_id_mapping(self) -> None:
        """User namespace unshared: wait until the parent has written its maps."""
        self.chan.send(MAP_IDS)
        self._await(IDS_MAPPED)

    def send_init_pid(self, pid: int) -> None:
        self.chan.send(INIT_PID, pid=pid)

    def wait_for_cgroups_joined(self) -> None:
        self._await(CGROUPS_JOINED)

    def announce_netns(self) -> None:
        """Our network namespace exists: the parent moves the devices in meanwhile."""
        self.chan.send(NETNS)

    def wait_for_netdevices_moved(self) -> None:
        self._await(NETDEVICES_MOVED)

    def request_hooks(self) -> None:
        """prestart and createRuntime run in the parent (the runtime namespace)."""
        self.chan.send(HOOKS)
        self._await(HOOKS_DONE)

    def report_seccomp_fd(self, fd: int) -> None:
        """The loaded filter's notify fd: the parent copies it out of this process
        (pidfd_getfd) for the agent. Our copy is closed once it answers, so the container
        never holds its own notify fd. What runs here under the filter: one write, one
        read, one close."""
        self.chan.send(SECCOMP, fd=fd)
        reply = self.chan.receive()
        posix.close(fd)
        if reply is None:
            posix._exit(1)  # the parent could not reach the agent: it reports that and kills us
        if reply.get("type") != SECCOMP_DONE:
            where = pointer("linux", "seccomp")
            raise field_error(where, f"unexpected reply to the notify fd: {reply}")

    def send_ready(self) -> bool:
        """False if the parent is gone (nobody will record nor start us)."""
        return self.chan.send(READY)

    def send_pid(self, pid: int) -> None:
        self.chan.send(PID, pid=pid)

    def report_error(self, message: str) -> bool:
        """False if the parent is gone (the caller then writes to stderr)."""
        return self.chan.send(ERROR, message=message)


class ParentEnd:
    """The runtime's side: `create` for the init, exec's P for I and C. `eof` is the
    failure an unexpected EOF is, `failed` the one for an error message without text."""

    __slots__ = ("chan", "eof", "failed", "_early")

    def __init__(self, chan: Channel, eof: str, failed: str) -> None:
        self.chan, self.eof, self.failed = chan, eof, failed
        self._early: dict | None = None  # exec: C's SECCOMP, come before I's PID

    def close(self) -> None:
        self.chan.close()

    def _next(self) -> dict:
        """The next message, raising for EOF and for the stage's error."""
        msg = self.chan.receive()
        if msg is None:
            raise RuntimeFailure(self.eof)
        if msg.get("type") == ERROR:
            raise RuntimeFailure(str(msg.get("message", self.failed)))
        return msg

    def _expect(self, kind: str) -> dict:
        msg = self._next()
        if msg.get("type") != kind:
            raise _unexpected(msg, kind)
        return msg

    def wait_for_id_mapping_request(self) -> None:
        self._expect(MAP_IDS)

    def ids_mapped(self) -> None:
        self.chan.send(IDS_MAPPED)

    def wait_for_init_pid(self) -> int:
        return int(self._expect(INIT_PID)["pid"])

    def cgroups_joined(self) -> None:
        self.chan.send(CGROUPS_JOINED)

    def serve_until_ready(
        self,
        on_netns: Callable[[], None] | None,
        on_hooks: Callable[[], None],
        on_seccomp: Callable[[int], None],
    ) -> None:
        """Answer the init's requests until it is ready (`on_netns` None: no netDevices,
        so the init never asks)."""
        while True:
            msg = self._next()
            kind = msg.get("type")
            if kind == READY:
                return
            if kind == NETNS and on_netns is not None:  # before any hook, as runc
                on_netns()
                self.chan.send(NETDEVICES_MOVED)
            elif kind == HOOKS:
                on_hooks()
                self.chan.send(HOOKS_DONE)
            elif kind == SECCOMP:
                on_seccomp(msg.get("fd"))  # type: ignore[arg-type]
                self.chan.send(SECCOMP_DONE)
            else:
                raise _unexpected(msg, READY)

    def wait_for_pid(self) -> int:
        """exec's C, as I reports it. C runs on as soon as I forks it and shares the
        channel: its SECCOMP may come first (it then waits for the answer), and is kept
        for serve_until_exec, which needs the pid to take the fd."""
        msg = self._next()
        if msg.get("type") == SECCOMP:
            self._early, msg = msg, self._next()
        if msg.get("type") != PID:
            raise _unexpected(msg, PID)
        return int(msg["pid"])

    def serve_until_exec(self, on_seccomp: Callable[[int], None]) -> None:
        """C's notify fds (if any) until EOF: its execve closed the channel."""
        while True:
            msg, self._early = self._early or self.chan.receive(), None
            if msg is None:
                return
            if msg.get("type") == ERROR:
                raise RuntimeFailure(str(msg.get("message", self.failed)))
            if msg.get("type") != SECCOMP:
                raise _unexpected(msg, SECCOMP)
            on_seccomp(msg.get("fd"))  # type: ignore[arg-type]
            self.chan.send(SECCOMP_DONE)


def _unexpected(msg: dict, expected: str) -> RuntimeFailure:
    return RuntimeFailure(f"protocol: expected {expected!r}, got {str(msg.get('type'))!r}")


def run_stage(end: StageEnd, body: Callable[[], None], label: str, exit_code: int) -> None:
    """Run a forked stage (the init, exec's intermediate or its process): never returns.
    `body` ends in execve or posix._exit; whatever it raises reaches the parent as one
    error message (`label` says who failed), or stderr once the channel is gone, and
    the stage exits with `exit_code`: a child must never unwind into its parent's code."""
    try:
        body()
    except RuntimeFailure as e:
        _report(end, str(e))
    except OSError as e:
        _report(end, f"{label}: {e}")
    except BaseException as e:  # noqa: BLE001 - see the docstring
        _report(end, f"{label}: unexpected {type(e).__name__}: {e}")
    posix._exit(exit_code)


def _report(end: StageEnd, message: str) -> None:
    try:
        sent = end.report_error(message)
    except OSError:
        sent = False
    if not sent:  # after ready (post-start): a record through the log pipe too, if any
        if LOG.path:
            LOG.error(message)
        else:
            sys.stderr.write(message + "\n")
