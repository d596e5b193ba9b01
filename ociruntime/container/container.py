"""A container: its locked state directory, its record, its status and its cgroup.

Every command that acts on an existing container loads one (`Container.load`: the id
checked, the directory locked, the record read), asks it whether the operation is allowed
in the current status (`check`: the one table of refusals, in runc's words) and then acts
through it. The status is derived from the kernel on each call (state.status_of), never
stored.

The lock (state.StateDir) is held from `load` until the command ends or `unlock`: it guards
reads and writes of the record. `start` and `delete` still hold it while they wait for the
init to exec or for the killed processes to go (as before this module): released there, a
second start could open the fifo too, and a second delete could remove the directory
under the first. `events` and `ps` release it once the record is read, before their
stream or the host's ps runs.
"""

import _signal
import errno
import posix  # not os: the one-shot commands never load it (pathlite.py)

from ociruntime.container.state import (
    ContainerState,
    StateDir,
    init_alive,
    open_existing,
    proc_stat,
    public_state,
    status_of,
)
from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups.manager import Manager

#: operation -> (statuses it is allowed in, refusal for a given status, refusal otherwise).
#: The words are runc's (or, where runc has none, ours as they were).
_TRANSITIONS: dict[str, tuple[tuple[str, ...], dict[str, str], str]] = {
    "start": (
        ("created",),
        {
            "stopped": "cannot start a container that has stopped",
            "running": "cannot start an already running container",
        },
        "cannot start a container in the {status} state",
    ),
    # creating: no init to signal yet (pid 0)
    "kill": (("created", "running", "paused"), {}, "container not running"),
    "pause": (("created", "running"), {}, "container not running"),  # paused is "not running"
    "resume": (("paused",), {}, "container not paused"),
    # creating: create writes the record
    "update": (("created", "running", "paused"), {}, "container not running"),
    "events": (
        ("creating", "created", "running", "paused"),
        {},
        "container with id {id} is not running",
    ),
    # runtime.md: deleting a container that is not stopped (created included) MUST fail
    "delete": (("stopped",), {}, "cannot delete container {id} that is not stopped: {status}"),
    "exec": (
        ("created", "running"),
        {
            "stopped": "cannot exec in a stopped container",
            "creating": "cannot exec in a container that is being created",
        },
        "cannot exec in a paused container (use --ignore-paused to override)",
    ),
    "exec --ignore-paused": (
        ("created", "running", "paused"),
        {"stopped": "cannot exec in a stopped container"},
        "cannot exec in a container that is being created",
    ),
}


def refusal(operation: str, status: str, container_id: str) -> str | None:
    """Why `operation` may not be done in `status`, or None if it may."""
    allowed, by_status, otherwise = _TRANSITIONS[operation]
    if status in allowed:
        return None
    return by_status.get(status, otherwise).format(status=status, id=container_id)


