"""The parent's side of the container init (runc's initProcess): fork it, record it, join
it to its cgroups, map its user namespace, and answer it until it is ready.

`create` builds the plan (plan.InitPlan) and the state record first; this module owns
the init process from the fork on. Every exchange is a protocol.ParentEnd method.
"""

from __future__ import annotations

import _signal
import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime.cgroups import cgroupfs
from ociruntime.container.state import process_start_time
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG
from ociruntime.process import hooks, namespaces
from ociruntime.security import containersafe
from ociruntime.stages.channel import Channel, channel_pair
from ociruntime.stages.protocol import ParentEnd, StageEnd

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from ociruntime.cgroups import limits
    from ociruntime.container.state import ContainerState, StateDir
    from ociruntime.process import netdevices
    from ociruntime.stages.plan import InitPlan

_EXITED = "container init exited unexpectedly during create"


class InitProcess:
    """One container init, from its fork until it is ready (or killed by `abort`)."""

    __slots__ = ("plan", "sd", "state", "pid", "netdevices", "_end")

    def __init__(self, plan: InitPlan, sd: StateDir, state: ContainerState) -> None:
        self.plan, self.sd, self.state = plan, sd, state
        self.pid: int | None = None  # the process to kill on rollback
        self.netdevices: netdevices.Mover | None = None  # moved in, until settled
        self._end: ParentEnd | None = None

    def start(self) -> None:
        """Fork the init (with a user namespace: its user-namespace stage, which forks
        the init itself) and record its pid before anything that can block."""
        plan = self.plan
        parent, child = channel_pair()
        ns = plan.namespaces
        LOG.child_pipe()  # the init's records, copied into the --log file by drain_child
        try:
            # With a user namespace the stage makes the PID/time namespaces itself.
            with namespaces.for_children({} if "user" in ns else ns, plan.linux.get("timeOffsets")):
                LOG.stage("create: forking")
                pid = posix.fork()
                if pid == 0:
                    parent.close()
                    self._become_init(child)  # never returns
        finally:
            for fd in (plan.idmapped or {}).values():
                posix.close(fd)
        self.pid = pid
        self._end = ParentEnd(parent, _EXITED, "container init failed")
        record_pid(self.sd, self.state, pid)  # before anything that can block
        child.close()

    def _become_init(self, child: Channel) -> None:
        """The forked child's first steps, then the init's (stages/init.py: never returns).

        The init's own modules (stages.init: the mounts, the rootfs, finalize) are
        imported here, not before the fork: `create` never needs them (a smaller peak
        RSS), and the child imports them while `create` waits for the kernel's cgroup
        lock. It still has create's credentials, in the host's user and mount
        namespaces, so the imports read the host's files as `create` would have; from init.run on
        nothing is imported (the rule in importguard.py). Not dumpable first: in a joined
        PID namespace the container's processes may see us already. (A user-namespace
        stage stays dumpable: `create`, perhaps unprivileged, writes its /proc maps; it
        is in no container's PID namespace, and the init hides itself once it exists.)"""
        LOG.stage("init: forked")
        # Killed with us until it is ready (init.py clears this before it drops
        # privileges). Should we have died before this line, our end is closed and the
        # init's first wait for us sees EOF and exits.
        sc.set_parent_death_signal(_signal.SIGKILL)
        if "user" not in self.plan.namespaces:
            containersafe.hide()
        self.sd.unlock()  # our lock must not live on in the init until exec
        from ociruntime.stages import init

        init.run(self.plan, StageEnd(child))

    def serve(self, make_cgroups: Callable[[], limits.Limits | None]) -> int:
        """Make the cgroups (`make_cgroups`, which returns their planned limits) and
        join the init to them, concurrently with its namespace and mount work; map its
        user namespace, write the limits, then answer it until it is ready. Returns the
        init's pid."""
        plan, end = self.plan, self._end
        assert end is not None and self.pid is not None
        planned = None
        try:
            planned = make_cgroups()
            LOG.stage("create: cgroups made")
            cgroupfs.join(plan.cgroup_dirs, self.pid)
            LOG.stage("create: init joined to its cgroups")
            if "user" in plan.namespaces:
                self._map_user_namespace(end)
                record_pid(self.sd, self.state, self.pid)
            if planned is not None:
                planned.apply()
            end.cgroups_joined()
            if plan.linux.get("netDevices"):  # found on the host while the init unshares
                from ociruntime.process import netdevices

                self.netdevices = netdevices.Mover(plan.linux["netDevices"])
            self._serve_until_ready(end)
        except RuntimeFailure:
            if planned is not None:
                planned.check_oom()  # an init the OOM killer took: say which limit
            raise
        finally:
            end.close()
            LOG.drain_child()  # its records so far (`run` copies the rest after start)
        return self.pid

    def _map_user_namespace(self, end: ParentEnd) -> None:
        """The user-namespace stage (userns_stage.py): map its new user namespace when
        it asks (not for a joined one), then learn the real init's pid and reap the
        stage."""
        stage_pid = self.pid
        assert stage_pid is not None
        if self.plan.namespaces["user"] is None:
            end.wait_for_id_mapping_request()
            from ociruntime.process import userns

            userns.write_maps(stage_pid, self.plan.linux)
            end.ids_mapped()
        self.pid = end.wait_for_init_pid()
        posix.waitpid(stage_pid, 0)

    def _serve_until_ready(self, end: ParentEnd) -> None:
        all_hooks = self.plan.config.get("hooks") or {}
        hook_state = dict(self.plan.public_state, pid=self.pid)
        devices = self.netdevices

        def run_hooks() -> None:
            hooks.run_hooks("prestart", all_hooks.get("prestart") or [], hook_state)
            hooks.run_hooks("createRuntime", all_hooks.get("createRuntime") or [], hook_state)

        def forward_seccomp(fd: int) -> None:  # its filter is loaded: fd to the agent
            from ociruntime.security import seccomp_notify

            seccomp_notify.forward(self.plan.seccomp, hook_state["pid"], fd, hook_state)

        move = None if devices is None else (lambda: devices.move(hook_state["pid"]))
        end.serve_until_ready(move, run_hooks, forward_seccomp)

    def settle(self) -> None:
        """Created: the moved network devices belong to the container's namespace."""
        if self.netdevices is not None:
            self.netdevices.close()
            self.netdevices = None

    def abort(self) -> None:
        """Rollback: network devices back to the host (while their namespace lives),
        then the init killed and reaped."""
        if self.netdevices is not None:
            self.netdevices.restore()
        if self.pid is not None:
            from ociruntime.signals import kill_and_reap  # a rollback only

            kill_and_reap(self.pid)


def record_pid(sd: StateDir, state: ContainerState, pid: int) -> None:
    """The init's pid and start time, the moment we know them: from now on `delete` kills
    it even if we die before anything else (the user-namespace stage is recorded first,
    then the real init it forks)."""
    info = process_start_time(pid)
    state.pid, state.start_time = pid, info[0] if info else 0
    relock(sd)
    try:
        sd.save(state)
    finally:
        sd.unlock()


def relock(sd: StateDir) -> None:
    """The lock, for a write. `create` does not hold it while the init works (a hook may
    run `state`, and `state`/`list` show the container as creating meanwhile), so a
    `delete --force` may have removed the container in between: then we fail, and the
    rollback undoes the rest."""
    try:
        sd.lock()
    except RuntimeFailure:
        raise RuntimeFailure("container was deleted during create") from None
