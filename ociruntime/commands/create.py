"""`create`: set up a container and leave its init waiting for `start`.

The parent side of the init protocol: reserve the id, make the cgroups and the exec fifo,
fork the init inside the PID/time namespaces, run prestart/createRuntime hooks when the
init asks, and record the state once the init says it is ready. Anything that fails rolls
back everything made so far: no state dir, cgroup, process or mount is left behind (the
mounts live only in the init's mount namespace, which dies with it).

A create killed at any instant (SIGKILL: no rollback runs) leaves a directory that
`state`/`list` show as "stopped" and `delete` removes completely (state.py): the record
is written before anything else is made (the cgroups it is about to make, itself as the
creator), again the moment the init's pid is known (before anything that can block), and
a last time without the creator once the init is ready. The init is bound to us until
then: it gets SIGKILL if we die (PR_SET_PDEATHSIG, from the fork until it drops its
privileges), it exits when our end of the channel closes (every wait in protocol.py's
StageEnd), and it
exits if its "ready" finds no reader; so most kills leave no process at all, and the rest
(an init that sent "ready" just before we died) are recorded and killed by `delete`.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime import SPEC_VERSION, pathlite
from ociruntime.cgroups import cgroupfs, warmup
from ociruntime.commands import provision
from ociruntime.container import bundle
from ociruntime.container.state import ContainerState, StateDir, process_start_time, validate_id
from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.log import LOG
from ociruntime.process import namespaces
from ociruntime.stages.parent import InitProcess, relock
from ociruntime.stages.plan import InitPlan

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups import systemd
    from ociruntime.process import terminal


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
        log_until_exec: bool = False,
        systemd_cgroup: bool = False,
    ) -> None:
        self.root, self.container_id, self.bundle = root, container_id, bundle
        self.pid_file, self.no_pivot, self.no_new_keyring = pid_file, no_pivot, no_new_keyring
        self.preserve_fds, self.console_socket = preserve_fds, console_socket
        #: False for `run` without -d: a terminal is then attached to the caller's, and
        #: `console_peer` is set to the socket on which the pty master arrives.
        self.detach = detach
        self.console_peer: object | None = None
        #: `run`: it copies the init's log pipe into --log until the init exec'd
        self.log_until_exec = log_until_exec
        #: --systemd-cgroup: the container's cgroup is a systemd scope (cgroups/systemd.py)
        self.systemd_cgroup = systemd_cgroup


def create(opts: CreateOptions) -> tuple[StateDir, ContainerState]:
    """Create the container; returns its locked state dir and state (for `run`)."""
    LOG.stage("create: imported")
    warmup.start()  # usually started already, by the launcher
    found = cgroupfs.hierarchies()
    validate_id(opts.container_id)  # first, as runc: the id names everything made below
    b, checked, cgroup_pairs = preflight(
        opts.bundle, opts.container_id, found, opts, opts.systemd_cgroup
    )
    cfg = b.config
    LOG.stage("create: bundle checked")
    sd = StateDir(opts.root, opts.container_id)  # an invalid or taken id: refused first
    sd.create()
    undo = provision.Rollback(sd)
    try:
        # an existing cgroup: frozen is refused, holding processes a warning (runc 1.1.5)
        shared = cgroupfs.check_existing(cgroup_pairs) > 0
        state = provision.first_record(sd, b, cgroup_pairs, shared, checked.scope)
        sd.unlock()  # taken again for each write: never held while we wait for the init
        LOG.stage("create: first record")
        if cfg["process"].get("terminal"):
            checked.console = _open_console(opts)
        return sd, _create_in(sd, b, opts, undo, state, checked, cgroup_pairs)
    except BaseException:
        undo.run()
        if opts.console_peer is not None:
            opts.console_peer.close()  # type: ignore[attr-defined]
            opts.console_peer = None
        raise
    finally:
        if checked.console is not None:
            checked.console.close()  # the init has its own copy


def preflight(
    bundle_dir: str,
    container_id: str,
    found: list[cgroupfs.Hierarchy],
    opts: CreateOptions | None = None,
    systemd: bool = False,
) -> tuple[bundle.Bundle, _Checked, list[tuple[cgroupfs.Hierarchy, str]]]:
    """Every check `create` makes before it touches the kernel (no state dir, cgroup or
    process yet): the bundle and its config (schema, then the fields create refuses, the
    features this host lacks), and where the cgroups would go. One function so that
    `validate` runs exactly what create runs and cannot call valid what create refuses.
    Without `opts` (validate) nothing of an invocation is checked (the console socket).
    With `systemd` (--systemd-cgroup) the cgroups path is read as systemd's
    slice:prefix:name, and the scope it names goes into the result's `scope`."""
    b = bundle.load(bundle_dir)
    checked = _check_config(b.config, opts)
    linux = b.config.get("linux") or {}
    if systemd:
        return b, checked, _systemd_placement(checked, linux, container_id, found)
    return b, checked, cgroupfs.placement(linux.get("cgroupsPath"), container_id, found)