class Container:
    """One existing container, locked for the command that loaded it."""

    __slots__ = ("dir", "state", "_cgroups")

    def __init__(self, sd: StateDir, state: ContainerState) -> None:
        self.dir = sd
        self.state = state
        self._cgroups: Manager | None = None

    @classmethod
    def load(cls, root: str, container_id: str) -> "Container":
        """The container `container_id` under `root`, locked: an invalid id, or no such
        container, is a one-line failure ("container does not exist")."""
        sd = open_existing(root, container_id)
        return cls(sd, sd.load())

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def cgroups(self) -> "Manager":
        """The container's cgroup (built from the record once)."""
        if self._cgroups is None:
            self._cgroups = self.state.cgroup_manager()
        return self._cgroups

    def status(self) -> str:
        """creating / created / running / paused / stopped, read from the kernel now."""
        return status_of(self.dir, self.state)

    def check(self, operation: str) -> str:
        """The current status, if `operation` is allowed in it; else its refusal."""
        status = self.status()
        why = refusal(operation, status, self.id)
        if why is not None:
            raise RuntimeFailure(why)
        return status

    def public(self, status: str) -> dict:
        """The runtime-spec state object, as `state` prints it and hooks receive it."""
        return public_state(self.state, status)

    def unlock(self) -> None:
        """Let other commands at the record (before a wait that may last)."""
        self.dir.unlock()

    def save(self) -> None:
        self.dir.save(self.state)

    # --- start ----------------------------------------------------------------------------

    def start(self, unlock_while_waiting: bool = False) -> None:
        """Release a created container's init: open the exec fifo's read side (unblocking
        it) and remove the fifo's name, read the init's byte, then run poststart hooks. A
        pidfd tells us if the init died instead of writing.

        Once the fifo's name is gone no other `start` can release the init (the status
        is "running" from then on: the init holds the fifo by fd, not by name), so with
        `unlock_while_waiting` the lock goes before the wait: an init that is slow to
        exec (stopped, starved) never keeps `state`, `kill` or `delete --force` waiting.
        `run` keeps its lock: it cleans up under it should the start fail."""
        self.check("start")
        # The pidfd first: once the fifo is open the process may exec, exit and be reaped
        # at once (conmon, a subreaper, reaps immediately), and its pid would be gone.
        try:
            pidfd = posix.pidfd_open(self.state.pid)
        except ProcessLookupError:
            raise RuntimeFailure("cannot start a container that has stopped") from None
        try:
            fifo = posix.open(
                self.dir.fifo_path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC
            )
        except BaseException:
            posix.close(pidfd)
            raise
        try:
            posix.unlink(self.dir.fifo_path)
            if unlock_while_waiting:
                self.unlock()
            _wait_for_exec(fifo, pidfd)
        finally:
            posix.close(fifo)
            posix.close(pidfd)
        self._run_hooks("poststart", "running")

    def _run_hooks(self, name: str, status: str) -> None:
        """Run the recorded poststart or poststop hooks; their failures are warnings."""
        commands = self.state.hooks.get(name) or []
        if commands:
            from ociruntime.process import hooks

            hooks.run_hooks_warn(name, commands, self.public(status))

    # --- signals, pause -------------------------------------------------------------------

    def signal(self, sig: int, all_processes: bool) -> None:
        """`kill`: the init, or with `all_processes` every process of the cgroup. Nothing
        left to signal is an error, except for --all (as runc)."""
        status = self.status()
        why = refusal("kill", status, self.id)
        if why is not None:
            if all_processes:
                return
            raise RuntimeFailure(why)
        if all_processes:
            self.cgroups.kill_all(sig)
            return
        try:
            posix.kill(self.state.pid, sig)
        except ProcessLookupError:
            raise RuntimeFailure("container not running") from None
        if status == "paused" and sig == _signal.SIGKILL:
            self.cgroups.thaw()  # a frozen process dies only once thawed (v1)

    def pause(self) -> None:
        self.check("pause")
        self.cgroups.freeze()

    def resume(self) -> None:
        self.check("resume")
        self.cgroups.thaw()

    def update(self, change: dict) -> None:
        """Merge `change` into the recorded resources, write them all, record the result."""
        from ociruntime.cgroups import resources

        old = self.state.resources
        new = resources.merge_update(old, change)
        self.cgroups.apply(new, old)
        self.state.resources = new
        self.save()

    # --- delete ---------------------------------------------------------------------------

    def delete(self, force: bool) -> None:
        """`delete`: a stopped container, or with `force` any (killed first). runc deletes
        a created one without --force; engines that mean it pass --force."""
        if not force:
            self.check("delete")
        elif self.status() != "stopped":
            # The wait is on processes, not on the record: let `state` and `kill` in
            # meanwhile, then take the lock again ("does not exist" if another delete
            # finished first).
            self.unlock()
            self.kill_and_wait()
            self.dir.lock()
        self.destroy()

    def destroy(self) -> None:
        """Remove cgroups and state, then run poststop hooks. Processes can outlive a
        stopped init when it did not have its own PID namespace: they are killed first, as
        runc does; so is the init of a create that died (stopped, though it may still
        run)."""
        if self.state.pid and init_alive(self.state) or self._procs():
            self.kill_and_wait()
        self.cgroups.remove()
        self.dir.remove()
        self._run_hooks("poststop", "stopped")

    def kill_and_wait(self) -> None:
        """SIGKILL every process of the container and wait until they are gone."""
        kill_and_wait(self.state, self.cgroups)

    def _procs(self) -> list[int]:
        return _procs(self.state, self.cgroups)


