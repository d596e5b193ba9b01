"""`create`: set up a container and leave its init waiting for `start`.

The parent side of the init protocol: reserve the id, make the cgroups and the exec fifo,
fork the init inside the PID/time namespaces, run prestart/createRuntime hooks when the
init asks, and record the state once the init says it is ready. Anything that fails rolls
back everything made so far: no state dir, cgroup, process or mount is left behind (the
mounts live only in the init's mount namespace, which dies with it).
"""

from __future__ import annotations

import _signal
import os
import time

from ociruntime import SPEC_VERSION, bundle, cgroups, hooks, namespaces
from ociruntime.channel import Channel, channel_pair
from ociruntime.errors import RuntimeFailure
from ociruntime.state import ContainerState, StateDir, process_start_time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime import terminal


class CreateOptions:
    def __init__(
        self,
        root: str,
        container_id: str,
        bundle: str,
        pid_file: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        console_socket: str | None = None,
        detach: bool = True,
    ) -> None:
        self.root, self.container_id, self.bundle = root, container_id, bundle
        self.pid_file, self.no_pivot, self.no_new_keyring = pid_file, no_pivot, no_new_keyring
        self.preserve_fds, self.console_socket = preserve_fds, console_socket
        #: False for `run` without -d: a terminal is then attached to the caller's, and
        #: `console_peer` is set to the socket on which the pty master arrives.
        self.detach = detach
        self.console_peer: object | None = None


def rfc3339_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def create(opts: CreateOptions) -> tuple[StateDir, ContainerState]:
    """Create the container; returns its locked state dir and state (for `run`)."""
    found = cgroups.start_warm_up()  # usually started already by the CLI
    b = bundle.load(opts.bundle)
    cfg = b.config
    if not cfg.get("process"):
        raise RuntimeFailure("config.json: /process: required to create a container")
    if not cfg["process"].get("args"):
        raise RuntimeFailure("config.json: /process/args: must not be empty")
    if not str(cfg["process"].get("cwd", "/")).startswith("/"):
        raise RuntimeFailure("config.json: /process/cwd: must be an absolute path")
    _check_terminal(cfg["process"], opts)
    _refuse_unimplemented(cfg)
    seccomp_filter = None
    if (cfg.get("linux") or {}).get("seccomp"):
        from ociruntime import seccomp  # only then: it loads libseccomp

        seccomp_filter = seccomp.build(cfg["linux"]["seccomp"])
    ns = namespaces.configured(cfg.get("linux") or {})
    if "user" in ns:
        raise RuntimeFailure(
            "config.json: /linux/namespaces: user namespaces are not supported yet"
        )
    if "mount" not in ns:
        raise RuntimeFailure("config.json: /linux/namespaces: a mount namespace is required")

    sd = StateDir(opts.root, opts.container_id)
    sd.create()
    undo = _Rollback(sd)
    console = None
    try:
        if cfg["process"].get("terminal"):
            console = _open_console(opts)
        return sd, _create_in(sd, b, ns, opts, undo, found, console, seccomp_filter)
    except BaseException:
        undo.run()
        if opts.console_peer is not None:
            opts.console_peer.close()  # type: ignore[attr-defined]
            opts.console_peer = None
        raise
    finally:
        if console is not None:
            console.close()  # the init has its own copy


def _check_terminal(proc: dict, opts: CreateOptions) -> None:
    """runc's rules: a detached terminal needs --console-socket, which is for nothing else."""
    if proc.get("terminal"):
        if opts.detach and not opts.console_socket:
            raise RuntimeFailure(
                "config.json: /process/terminal: cannot allocate tty if runc will detach "
                "without setting console socket (--console-socket)"
            )
        from ociruntime import terminal

        terminal.check_config(proc)
    if opts.console_socket and not (proc.get("terminal") and opts.detach):
        raise RuntimeFailure(
            "--console-socket: cannot use console socket if runc will not detach or allocate tty"
        )


def _open_console(opts: CreateOptions) -> terminal.InitConsole:
    """The init's console socket, before the fork: --console-socket is a host path."""
    from ociruntime import terminal

    if opts.detach:
        return terminal.connect(str(opts.console_socket))
    console, opts.console_peer = terminal.pair()
    return console


#: Settings that protect the host: running without them would be silently less safe than
#: asked, so until they are implemented a config that uses them is refused.
_UNIMPLEMENTED_SECURITY = {
    "/linux/intelRdt": "Intel RDT is not supported yet",
}


def _refuse_unimplemented(cfg: dict) -> None:
    linux = cfg.get("linux") or {}
    for pointer, reason in _UNIMPLEMENTED_SECURITY.items():
        if linux.get(pointer.rsplit("/", 1)[1]):
            raise RuntimeFailure(f"config.json: {pointer}: {reason}")


