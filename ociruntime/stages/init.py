"""The container init: the forked child that becomes the container's PID 1.

It runs entirely between fork and exec, so it must never return into the caller's code:
`run` ends in execve or os._exit. Its steps, each reported to `create` on failure:

  [user namespace stage: unshare the user namespace, have `create` map it, become its
  root, create the PID/time namespaces and fork the real init into them] ->
  join cgroups -> enter namespaces -> hostname -> build rootfs -> (createRuntime hooks in
  the parent, createContainer hooks here) -> pivot_root -> the terminal (process.terminal:
  pty, /dev/console, master sent, stdio) -> readonly/masked paths -> sysctl, rlimits, oom
  score -> personality, scheduler, I/O priority, LSM labels -> session keyring ->
  (seccomp without noNewPrivileges) -> user and capabilities -> (seccomp with
  noNewPrivileges) -> "ready" -> wait on the exec fifo -> startContainer
  hooks -> execve(process.args)

With linux.netDevices, the init says "netns" once its namespaces exist and `create` moves
the devices in while the rootfs is built; the init waits for that before any hook.
"""

from __future__ import annotations

import os

from ociruntime.cgroups import cgroupfs
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG
from ociruntime.process import hooks, namespaces, settings, userns
from ociruntime.rootfs import mounts
from ociruntime.security import capabilities, containersafe, procfs
from ociruntime.stages.channel import Channel, run_stage

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.process.terminal import InitConsole


class InitContext:
    """Everything the init needs, computed by `create` before the fork."""

    def __init__(
        self,
        config: dict,
        bundle: str,
        rootfs: str,
        container_id: str,
        fifo_fd: int,  # O_PATH fd of the exec fifo, opened by `create` (a host path)
        namespaces: dict[str, str | None],
        cgroups: list[tuple[cgroupfs.Hierarchy, str]],
        no_pivot: bool,
        no_new_keyring: bool,
        preserve_fds: int,
        public_state: dict,  # the state JSON hooks receive (pid and status filled in here)
        console: InitConsole | None = None,  # process.terminal: the console socket
        seccomp: object | None = None,  # linux.seccomp: the filter `create` built
        idmapped: dict[int, int] | None = None,  # mounts index -> id-mapped tree fd
        attrs: object | None = None,  # procattrs.ProcessAttrs: personality, scheduler...
    ) -> None:
        self.config, self.bundle, self.rootfs = config, bundle, rootfs
        self.container_id, self.fifo_fd = container_id, fifo_fd
        self.idmapped = idmapped
        #: namespaces (by path) the user-namespace stage joined already
        self.joined_early: tuple[str, ...] = ()
        self.namespaces, self.cgroups = namespaces, cgroups
        self.no_pivot, self.no_new_keyring = no_pivot, no_new_keyring
        self.preserve_fds, self.public_state = preserve_fds, public_state
        self.console, self.seccomp = console, seccomp
        self.attrs = attrs


def run(ctx: InitContext, chan: Channel) -> None:  # never returns
    """Entry point in the child: never returns."""

    def body() -> None:
        if containersafe.IMPORT_GUARD_ENV in os.environ:  # tests: no import after the fork
            from ociruntime import importguard

            importguard.install("container init")
        if "user" in ctx.namespaces:
            _user_namespace_stage(ctx, chan)
        _run(ctx, chan)

    run_stage(chan, body, "container init", 1)


