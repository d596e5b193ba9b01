"""Pausing a container: the v1 freezer controller, or cgroup v2's cgroup.freeze.

Takes the container's cgroup paths as `state.json` records them (controller ->
directory, "" for the v2 one): v1's freezer wins where both exist (hybrid hosts), as
for every controller. `is_frozen` is on the hot path (`state`, `list`, `kill`...): one
small read, nothing imported.
"""

import posix  # not os: the one-shot commands never load it (pathlite.py)

from ociruntime import pathlite
from ociruntime.errors import RuntimeFailure
from ociruntime.fsutil import read_file


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def is_frozen(paths: dict[str, str]) -> bool:
    """Is the container's cgroup paused (frozen by us, not by an ancestor)?"""
    v1 = paths.get("freezer")
    if v1:
        state = (read_file(v1, "freezer.state") or "").strip()
        if state == "FREEZING":
            return True  # a pause under way (or stuck: `pause` thaws it back then)
        if state != "FROZEN":
            return False
        return (read_file(v1, "freezer.self_freezing") or "1").strip() == "1"
    v2 = paths.get("")
    return bool(v2) and (read_file(v2, "cgroup.freeze") or "").strip() == "1"


def freeze(paths: dict[str, str]) -> None:
    """Freeze the cgroup and wait until the kernel says every process is frozen: `pause`
    returns only once nothing in the container runs any more."""
    v1, v2 = paths.get("freezer"), paths.get("")
    try:
        if v1:
            _freeze_v1(v1)
        elif v2:
            _freeze_v2(v2)
        else:
            raise RuntimeFailure("pause: the container has no freezer cgroup")
    except OSError as e:
        raise RuntimeFailure(f"pause: {e.filename}: {e.strerror}") from None


def thaw(paths: dict[str, str]) -> None:
    """Let the cgroup run again (no wait: thawing does not fail half-way)."""
    v1, v2 = paths.get("freezer"), paths.get("")
    try:
        if v1:
            _write(pathlite.join(v1, "freezer.state"), "THAWED")
        elif v2:
            _write(pathlite.join(v2, "cgroup.freeze"), "0")
    except OSError as e:
        raise RuntimeFailure(f"resume: {e.filename}: {e.strerror}") from None


def _freeze_v1(d: str) -> None:
    """v1 may stay FREEZING while tasks keep forking, or for long on a loaded machine: as
    runc, ask again, thawing now and then so that the forks settle, and give up (thawed)
    after a while. There is no event to wait for on v1: the state file is all there is,
    so the wait is bounded by time (5 s), not by a count of tries a busy machine can burn
    through in a few milliseconds."""
    import time

    state_file = pathlite.join(d, "freezer.state")
    deadline = time.monotonic() + 5.0
    try:
        attempt = 0
        while True:
            if attempt % 50 == 49:
                _write(state_file, "THAWED")
                time.sleep(0.01)
            _write(state_file, "FROZEN")
            if attempt >= 25:
                time.sleep(0.001)  # a slow freeze: let the kernel get on with it
            state = (read_file(d, "freezer.state") or "").strip()
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise RuntimeFailure(f"pause: unexpected freezer state {state!r}")
            if time.monotonic() > deadline:
                raise RuntimeFailure("pause: the container's processes could not be frozen")
            attempt += 1
    except BaseException:
        _write(state_file, "THAWED")  # never leave it half frozen
        raise


def _freeze_v2(d: str) -> None:
    """Write 1 to cgroup.freeze, then wait until cgroup.events says "frozen 1": the
    kernel signals each change of that file to poll(2) as POLLPRI."""
    import select

    _write(pathlite.join(d, "cgroup.freeze"), "1")
    fd = posix.open(pathlite.join(d, "cgroup.events"), posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        for _ in range(1000):
            events = posix.pread(fd, 4096, 0).decode()
            if "frozen 1" in events.splitlines():
                return
            if not poller.poll(10_000):
                break
        _write(pathlite.join(d, "cgroup.freeze"), "0")
        raise RuntimeFailure("pause: the container's processes could not be frozen")
    finally:
        posix.close(fd)