def _systemd_placement(
    checked: _Checked, linux: dict, container_id: str, found: list[cgroupfs.Hierarchy]
) -> list[tuple[cgroupfs.Hierarchy, str]]:
    """--systemd-cgroup: the scope linux.cgroupsPath names (cgroups/systemd.py, loaded
    only then), refused on a host that systemd did not boot (runc's words)."""
    from ociruntime.cgroups import systemd

    checked.scope = systemd.parse_path(linux.get("cgroupsPath"), container_id)
    if posix.geteuid() != 0:
        raise RuntimeFailure(
            "--systemd-cgroup: a rootless container (systemd's user instance) is not supported"
        )
    if not systemd.booted():
        raise RuntimeFailure(
            "--systemd-cgroup: systemd cgroup flag passed, but systemd support for "
            "managing cgroups is not available (systemd is not running: no /run/systemd/system)"
        )
    return systemd.placement(checked.scope, found)


class _Checked:
    """What `create` checks and builds from the config before it makes anything (so a
    config's error leaves nothing behind), for the init's plan."""

    __slots__ = ("namespaces", "seccomp", "attrs", "console", "devices", "mempolicy", "scope")

    def __init__(self, namespaces: dict[str, str | None], seccomp: object | None,
                 attrs: object | None, devices: list[tuple[bool, str]]) -> None:  # fmt: skip
        self.namespaces, self.seccomp, self.attrs = namespaces, seccomp, attrs
        self.devices = devices  # the device rules (cgroupfs.device_rules), checked
        #: linux.memoryPolicy, checked (process.mempolicy.MemoryPolicy), or None
        self.mempolicy: object | None = None
        #: process.terminal: the console socket, connected once the state dir exists
        self.console: terminal.InitConsole | None = None
        #: --systemd-cgroup: the container's scope unit (cgroups/systemd.py), else None
        self.scope: systemd.Scope | None = None