def _user_namespace_stage(ctx: InitContext, chan: Channel) -> None:
    """Make the user namespace and come back as the real init, forked inside it.

    Every namespace must belong to the container's user namespace for its root to
    manage it (mount proc, set the hostname...): so the user namespace comes first, and
    the PID and time namespaces, which only a child can enter, are created after it here
    rather than by `create`. Namespaces joined by path are entered before a new user
    namespace (afterwards we would lack the rights over the host's), or after a joined
    one (which then owns them). This process reports the real init's pid and exits:
    `create` reaps it and the init is reparented, as runc's is."""
    ns = ctx.namespaces
    early = tuple(k for k in ("ipc", "uts", "network") if ns.get(k))
    if ns["user"]:
        namespaces.join(ns, ("user", *early))
    else:
        namespaces.join(ns, early)
        try:
            sc.unshare(k.CLONE_NEWUSER)
        except OSError as e:
            raise RuntimeFailure(f"creating user namespace: {e.strerror}") from None
        chan.send("map-ids")
        reply = chan.receive()
        if not reply or reply.get("type") != "ids-mapped":
            os._exit(1)  # the parent failed to map us and reports it
    # Before becoming root: the uid change makes us non-dumpable, and /proc/self files
    # (timens_offsets) would then belong to the host's root.
    linux = ctx.config.get("linux") or {}
    namespaces.enter_for_children_for_good(ns, linux.get("timeOffsets"))
    userns.become_root()
    pid = os.fork()
    if pid:
        chan.send("init-pid", pid=pid)
        os._exit(0)
    ctx.joined_early = early


def _run(ctx: InitContext, chan: Channel) -> None:  # never returns
    cfg, linux = ctx.config, ctx.config.get("linux") or {}
    proc = cfg["process"]
    containersafe.hide()  # first: a joined PID namespace may show us to others already
    _close_fds(ctx, chan)
    state = dict(ctx.public_state, pid=int(os.readlink("/proc/self")))
    os.setsid()
    namespaces.enter(ctx.namespaces, but=("cgroup", *ctx.joined_early))
    procfs.use_private()  # before any container mount: see ociruntime.security.procfs
    if linux.get("netDevices"):  # our netns exists: create moves them in meanwhile
        chan.send("netns")
    _set_names(cfg, ctx.namespaces)
    joined = _CgroupJoin(chan, ctx.namespaces)

    propagation = mounts.rootfs_propagation(linux)
    mounts.isolate_root(ctx.rootfs, propagation)
    mounter = mounts.Mounter(
        ctx.rootfs,
        ctx.bundle,
        ctx.cgroups,
        "cgroup" in ctx.namespaces,
        joined.wait,
        in_userns="user" in ctx.namespaces,
        idmapped=ctx.idmapped,
    )
    mounter.label_with(linux.get("mountLabel") or "")
    mounter.mount_all(cfg.get("mounts") or [])
    mounter.populate_dev(linux.get("devices") or [])
    mounter.close()
    joined.wait()
    if linux.get("netDevices"):
        reply = chan.receive()
        if not reply or reply.get("type") != "netdevices-moved":
            os._exit(1)  # create failed to move them and reports it
    _creation_hooks(cfg.get("hooks") or {}, state, chan)

    # Every file this process will ever map is mapped by now (nothing can be imported
    # once the host's paths are gone), and those paths are still here for the overlays.
    containersafe.detach_from_host_files()
    mounts.enter_rootfs(ctx.rootfs, ctx.no_pivot)
    if ctx.console is not None:  # before anything turns read-only, as runc
        ctx.console.setup(proc.get("consoleSize"), (proc.get("user") or {}).get("uid", 0))
    settings.apply_sysctls(linux.get("sysctl") or {})  # before /proc/sys turns read-only
    mounts.readonly_paths(linux.get("readonlyPaths") or [])
    mounts.mask_paths(linux.get("maskedPaths") or [], linux.get("mountLabel") or "")
    mounts.finish_root(bool((cfg.get("root") or {}).get("readonly")), propagation)

    settings.apply_rlimits(proc.get("rlimits") or [])
    if "oomScoreAdj" in proc:
        settings.set_oom_score_adj(proc["oomScoreAdj"])
    if ctx.attrs is not None:  # personality, scheduler, I/O priority, LSM labels
        ctx.attrs.apply()  # type: ignore[attr-defined]
    if not ctx.no_new_keyring:
        settings.join_session_keyring(f"_ses.{ctx.container_id}")
    env = settings.env_dict(proc.get("env") or [])
    executable = settings.find_executable(proc["args"][0], env)

    cap_sets = capabilities.resolve_sets(proc.get("capabilities"))
    fifo_dir = procfs.fd_dir()  # before seccomp; not the private procfs (see fd_dir)
    no_new_privs = bool(proc.get("noNewPrivileges"))
    # `create` set SIGKILL-on-its-death for us (create.py); cleared while we still may (a
    # seccomp filter could forbid prctl), before the user switch would clear it anyway.
    # From here a dead create shows as EOF at "ready" below, or its record names us.
    sc.set_parent_death_signal(0)
    if ctx.seccomp is not None and not no_new_privs:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before dropping
        # privileges, as runc (the user switch then runs under the filter, as in runc).
        settings.load_seccomp(ctx.seccomp, chan)
    settings.switch_user(proc.get("user") or {}, cap_sets)
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise RuntimeFailure(f"process.cwd {cwd}: {e.strerror}") from None
    settings.apply_capabilities(cap_sets, no_new_privs)
    procfs.close()  # the private procfs: nothing exec'd into the container may reach it
    if ctx.seccomp is not None and no_new_privs:
        # As late as runc 1.1.5: after everything privileged, before telling `create` we
        # are ready (so a load failure is create's error). What still runs under it: the
        # ready message, the exec fifo, startContainer hooks, two sigactions, execve.
        settings.load_seccomp(ctx.seccomp, chan)

    if not chan.send("ready"):
        os._exit(1)  # create died: nobody will record us, nor start us
    chan.close()
    _wait_for_start(ctx.fifo_fd, fifo_dir)
    start_hooks = (cfg.get("hooks") or {}).get("startContainer") or []
    if start_hooks:
        hooks.run_hooks("startContainer", start_hooks, dict(state, status="created"))
    settings.restore_signal_defaults()
    os.execve(executable, proc["args"], env)


