"""exec's process stages: P (the command, on the host), I (the intermediate) and C (the
process, born inside the container). commands/exec.py builds the plan (plan.ExecPlan)
and calls `start`.

- P opens the init's namespaces (`open_namespaces`), detaches itself from the host's
  files and becomes non-dumpable (ociruntime.security.containersafe), then forks I.
  Nothing P holds, maps or runs from is then a host file C could reach through /proc.
- I, still in the host's PID namespace and so invisible to the container, joins the
  container's cgroups (host paths), then its namespaces: user first, then mount
  (setns(CLONE_NEWNS) sets I's root and cwd to the container's root), then the rest,
  and last the PID and time namespaces for its children. It forks C, reports C's pid
  and exits. So C is born inside the container with the container's root: there is no
  moment at which a process the container can see has the host's root or cwd (runc's
  nsexec orders it the same way). P is a child subreaper and so inherits C.
- C runs the shared finalize step (finalize.py) and execs. Its errors reach P over the
  channel; EOF on it means execve succeeded.

I and C import nothing: everything is imported with this module, before the fork.
"""

from __future__ import annotations

import _signal
import posix  # not os (~1 ms): exec's path loads none (pathlite.py)

from ociruntime.cgroups import cgroupfs  # noqa: F401 - I joins through the Manager, which uses it
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG
from ociruntime.process import namespaces
from ociruntime.security import capabilities, containersafe
from ociruntime.signals import FORWARDED_SIGNALS
from ociruntime.stages import finalize
from ociruntime.stages.channel import channel_pair
from ociruntime.stages.protocol import ParentEnd, StageEnd, run_stage

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.process.procattrs import ProcessAttrs
    from ociruntime.stages.plan import ExecPlan

EXIT_FAILED = 255  # runc: every exec failure
#: /proc/<pid>/ns names, in the order C joins them (user first, mount last). PID and time
#: are joined by P for its children.
_NS_NAMES = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "cgroup": "cgroup",
             "mount": "mnt"}  # fmt: skip
_FOR_CHILDREN = {"pid": "pid", "time": "time_for_children"}
_INTERMEDIATE_FAILED = "exec: the process failed to enter the container"