def kill_and_wait(state: ContainerState, cgroups: "Manager | None" = None) -> None:
    """SIGKILL every process of the container and wait until they are all gone, on
    pidfds: no timer involved while they die as they should.

    "Every process": the init when it is still the recorded one, and everything in the
    container's cgroups, read again after each round in case one forked meanwhile; that
    also kills an init whose pid a killed create never recorded.

    A process that is already exiting counts as gone: an exiting PID-namespace init waits
    in the kernel until every process of its namespace has been reaped, and one whose
    parent is outside the container (an exec'd process whose `exec` was killed) becomes a
    zombie of the host's PID 1 or the engine's reaper. It has left its cgroups already;
    waiting for the reaper would hang delete on a machine whose PID 1 reaps nothing (and
    its cgroups can be removed: it counts in cgroup.procs, not for rmdir). While any is
    left, the processes are looked at again every 50 ms."""
    cgroups = cgroups or state.cgroup_manager()
    for _ in range(100):
        pids = {pid for pid in _procs(state, cgroups) if not _exiting(pid)}
        if state.pid and init_alive(state) and not _exiting(state.pid):
            pids.add(state.pid)
        if not pids:
            return
        _kill_round(cgroups, pids)


def _procs(state: ContainerState, cgroups: "Manager") -> list[int]:
    """The container's processes; from all hierarchies for a create that died (its init
    may have joined only some; reading one file otherwise keeps delete fast). None for a
    cgroup that held other processes before the container (runc 1.1.5 lets it start
    there): those are not the container's to kill, only its init is (its PID namespace's
    processes die with it: runc too kills only the init of a container with a PID
    namespace of its own; unlike runc, the processes of one without are spared too)."""
    if state.cgroup_shared:
        return []
    return cgroups.pids(everywhere=state.creator is not None)


def _kill_round(cgroups: "Manager", pids: set[int]) -> None:
    """SIGKILL `pids` and wait on their pidfds until each has exited or is exiting."""
    pidfds = {}
    for pid in pids:
        try:
            pidfds[posix.pidfd_open(pid)] = pid
            posix.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            continue
        except OSError as e:
            # EINVAL: the pid lives on only as the session/group id of the init's children
            # (a reaping PID 1 or subreaper already collected the init): nothing to kill.
            if e.errno != errno.EINVAL:
                raise
    if cgroups.frozen():
        cgroups.thaw()  # paused: on v1, killed processes die once thawed
    try:
        _wait_gone(pidfds)
    finally:
        for fd in pidfds:
            posix.close(fd)


def _wait_for_exec(fifo: int, pidfd: int) -> None:
    """Read the init's "0" from the exec fifo, then wait for EOF (it has exec'd, or died
    trying); fail if the init exits before it wrote."""
    import select  # start only: not loaded by state, kill or delete

    poller = select.poll()
    poller.register(fifo, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    released = False
    while True:
        ready = dict(poller.poll())
        if ready.get(fifo, 0) & (select.POLLIN | select.POLLHUP):
            data = posix.read(fifo, 64)
            if data:
                released = released or data.startswith(b"0")
                continue
            if released:
                return
        if pidfd in ready and not released:
            raise RuntimeFailure("container init exited before it could start")


def _wait_gone(pidfds: dict[int, int]) -> None:
    """Until every pidfd is readable (exited) or its process is exiting; looked at again
    every 50 ms while none says so."""
    import select  # only when something must die: not loaded by state or kill

    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    remaining = set(pidfds)
    while remaining:
        ready = poller.poll(50)
        done = {fd for fd, _ in ready} if ready else {
            fd for fd in remaining if _exiting(pidfds[fd])
        }  # fmt: skip
        for fd in done:
            poller.unregister(fd)
        remaining -= done


_PF_EXITING = 0x4


def _exiting(pid: int) -> bool:
    """Gone, a zombie, or inside exit (PF_EXITING in /proc/<pid>/stat's flags, field 9)."""
    fields = proc_stat(pid)
    return fields is None or fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)
