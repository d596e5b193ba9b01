"""`events [--stats] [--interval D] ID`: runc's JSON event stream.

One JSON object a line, as runc's Go encoder writes them: `{"type":"stats","id":ID,
"data":{...}}` every interval (or once with --stats) and `{"type":"oom","id":ID}` each
time the OOM killer acts in the container's memory cgroup. The stream ends when the
container's memory cgroup goes away (v1: the eventfd fires on removal, i.e. on
`delete`) or holds no process any more (v2: cgroup.events says "populated 0"), as in
runc; and, whatever its cgroup does, once the container is deleted (its state dir is
gone, or is another container's): a cgroup that existed before `create` stays after
`delete` (runc removes it, which is what ends runc's stream), so watching it alone waited
forever.
"""

from __future__ import annotations

import errno
import gc
import os
import select
import sys
import time

from ociruntime import jsonlite
from ociruntime.cgroups import stats
from ociruntime.cgroups.cgroupfs import Layout
from ociruntime.cgroups.manager import Manager
from ociruntime.container.container import Container
from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}  # fmt: skip


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "1m30s", "250ms", "1.5h", "0") in seconds."""
    rest, total, sign = text, 0.0, 1.0
    if rest[:1] in "+-" and rest:
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, rest = rest[:i], rest[i:]
        j = 0
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        unit, rest = rest[:j], rest[j:]
        if not number or number == "." or unit not in _UNITS:
            raise ValueError(f"invalid duration {text!r}")
        total += float(number) * _UNITS[unit]
    return sign * total


def events(root: str, container_id: str, interval_text: str, stats_only: bool) -> None:
    """Print one stats event (--stats), or stream stats and OOM events until the
    container's cgroup goes; the container's lock is released before the stream."""
    try:
        interval = parse_duration(interval_text)
    except ValueError:
        raise RuntimeFailure(
            f'invalid value "{interval_text}" for flag -interval: parse error'
        ) from None
    if interval <= 0:
        raise RuntimeFailure("duration interval must be greater than 0")
    container = Container.load(root, container_id)
    container.check("events")
    container.unlock()  # a stream may last: never hold the container's lock meanwhile
    cgroups = container.cgroups
    if stats_only:
        _emit("stats", container_id, cgroups.stats())
        return
    gc.enable()  # a stream: cycles are collected again (cli.run_and_exit)
    watch = OomWatch(cgroups.layout)
    try:
        _stream(container_id, cgroups, watch, interval, _presence(container.dir.path))
    finally:
        watch.close()


def _emit(kind: str, container_id: str, data: dict | None = None) -> None:
    event: dict = {"type": kind, "id": container_id}
    if data is not None:
        event["data"] = data
    sys.stdout.write(jsonlite.dumps(event, compact=True) + "\n")
    sys.stdout.flush()


#: How often (ms) the stream looks whether the container was deleted meanwhile.
_PRESENCE_MS = 200


def _presence(state_dir: str) -> Callable[[], bool]:
    """A check that the container `events` loaded is still there: its state dir, the same
    one (a container created again under the id has another), not yet removed by
    `delete`. One stat per call."""
    loaded = os.stat(state_dir)

    def still_there() -> bool:
        try:
            now = os.stat(state_dir)
        except FileNotFoundError:
            return False
        return (now.st_ino, now.st_dev) == (loaded.st_ino, loaded.st_dev)

    return still_there


def _stream(
    container_id: str,
    cgroups: Manager,
    watch: OomWatch,
    interval: float,
    still_there: Callable[[], bool],
) -> None:
    """Poll the OOM watch between stats, so an OOM is reported when it happens rather
    than at the next interval; every _PRESENCE_MS, whether the container was deleted."""
    poller = select.poll()
    for fd, mask in watch.fds():
        poller.register(fd, mask)
    due = time.monotonic() + interval
    while True:
        if not still_there():
            return
        wait_ms = max(0, min(_PRESENCE_MS, int((due - time.monotonic()) * 1000) + 1))
        for fd, _ in poller.poll(wait_ms):
            happened = watch.handle(fd)
            if happened == "oom":
                _emit("oom", container_id)
            elif happened == "gone":
                return
        if time.monotonic() >= due:
            try:
                _emit("stats", container_id, cgroups.stats())
            except OSError as e:  # as runc: a failed collection is logged, not fatal
                from ociruntime.log import LOG

                LOG.error(f"stats: {e}")
            due += interval


class OomWatch:
    """OOM notifications of the container's memory cgroup.

    v1: an eventfd registered on memory.oom_control through cgroup.event_control; it
    also fires when the cgroup is removed (then event_control is gone). v2: poll(2) on
    memory.events (POLLPRI on each change; an OOM kill raises "oom_kill") and on
    cgroup.events ("populated 0" once no process is left)."""

    def __init__(self, layout: Layout) -> None:
        self.d = layout.dir_of("memory")
        self.v1 = layout.where("memory") == "v1"
        self._fds: list[int] = []
        self.event_fd = self.memory_events = self.cgroup_events = -1
        self.kills = 0
        if self.d is None:
            raise RuntimeFailure("events: the container has no memory cgroup")
        try:
            if self.v1:
                self._register_v1()
            else:
                self.memory_events = self._open("memory.events")
                self.cgroup_events = self._open("cgroup.events")
                self.kills = self._oom_kills()
        except OSError as e:
            self.close()
            raise RuntimeFailure(f"events: {e.filename or self.d}: {e.strerror}") from None

    def _open(self, name: str) -> int:
        fd = os.open(os.path.join(str(self.d), name), os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def _register_v1(self) -> None:
        self.event_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._fds.append(self.event_fd)
        control = self._open("memory.oom_control")
        with open(os.path.join(str(self.d), "cgroup.event_control"), "w") as f:
            f.write(f"{self.event_fd} {control}")

    def fds(self) -> list[tuple[int, int]]:
        if self.v1:
            return [(self.event_fd, select.POLLIN)]
        return [(self.memory_events, select.POLLPRI), (self.cgroup_events, select.POLLPRI)]

    def handle(self, fd: int) -> str | None:
        """ "oom", "gone" (stop watching) or None for a change that is neither."""
        if self.v1:
            os.eventfd_read(self.event_fd)
            if not os.path.exists(os.path.join(str(self.d), "cgroup.event_control")):
                return "gone"
            return "oom"
        try:
            return self._handle_v2(fd)
        except OSError as e:
            # ENODEV: the cgroup was removed before we read the change that said it
            # emptied (delete was quicker than this process, e.g. under emulation)
            if e.errno == errno.ENODEV:
                return "gone"
            raise

    def _handle_v2(self, fd: int) -> str | None:
        if fd == self.cgroup_events:
            text = os.pread(fd, 4096, 0).decode()
            return "gone" if "populated 0" in text.splitlines() else None
        kills = self._oom_kills()
        if kills > self.kills:
            self.kills = kills
            return "oom"
        return None

    def _oom_kills(self) -> int:
        text = os.pread(self.memory_events, 4096, 0).decode()
        return stats.keyed(text).get("oom_kill", 0)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