def _warn_unapplied_resources(resources: dict) -> None:
    """Limits are not enforced yet (the cgroups issue). Refusing them would break every
    engine (podman always sets a pids limit), so say so on each create instead."""
    unapplied = sorted(k for k, v in resources.items() if k != "devices" and v)
    if unapplied:
        from ociruntime.log import LOG

        LOG.warning(
            "linux.resources: " + ", ".join(unapplied) + " not enforced yet (only devices are)"
        )


class _Rollback:
    """What to tear down if create fails part-way: init process, cgroups, state dir."""

    def __init__(self, sd: StateDir) -> None:
        self.sd = sd
        self.pid: int | None = None
        self.cgroups_created: list[str] = []

    def run(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, _signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            cgroups.remove(self.cgroups_created)
        finally:
            self.sd.remove()


def _create_in(
    sd: StateDir,
    b: bundle.Bundle,
    ns: dict[str, str | None],
    opts: CreateOptions,
    undo: _Rollback,
    found: list[cgroups.Hierarchy],
    console: terminal.InitConsole | None = None,
    seccomp_filter: object | None = None,
) -> ContainerState:
    from ociruntime import init

    cfg, linux = b.config, b.config.get("linux") or {}
    cgroup_pairs = cgroups.placement(linux.get("cgroupsPath"), opts.container_id, found)
    dirs = [d for _, d in cgroup_pairs]
    undo.cgroups_created = cgroups.create(cgroup_pairs)
    resources = linux.get("resources") or {}
    cgroups.apply_device_rules(
        cgroup_pairs, cgroups.device_rules(resources, linux.get("devices") or [])
    )
    _warn_unapplied_resources(resources)
    os.mkfifo(sd.fifo_path, 0o622)
    os.chmod(sd.fifo_path, 0o622)  # mkfifo obeys the umask; start may run as another user
    state = ContainerState(
        id=opts.container_id,
        pid=0,
        start_time=0,
        bundle=b.path,
        rootfs=b.rootfs,
        created=rfc3339_now(),
        annotations=cfg.get("annotations") or {},
        cgroup_dirs=dirs,
        cgroup_created=undo.cgroups_created,
        hooks={k: v for k, v in (cfg.get("hooks") or {}).items() if k in ("poststart", "poststop")},
    )
    hook_state = {
        "ociVersion": SPEC_VERSION,
        "id": state.id,
        "status": "creating",
        "bundle": state.bundle,
        **({"annotations": state.annotations} if state.annotations else {}),
    }
    ctx = init.InitContext(
        config=cfg,
        bundle=b.path,
        rootfs=b.rootfs,
        container_id=opts.container_id,
        fifo_path=sd.fifo_path,
        namespaces=ns,
        cgroups=cgroup_pairs,
        no_pivot=opts.no_pivot,
        no_new_keyring=opts.no_new_keyring,
        preserve_fds=opts.preserve_fds,
        public_state=hook_state,
        console=console,
        seccomp=seccomp_filter,
    )
    parent, child = channel_pair()
    with namespaces.for_children(ns, linux.get("timeOffsets")):
        pid = os.fork()
        if pid == 0:
            sd.unlock()  # the parent's lock must not live on in the init until exec
            parent.close()
            init.run(ctx, child)
    undo.pid = pid
    child.close()
    cgroups.join(dirs, pid)  # concurrently with the init's namespace and mount work
    parent.send("cgroups-joined")
    _serve_init(parent, cfg.get("hooks") or {}, dict(hook_state, pid=pid), seccomp_filter)
    info = process_start_time(pid)
    if info is None:
        raise RuntimeFailure("container init exited during create")
    state.pid, state.start_time = pid, info[0]
    sd.save(state)
    if opts.pid_file:
        write_pid_file(opts.pid_file, pid)
    return state


def _serve_init(
    chan: Channel, all_hooks: dict, hook_state: dict, seccomp_filter: object | None = None
) -> None:
    """Answer the init until it is ready; its errors become ours."""
    try:
        while True:
            msg = chan.receive()
            if msg is None:
                raise RuntimeFailure("container init exited unexpectedly during create")
            kind = msg.get("type")
            if kind == "ready":
                return
            if kind == "error":
                raise RuntimeFailure(msg.get("message", "container init failed"))
            if kind == "hooks":
                hooks.run_hooks("prestart", all_hooks.get("prestart") or [], hook_state)
                hooks.run_hooks("createRuntime", all_hooks.get("createRuntime") or [], hook_state)
                chan.send("hooks-done")
            if kind == "seccomp":  # its filter is loaded: the notify fd goes to the agent
                from ociruntime import seccomp_notify

                seccomp_notify.forward(seccomp_filter, hook_state["pid"], msg.get("fd"), hook_state)
                chan.send("seccomp-done")
    finally:
        chan.close()


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc: engines poll for this file and must never read it half-written."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)