def _close_fds(ctx: InitContext, chan: Channel) -> None:
    """Keep stdio, --preserve-fds and our own working fds (each closed once used); close
    what `create` or its caller held, e.g. the host PID namespace `create` returns to."""
    keep = {*range(3, 3 + ctx.preserve_fds), chan.rfd, chan.wfd, ctx.fifo_fd}
    if ctx.console is not None:
        keep.add(ctx.console.sock.fileno())
    keep.update((ctx.idmapped or {}).values())
    LOG.forget_file()
    procfs.close()  # the user-namespace stage's handle on the host's /proc, if any
    containersafe.close_fds(keep)


class _CgroupJoin:
    """The parent moves us into our cgroups while we build the rootfs; we wait for it only
    where it matters: before entering the cgroup namespace (whose root is the cgroup we
    are in at that moment), before any cgroup mount, before hooks fork, before ready."""

    def __init__(self, chan: Channel, ns: dict[str, str | None]) -> None:
        self.chan, self.ns, self.done = chan, ns, False

    def wait(self) -> None:
        if self.done:
            return
        msg = self.chan.receive()
        if not msg or msg.get("type") != "cgroups-joined":
            os._exit(1)  # the parent failed and reports it
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


def _creation_hooks(all_hooks: dict, state: dict, chan: Channel) -> None:
    """prestart + createRuntime run in the runtime namespace (the parent does them while we
    wait); createContainer runs here, in the container's namespaces, before pivot_root."""
    if all_hooks.get("prestart") or all_hooks.get("createRuntime"):
        chan.send("hooks")
        reply = chan.receive()
        if not reply or reply.get("type") != "hooks-done":
            os._exit(1)  # the parent failed the hooks and will report it
    container_hooks = all_hooks.get("createContainer") or []
    if container_hooks:
        hooks.run_hooks("createContainer", container_hooks, dict(state, status="creating"))


def _wait_for_start(fifo_fd: int, fifo_dir: int) -> None:
    """Block until `start` opens the fifo's read side, then tell it we are going.

    The write end stays open, close-on-exec: `start` sees EOF only once execve has
    replaced us (after the startContainer hooks), so its poststart hooks run after the
    user process started, as the spec orders."""
    fd = os.open(str(fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=fifo_dir)  # procfs.fd_dir
    os.close(fifo_dir)
    os.write(fd, b"0")
    os.close(fifo_fd)