def _check_config(cfg: dict, opts: CreateOptions | None) -> _Checked:
    """Every check, and what is built from the config (seccomp filter, attributes), before
    the state dir exists: a config's error leaves nothing to roll back."""
    if cfg.get("process") is None:
        raise field_error(pointer("process"), "missing: required to create a container")
    if cfg["process"].get("args") is None:
        raise field_error(pointer("process", "args"), "missing: the command to run")
    if not cfg["process"]["args"]:
        raise field_error(pointer("process", "args"), "must not be empty")
    if not str(cfg["process"].get("cwd", "/")).startswith("/"):
        raise field_error(pointer("process", "cwd"), "must be an absolute path")
    _check_terminal(cfg["process"], opts)
    _refuse_unimplemented(cfg)
    seccomp_filter = None
    if (cfg.get("linux") or {}).get("seccomp"):
        from ociruntime.security import seccomp_cache  # only then: cached, or libseccomp

        root = opts.root if opts is not None else None  # validate: no cache
        seccomp_filter = seccomp_cache.filter_for(cfg["linux"]["seccomp"], root)
    attrs = _process_attrs(cfg)
    ns = namespaces.configured(cfg.get("linux") or {})
    if "user" in ns:
        from ociruntime.process import userns
        from ociruntime.stages import userns_stage  # noqa: F401 - the init runs it, after its fork

        userns.check(cfg.get("linux") or {}, ns["user"])
    if "mount" not in ns:
        _refuse_host_mount_namespace(cfg.get("linux") or {})
    if (cfg.get("linux") or {}).get("netDevices"):
        from ociruntime.process import netdevices

        netdevices.check(cfg["linux"]["netDevices"], ns)
    devices = cgroupfs.device_rules((cfg.get("linux") or {}).get("resources") or {})
    checked = _Checked(ns, seccomp_filter, attrs, devices)
    checked.mempolicy = memory_policy(cfg.get("linux") or {})
    return checked


def memory_policy(linux: dict) -> object | None:
    """linux.memoryPolicy, checked against the host's NUMA nodes before anything is made
    (process.mempolicy, imported only for a config that sets one); exec plans it too."""
    if linux.get("memoryPolicy") is None:
        return None
    from ociruntime.process import mempolicy

    where = "config.json: /linux/memoryPolicy"
    return mempolicy.plan(linux["memoryPolicy"], where, mempolicy.online_nodes())


def _refuse_host_mount_namespace(linux: dict) -> None:
    """No mount namespace: refused. runc 1.1.5 refuses masked/read-only paths (its words
    below) and otherwise sets the rootfs up in the caller's mount namespace, which
    changes the host's mounts (/ made rslave, the rootfs and every config mount mounted
    there) and leaves them behind: we refuse that too (conformance/deviations.py D22)."""
    if linux.get("maskedPaths") or linux.get("readonlyPaths"):
        reason = "unable to restrict sys entries without a private MNT namespace"
    else:
        reason = (
            "a mount namespace is required: without one the rootfs would be mounted in "
            "the host's mount namespace"
        )
    raise field_error(pointer("linux", "namespaces"), reason)


def _process_attrs(cfg: dict) -> object | None:
    """Personality, scheduler, I/O priority, LSM labels: checked before anything is made,
    applied by the init (ociruntime.process.procattrs, imported only for a config that sets one)."""
    from ociruntime.process import settings

    proc, linux = cfg["process"], cfg.get("linux") or {}
    if not settings.wants_attrs(proc, linux):
        return None
    from ociruntime.process import procattrs

    return procattrs.plan(proc, linux, "config.json: /process", "config.json: /linux", warn=True)


def _require_host_console() -> None:
    """`run` attached to the container's terminal needs one on our side, as runc's
    initHostConsole: stderr, stdout or stdin a terminal, else the controlling one
    (/dev/tty). Without any (a script, </dev/null, no controlling terminal) a program
    waiting on its terminal would wait forever; runc refuses at once, in these words."""
    if any(posix.isatty(fd) for fd in (2, 1, 0)):
        return
    try:
        posix.close(posix.open("/dev/tty", posix.O_RDONLY | posix.O_NOCTTY | posix.O_CLOEXEC))
    except OSError as e:
        reason = f"open /dev/tty: {(e.strerror or str(e)).lower()}"  # Go's words
        raise field_error(pointer("process", "terminal"), reason) from None


