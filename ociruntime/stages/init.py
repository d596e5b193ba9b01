"""The container init: the forked child that becomes the container's PID 1.

It runs entirely between fork and exec, so it must never return into the caller's code:
`run` ends in execve or posix._exit. Its steps, each reported to `create` on failure:

  [user namespace stage (userns_stage.py): unshare the user namespace, have `create` map
  it, become its root, create the PID/time namespaces and fork the real init into them] ->
  enter namespaces -> hostname -> detach from the host's files -> build rootfs (joined
  to its cgroups by `create` meanwhile) -> (createRuntime hooks in
  the parent, createContainer hooks here) -> pivot_root -> the terminal (process.terminal:
  pty, /dev/console, master sent, stdio) -> readonly/masked paths -> sysctl -> the shared
  finalize step (finalize.py: rlimits, oom score, attributes, keyring, seccomp, user,
  capabilities) -> ready -> wait on the exec fifo -> startContainer hooks ->
  execve(process.args)

With linux.netDevices, the init announces its netns once its namespaces exist and
`create` moves the devices in while the rootfs is built; the init waits for that before
any hook. Every exchange with `create` is a protocol.StageEnd method.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG
from ociruntime.process import hooks, namespaces, settings
from ociruntime.rootfs import mounts
from ociruntime.security import containersafe, procfs
from ociruntime.stages import finalize
from ociruntime.stages.protocol import run_stage

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.stages.plan import InitPlan
    from ociruntime.stages.protocol import StageEnd


def run(plan: InitPlan, end: StageEnd) -> None:  # never returns
    """Entry point in the child: never returns."""

    def body() -> None:
        if containersafe.import_guard_on():  # tests: no import after the fork
            from ociruntime import importguard

            importguard.install("container init")
        joined_early: tuple[str, ...] = ()
        if "user" in plan.namespaces:  # loaded by create, before the fork, for such a config
            from ociruntime.stages import userns_stage

            joined_early = userns_stage.run(plan, end)
        _run(plan, end, joined_early)

    run_stage(end, body, "container init", 1)


def _run(plan: InitPlan, end: StageEnd, joined_early: tuple[str, ...]) -> None:
    """The init's steps in the spec's order (the module docstring); never returns."""
    state = _enter_namespaces(plan, end, joined_early)
    LOG.stage("init: in its namespaces")
    # Every file this process will ever map is mapped since run() began (its modules
    # were imported just before: nothing is imported after), and the host's paths are
    # here for the overlays until
    # pivot_root. Done now, it overlaps the parent's wait for the kernel's cgroup lock.
    containersafe.detach_from_host_files()
    LOG.stage("init: detached from host files")
    propagation = _build_rootfs(plan, end)
    LOG.stage("init: rootfs built")
    _creation_hooks(plan.config.get("hooks") or {}, state, end, plan.rootfs)
    _enter_rootfs(plan, propagation)
    LOG.stage("init: in the rootfs")
    start = _Start(plan.fifo_fd)
    how = finalize.Finalize(
        seccomp=plan.seccomp, attrs=plan.attrs, exec_procfs=False,
        # the container's own session keyring, which its user may search
        keyring=None if plan.no_new_keyring else f"_ses.{plan.container_id}",
        keyring_permissions=True, before_seccomp=start.release_create,
        mempolicy=plan.mempolicy,
    )  # fmt: skip
    executable, env = finalize.finalize(plan.process, end, how)
    LOG.stage("init: finalized, ready")
    if not end.send_ready():
        posix._exit(1)  # create died: nobody will record us, nor start us
    end.close()
    if not plan.log_until_exec:
        LOG.close_pipe()  # nobody reads it any more: hold nothing but the fifo
    start.wait()
    start_hooks = (plan.config.get("hooks") or {}).get("startContainer") or []
    if start_hooks:
        hooks.run_hooks("startContainer", start_hooks, dict(state, status="created"))
    finalize.execute(executable, plan.process["args"], env)


def _enter_namespaces(plan: InitPlan, end: StageEnd, joined_early: tuple[str, ...]) -> dict:
    """Hidden, with only our fds, in a new session and our namespaces; returns the
    state hooks receive (with our pid, as the host sees it)."""
    containersafe.hide()  # first: a joined PID namespace may show us to others already
    LOG.stage("init: hidden")
    _close_fds(plan, end)
    state = dict(plan.public_state, pid=int(posix.readlink("/proc/self")))
    posix.setsid()
    namespaces.enter(plan.namespaces, but=("cgroup", *joined_early))
    procfs.use_private()  # before any container mount: see ociruntime.security.procfs
    if plan.linux.get("netDevices"):  # our netns exists: create moves them in meanwhile
        end.announce_netns()
    _set_names(plan.config, plan.namespaces)
    return state


def _build_rootfs(plan: InitPlan, end: StageEnd) -> str:
    """Mounts and /dev, while the parent joins us to our cgroups (and moves network
    devices in); returns the rootfs propagation."""
    linux = plan.linux
    joined = _CgroupJoin(end, plan.namespaces)
    propagation = mounts.rootfs_propagation(linux)
    mounts.isolate_root(plan.rootfs, propagation)
    mounter = mounts.Mounter(
        plan.rootfs,
        plan.bundle,
        plan.cgroups,
        "cgroup" in plan.namespaces,
        joined.wait,
        in_userns="user" in plan.namespaces,
        idmapped=plan.idmapped,
    )
    mounter.label_with(linux.get("mountLabel") or "")
    mounter.mount_all(plan.config.get("mounts") or [])
    mounter.populate_dev(linux.get("devices") or [])
    mounter.make_cwd(plan.process.get("cwd") or "/")
    mounter.close()
    LOG.stage("init: mounts done")
    joined.wait()
    if linux.get("netDevices"):
        end.wait_for_netdevices_moved()
    return propagation


def _enter_rootfs(plan: InitPlan, propagation: str) -> None:
    """Into the rootfs; the console, sysctls, read-only
    and masked paths before the root itself turns read-only."""
    linux, proc = plan.linux, plan.process
    mounts.enter_rootfs(plan.rootfs, plan.no_pivot)
    if plan.console is not None:  # before anything turns read-only, as runc
        plan.console.setup(proc.get("consoleSize"), (proc.get("user") or {}).get("uid", 0))
    mounts.remount_readonly_last(plan.config.get("mounts") or [])  # after /dev's last writer
    settings.apply_sysctls(linux.get("sysctl") or {})  # before /proc/sys turns read-only
    mounts.readonly_paths(linux.get("readonlyPaths") or [])
    mounts.mask_paths(linux.get("maskedPaths") or [], linux.get("mountLabel") or "")
    mounts.finish_root(bool((plan.config.get("root") or {}).get("readonly")), propagation)


class _Start:
    """The exec fifo `start` opens, and our tie to `create` until we are ready."""

    __slots__ = ("fifo_fd", "fifo_dir")

    def __init__(self, fifo_fd: int) -> None:
        self.fifo_fd, self.fifo_dir = fifo_fd, -1

    def release_create(self) -> None:
        """The init's last privileged step before seccomp (finalize's before_seccomp)."""
        self.fifo_dir = procfs.fd_dir()  # before seccomp; not the private procfs (fd_dir)
        # `create` set SIGKILL-on-its-death for us (parent.py); cleared while we still may
        # (a seccomp filter could forbid prctl), before the user switch would clear it
        # anyway. From here a dead create shows as EOF at ready, or its record names us.
        sc.set_parent_death_signal(0)

    def wait(self) -> None:
        """Block until `start` opens the fifo's read side, then tell it we are going.

        The write end stays open, close-on-exec: `start` sees EOF only once execve has
        replaced us (after the startContainer hooks), so its poststart hooks run after
        the user process started, as the spec orders."""
        flags = posix.O_WRONLY | posix.O_CLOEXEC
        fd = posix.open(str(self.fifo_fd), flags, dir_fd=self.fifo_dir)  # procfs.fd_dir
        posix.close(self.fifo_dir)
        posix.write(fd, b"0")
        posix.close(self.fifo_fd)


def _close_fds(plan: InitPlan, end: StageEnd) -> None:
    """Keep stdio, --preserve-fds and our own working fds (each closed once used); close
    what `create` or its caller held, e.g. the host PID namespace `create` returns to."""
    keep = {*range(3, 3 + plan.preserve_fds), *end.fds(), plan.fifo_fd}
    if plan.console is not None:
        keep.add(plan.console.sock.fileno())
    keep.update((plan.idmapped or {}).values())
    keep.update(LOG.pipe_fds())
    LOG.use_pipe()  # our records: through create's log pipe, never the --log file
    procfs.close()  # the user-namespace stage's handle on the host's /proc, if any
    containersafe.close_fds(keep)


class _CgroupJoin:
    """The parent moves us into our cgroups while we build the rootfs; we wait for it only
    where it matters: before entering the cgroup namespace (whose root is the cgroup we
    are in at that moment), before any cgroup mount, before hooks fork, before ready."""

    def __init__(self, end: StageEnd, ns: dict[str, str | None]) -> None:
        self.end, self.ns, self.done = end, ns, False

    def wait(self) -> None:
        if self.done:
            return
        self.end.wait_for_cgroups_joined()
        if "cgroup" in self.ns:
            namespaces.enter({"cgroup": self.ns["cgroup"]})
        self.done = True


def _set_names(cfg: dict, ns: dict[str, str | None]) -> None:
    for key, setter in (("hostname", sc.sethostname), ("domainname", sc.setdomainname)):
        value = cfg.get(key)
        if value is None:
            continue
        if "uts" not in ns:
            raise RuntimeFailure(f"{key}: setting it needs a new UTS namespace (linux.namespaces)")
        try:
            setter(value)
        except OSError as e:
            raise RuntimeFailure(f"{key} {value!r}: {e.strerror}") from None


def _creation_hooks(all_hooks: dict, state: dict, end: StageEnd, rootfs: str) -> None:
    """prestart + createRuntime run in the runtime namespace (the parent does them while we
    wait); createContainer runs here, in the container's namespaces, before pivot_root,
    from the rootfs directory (runc's cwd for it)."""
    if all_hooks.get("prestart") or all_hooks.get("createRuntime"):
        end.request_hooks()
    container_hooks = all_hooks.get("createContainer") or []
    if container_hooks:
        state = dict(state, status="creating")
        hooks.run_hooks("createContainer", container_hooks, state, cwd=rootfs)
