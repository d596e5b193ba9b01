"""Talking to systemd (PID 1) over D-Bus, for the systemd cgroup driver (`systemd.py`).

jeepney does the wire protocol (pure Python, no dependency, a blocking API: a runtime
command makes three or four calls and exits, it has no event loop to share). It is
imported here only, and this module only under `--systemd-cgroup` (or for a container
created with it): the cgroupfs path never pays its ~12 ms import.

Which socket: the D-Bus system bus when it answers, as runc (the documented, public
interface, with the bus's policy in between); else, as root, systemd's own private
socket /run/systemd/private, which systemctl itself uses as root and which needs no
dbus-daemon (minimal hosts, early boot). Both speak the same org.freedesktop.systemd1
API; only the system bus needs Hello and a Subscribe for job signals (systemd sends them
to every private connection unconditionally).
"""

from __future__ import annotations

import os

from jeepney import DBusAddress, HeaderFields, MatchRule, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, DBusConnectionBase, prep_socket
from jeepney.io.common import MessageFilters

from ociruntime.errors import RuntimeFailure

SYSTEM_BUS = "/run/dbus/system_bus_socket"
PRIVATE = "/run/systemd/private"
MANAGER = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name="org.freedesktop.systemd1",
    interface="org.freedesktop.systemd1.Manager",
)
#: How long one call, and a job, may take (runc: 30 s for a job).
CALL_TIMEOUT = 30.0


class DBusError(RuntimeFailure):
    """An error reply: `name` is the D-Bus error name (e.g.
    org.freedesktop.systemd1.NoSuchUnit), the message systemd's text."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{text} ({name})" if text else name)
        self.name = name


class _PeerConnection(DBusConnection):
    """A direct connection to systemd's private socket: no bus, hence no Hello."""

    def __init__(self, sock) -> None:  # noqa: ANN001 - a socket.socket
        DBusConnectionBase.__init__(self, sock)
        self._filters = MessageFilters()
        self.unique_name = None


def _system_bus_path() -> str:
    """The system bus socket: DBUS_SYSTEM_BUS_ADDRESS's unix:path= if set, else the
    well-known path."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    for part in address.split(";")[0].split(":", 1)[-1].split(","):
        key, _, value = part.partition("=")
        if address.startswith("unix:") and key == "path":
            return value
    return SYSTEM_BUS


class Systemd:
    """One connection to systemd's manager object."""

    def __init__(self) -> None:
        self.conn, self.via = _connect()
        self._version: int | None = None
        if self.conn.unique_name is None:  # systemd's private socket
            self._wake_peer()
        else:  # a bus: ask for the job signals
            match = MatchRule(type="signal", interface=MANAGER.interface, member="JobRemoved")
            self._send(message_bus.AddMatch(match), "AddMatch")
            self.call("Subscribe")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, signature: str | None = None, body: tuple = ()) -> tuple:
        """Call a Manager method; its reply's body, or DBusError."""
        return self._send(new_method_call(MANAGER, method, signature, body), method)

    def get(self, path: str, interface: str, name: str) -> object:
        """A property of an object of systemd's (a unit's, the manager's)."""
        obj = DBusAddress(path, bus_name=MANAGER.bus_name,
                          interface="org.freedesktop.DBus.Properties")  # fmt: skip
        msg = new_method_call(obj, "Get", "ss", (interface, name))
        return self._send(msg, f"Get {name}")[0][1]

    def _send(self, msg, what: str, timeout: float = CALL_TIMEOUT) -> tuple:  # noqa: ANN001
        """Send a message (jeepney's), wait for its reply; other messages meanwhile go to
        the filters. No answer in time is one line naming the socket."""
        try:
            reply = self.conn.send_and_get_reply(msg, timeout=timeout)
        except TimeoutError:
            raise RuntimeFailure(
                f"{what}: systemd did not answer in {timeout:.0f} s (via {self.via})"
            ) from None
        return self._reply(reply)

    def _wake_peer(self) -> None:
        """The private socket: ping until systemd answers, a second apart. Seen in the
        systemd lane (systemd 252, about one connection in 15): the first call on a new
        private connection left unanswered until more bytes arrived on it (as if read
        together with the authentication's BEGIN and left in a buffer); each ping is
        such bytes, and the calls after the answer are served."""
        peer = DBusAddress(MANAGER.object_path, bus_name=MANAGER.bus_name,
                           interface="org.freedesktop.DBus.Peer")  # fmt: skip
        for _ in range(int(CALL_TIMEOUT)):
            try:
                self.conn.send_and_get_reply(new_method_call(peer, "Ping"), timeout=1.0)
                return
            except TimeoutError:
                continue
        raise RuntimeFailure(f"systemd did not answer in {CALL_TIMEOUT:.0f} s (via {self.via})")

    @staticmethod
    def _reply(reply) -> tuple:  # noqa: ANN001 - a jeepney Message
        if reply.header.message_type == MessageType.error:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(str(reply.header.fields.get(HeaderFields.error_name, "")), text)
        return reply.body

    def version(self) -> int:
        """systemd's version number ("252.39-1~deb12u2" -> 252; -1 if unreadable)."""
        if self._version is None:
            text = str(self.get(MANAGER.object_path, MANAGER.interface, "Version"))
            digits = text.lstrip('"v')
            n = len(digits) - len(digits.lstrip("0123456789"))
            self._version = int(digits[:n]) if n else -1
        return self._version

    def run_job(self, method: str, signature: str, body: tuple) -> str:
        """Call a Manager method that queues a job (StartTransientUnit, StopUnit) and wait
        for the job's end; returns its result ("done", "failed", "canceled"...)."""
        match = MatchRule(type="signal", interface=MANAGER.interface, member="JobRemoved")
        with self.conn.filter(match, bufsize=64) as removed:
            (job,) = self.call(method, signature, body)
            while True:
                try:
                    signal = self.conn.recv_until_filtered(removed, timeout=CALL_TIMEOUT)
                except TimeoutError:
                    raise RuntimeFailure(
                        f"{method}: systemd's job {job} did not end in {CALL_TIMEOUT:.0f} s "
                        f"(via {self.via})"
                    ) from None
                _id, path, _unit, result = signal.body
                if path == job:
                    return str(result)


def _connect() -> tuple[DBusConnection, str]:
    """The system bus, else (root) the private socket; a one-line failure naming both."""
    tried = []
    bus = _system_bus_path()
    for path, peer in ((bus, False), (PRIVATE, True)):
        if peer and os.geteuid() != 0:
            continue
        try:
            sock = prep_socket(path, timeout=CALL_TIMEOUT)
            return (_PeerConnection(sock) if peer else DBusConnection(sock)), path
        except (OSError, TimeoutError) as e:
            tried.append(f"{path}: {getattr(e, 'strerror', None) or e}")
    raise RuntimeFailure(f"--systemd-cgroup: cannot reach systemd over D-Bus ({'; '.join(tried)})")