def _check_terminal(proc: dict, opts: CreateOptions | None) -> None:
    """runc's rules: a detached terminal needs --console-socket, which is for nothing else
    (no `opts`, validate: only the config's own terminal fields)."""
    if proc.get("terminal"):
        if opts is not None and opts.detach and not opts.console_socket:
            raise RuntimeFailure(
                "config.json: /process/terminal: cannot allocate tty if runc will detach "
                "without setting console socket (--console-socket)"
            )
        from ociruntime.process import terminal

        terminal.check_config(proc)
    if opts is not None and opts.console_socket and not (proc.get("terminal") and opts.detach):
        raise RuntimeFailure(
            "--console-socket: cannot use console socket if runc will not detach or allocate tty"
        )
    if proc.get("terminal") and opts is not None and not opts.detach:  # after checkTerminal
        _require_host_console()


def _open_console(opts: CreateOptions) -> terminal.InitConsole:
    """The init's console socket, before the fork: --console-socket is a host path."""
    from ociruntime.process import terminal

    if opts.detach:
        return terminal.connect(str(opts.console_socket))
    console, opts.console_peer = terminal.pair()
    return console


#: linux.intelRdt fields runc 1.1.5 checks against the host, in its words (pointer, what
#: must be enabled). The rest (closID, schemata, enableMonitoring) runc 1.2 and later
#: refuse without resctrl as a whole.
_RDT_FEATURES = (
    ("l3CacheSchema", "intelRdt.l3CacheSchema is specified in config, but Intel RDT/CAT"),
    ("memBwSchema", "intelRdt.memBwSchema is specified in config, but Intel RDT/MBA"),
)


def _refuse_unimplemented(cfg: dict) -> None:
    """linux.intelRdt is refused, naming the field: without resctrl (no /sys/fs/resctrl:
    the kernel or CPU lacks RDT) in runc's words; with it, because ociruntime does not
    make resctrl groups yet (untested without such a host), rather than run the container
    silently outside the cache/bandwidth class it asked for."""
    rdt = (cfg.get("linux") or {}).get("intelRdt")
    if not rdt:
        return  # absent, or an empty object: nothing is asked
    if not isinstance(rdt, dict):
        raise field_error(pointer("linux", "intelRdt"), "must be an object")
    if pathlite.isdir("/sys/fs/resctrl/info"):  # mounted resctrl
        reason = "Intel RDT (resctrl groups) is not supported yet by ociruntime"
        raise field_error(pointer("linux", "intelRdt"), reason)
    for key, words in _RDT_FEATURES:
        if rdt.get(key):
            raise field_error(pointer("linux", "intelRdt", key), f"{words} is not enabled")
    reason = "intelRdt is specified in config, but Intel RDT is not enabled"
    raise field_error(pointer("linux", "intelRdt"), reason)


def _create_in(
    sd: StateDir,
    b: bundle.Bundle,
    opts: CreateOptions,
    undo: provision.Rollback,
    state: ContainerState,
    checked: _Checked,
    cgroup_pairs: list[tuple[cgroupfs.Hierarchy, str]],
) -> ContainerState:
    resources = (b.config.get("linux") or {}).get("resources") or {}
    cgroups = provision.CgroupSetup(
        cgroup_pairs, checked.devices, resources, undo, state.cgroup_created, checked.scope
    )
    if posix.geteuid() != 0:  # before the fork: the init's plan names the cgroups it gets
        cgroup_pairs = cgroups.make_or_stay_in_ours()
    posix.mkfifo(sd.fifo_path, 0o622)
    posix.chmod(sd.fifo_path, 0o622)  # mkfifo obeys the umask; start may run as another user
    # Opened here, for the init to reopen through /proc/self/fd: in a user namespace it
    # may not be able to walk the state dir's path.
    fifo_fd = posix.open(sd.fifo_path, posix.O_PATH | posix.O_CLOEXEC)
    try:
        state.cgroup_dirs = [d for _, d in cgroup_pairs] if cgroups.own else []
        state.cgroup_paths = cgroupfs.paths_of(cgroup_pairs) if cgroups.own else {}
        state.no_new_keyring = opts.no_new_keyring
        plan = _plan(b, opts, state, checked, cgroup_pairs, fifo_fd)
        LOG.stage("create: planned")
        return _start_init(sd, state, undo, plan, opts.pid_file, cgroups)
    finally:
        posix.close(fifo_fd)