def open_namespaces(init_pid: int) -> dict[str, int]:
    """In P: fds of the init's namespaces that differ from ours (joining our own user
    namespace would fail; the others would be no-ops)."""
    fds: dict[str, int] = {}
    try:
        for kind, name in (*_NS_NAMES.items(), *(("pid", "pid"), ("time", "time"))):
            try:
                theirs = posix.stat(f"/proc/{init_pid}/ns/{name}")
            except FileNotFoundError:
                continue  # a kernel without this namespace type
            except ProcessLookupError:
                raise RuntimeFailure("cannot exec in a stopped container") from None
            mine_name = _FOR_CHILDREN.get(kind, name)
            try:
                mine = posix.stat(f"/proc/self/ns/{mine_name}")
            except FileNotFoundError:
                mine = None
            if mine is not None and (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
                continue
            fds[kind] = posix.open(f"/proc/{init_pid}/ns/{name}", posix.O_RDONLY | posix.O_CLOEXEC)
    except BaseException:
        for fd in fds.values():
            posix.close(fd)
        raise
    return fds


def start(plan: ExecPlan) -> int:
    """P: fork I, which forks C inside the container. Returns C's pid once C has exec'd;
    raises its error (or I's) otherwise, with C reaped."""
    parent, child = channel_pair()
    LOG.stage("exec: planned")
    containersafe.detach_from_host_files()  # C inherits our memory as it is now
    containersafe.hide()
    LOG.stage("exec: detached from host files")
    sc.set_child_subreaper()  # C is I's child: it comes back to us when I exits
    LOG.child_pipe()
    intermediate = posix.fork()
    if intermediate == 0:
        parent.close()
        _intermediate(plan, StageEnd(child))
    child.close()
    end = ParentEnd(parent, _INTERMEDIATE_FAILED, "exec: the process failed to start")
    try:
        try:
            pid = end.wait_for_pid()
            LOG.stage("exec: the process forked in the container")
        finally:
            posix.waitpid(intermediate, 0)  # so that C is already ours to wait for
        if plan.console is not None:
            plan.console.close()
        _serve_process(plan, end, pid)
        LOG.stage("exec: the process exec'd")
    finally:
        end.close()
        LOG.drain_child()  # I's and C's records: all there once C exec'd (or failed)
    return pid


def _serve_process(plan: ExecPlan, end: ParentEnd, pid: int) -> None:
    """Until C execs: its seccomp notify fd to the agent if it asks for that (as create
    does for the init). On its error C exits; on ours it is killed: reaped either way."""

    def forward_seccomp(fd: int) -> None:
        from ociruntime.container.state import public_state
        from ociruntime.security import seccomp_notify

        container = public_state(plan.container, plan.status)
        try:
            seccomp_notify.forward(plan.seccomp, pid, fd, container)
        except BaseException:
            posix.kill(pid, _signal.SIGKILL)
            raise

    try:
        end.serve_until_exec(forward_seccomp)
    except BaseException:
        posix.waitpid(pid, 0)
        raise


def _intermediate(plan: ExecPlan, end: StageEnd) -> None:
    """I: join the container, fork C inside it, report C's pid; never returns."""

    def body() -> None:
        if containersafe.import_guard_on():  # tests: no import after the fork
            from ociruntime import importguard

            importguard.install("exec")
        keep = {*range(3, 3 + plan.preserve_fds), *end.fds(), *plan.ns_fds.values()}
        if plan.console is not None:
            keep.add(plan.console.sock.fileno())
        keep.update(LOG.pipe_fds())
        LOG.use_pipe()  # I's and C's records: through P's log pipe, never the --log file
        containersafe.close_fds(keep)
        _join_container(plan, plan.ns_fds, plan.attrs)
        pid = posix.fork()
        if pid == 0:
            run_stage(end, lambda: _process(plan, end), "exec", EXIT_FAILED)
        end.send_pid(pid)
        posix._exit(0)

    run_stage(end, body, "exec", EXIT_FAILED)


def _join_container(
    plan: ExecPlan, ns_fds: dict[str, int], attrs: ProcessAttrs | None = None
) -> None:
    """In I: the container's cgroups, then its namespaces, the mount namespace right
    after the user one (from then on our root is the container's), the PID and time
    namespaces last, for C. Closes the namespace fds."""
    container = plan.container
    capabilities.last_cap()  # read (and remembered) on our own /proc, for C
    if attrs is not None:  # process.execCPUAffinity: initial before the cgroups
        attrs.set_initial_affinity()
    plan.cgroups.join(0)  # 0: this process (host paths: before setns(mnt))
    LOG.stage("exec: joined the cgroups")
    if attrs is not None:  # ... final (or the container's default) after
        attrs.set_final_affinity(container.cgroup_dirs)
    shares_mount = "mount" not in ns_fds
    namespaces.join_fds(ns_fds, ("user", "mount"))
    if shares_mount:  # sharing our mount namespace: the container's root
        posix.chroot(f"/proc/{container.pid}/root")
    namespaces.join_fds(ns_fds, ("ipc", "uts", "network", "cgroup"))
    namespaces.join_fds(ns_fds, namespaces.FOR_CHILDREN)  # for C
    posix.chdir("/")


def _process(plan: ExecPlan, end: StageEnd) -> None:
    """C, inside the container: the shared finalize step, then execve."""
    proc, container = plan.process, plan.container
    how = finalize.Finalize(
        seccomp=plan.seccomp, attrs=plan.attrs, exec_procfs=True, console=plan.console,
        # the container's keyring, as runc (which exec only joins: it may not own it)
        keyring=None if container.no_new_keyring else f"_ses.{container.id}",
        keyring_permissions=False, document=plan.process_document, mempolicy=plan.mempolicy,
    )  # fmt: skip
    executable, env = finalize.finalize(proc, end, how)
    finalize.execute(executable, proc["args"], env, *FORWARDED_SIGNALS)