def _plan(
    b: bundle.Bundle,
    opts: CreateOptions,
    state: ContainerState,
    checked: _Checked,
    cgroup_pairs: list[tuple[cgroupfs.Hierarchy, str]],
    fifo_fd: int,
) -> InitPlan:
    """The init's plan, the last thing before the fork."""
    cfg = b.config
    if (cfg.get("linux") or {}).get("mountLabel"):  # the init labels its mounts with it
        from ociruntime.security import lsm  # noqa: F401 - nothing is imported after the fork
    hook_state = {
        "ociVersion": SPEC_VERSION,
        "id": state.id,
        "status": "creating",
        "bundle": state.bundle,
        **({"annotations": state.annotations} if state.annotations else {}),
    }
    return InitPlan(
        # the bundle and the container
        config=cfg, bundle=b.path, rootfs=b.rootfs, container_id=opts.container_id,
        public_state=hook_state, fifo_fd=fifo_fd,
        # what create checked or made before the fork
        namespaces=checked.namespaces, cgroups=cgroup_pairs, cgroup_dirs=state.cgroup_dirs,
        console=checked.console, seccomp=checked.seccomp,
        attrs=checked.attrs, idmapped=_idmapped_trees(cfg.get("mounts") or [], b.path),
        mempolicy=checked.mempolicy,
        # the command line's options
        no_pivot=opts.no_pivot, no_new_keyring=opts.no_new_keyring,
        preserve_fds=opts.preserve_fds, log_until_exec=opts.log_until_exec,
    )  # type: ignore[arg-type]  # fmt: skip


def _start_init(
    sd: StateDir,
    state: ContainerState,
    undo: provision.Rollback,
    plan: InitPlan,
    pid_file: str | None,
    cgroups: provision.CgroupSetup,
) -> ContainerState:
    """Fork the init and serve it until it is ready; then the last record."""
    init = undo.init = InitProcess(plan, sd, state)
    init.start()
    LOG.stage("create: init forked, pid recorded")
    pid = init.serve(cgroups.make)
    LOG.stage("create: init ready")
    info = process_start_time(pid)
    if info is None or info[0] != state.start_time:
        raise RuntimeFailure("container init exited during create")
    relock(sd)  # and keep it: `run` goes on to start the container
    state.cgroup_created = undo.cgroups_created  # made, of those the first record named
    state.creator = None  # created: from now on the status is the init's
    sd.save(state)
    if pid_file:
        from ociruntime.commands import pidfile

        pidfile.write(pid_file, pid)
    init.settle()  # the network devices belong to the container's namespace from now on
    LOG.stage("create: recorded")
    return state


def _idmapped_trees(mounts: list[dict], bundle_dir: str) -> dict[int, int] | None:
    """Id-mapped bind mounts are cloned and mapped here, on the host (the kernel wants
    the mapping done by a process privileged over the filesystem); the init attaches
    them. Mounts index -> tree fd."""
    trees: dict[int, int] = {}
    for index, m in enumerate(mounts):
        if not (m.get("uidMappings") or m.get("gidMappings")):
            continue
        from ociruntime.process import userns
        from ociruntime.rootfs import mountopts

        opts = mountopts.parse_mount_options(m.get("options") or [])
        pointer = f"/mounts/{index}"
        try:
            if not (opts.is_bind or m.get("type") == "bind"):
                raise RuntimeFailure(
                    f"config.json: {pointer}/uidMappings: only bind mounts can be id-mapped"
                )
            source = pathlite.join(bundle_dir, m.get("source") or "")
            trees[index] = userns.idmapped_tree(source, opts.is_recursive_bind, m, pointer)
        except BaseException:
            for fd in trees.values():
                posix.close(fd)
            raise
    return trees or None
