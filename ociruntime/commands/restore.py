"""`restore`: a container made again from a checkpoint's images, under any id (runc's
semantics).

What `create` does for a new container, except that CRIU makes the processes in place of
our init: the bundle is checked as create checks it, the id reserved and recorded first
(a restore killed at any instant leaves what `delete` removes, as a killed create does),
the cgroups made from config.json with their device rules and limits. Then criu runs:

- in the container's cgroups (it joins them before exec, as runc moves criu there), with
  `cg_root` naming them and `manage_cgroups` (runc's default mode soft), so the restored
  tree lands in them;
- in a private mount namespace (ours, entered for this) where the rootfs is bound on
  itself (CRIU wants its root to be a mount point; runc binds it to a criu-root
  directory on the host and unmounts it after; ours vanishes with the namespace, even if
  we are killed);
- with every bind mount mapped to its source and masked files to /dev/null (external
  mounts, as `checkpoint` described them), a network or PID namespace given by path
  handed over (`inherit_fd`), our stdin/stdout/stderr in place of the pipes the
  checkpointed init had (descriptors.json, as runc);
- with the prestart and createRuntime hooks run when CRIU notifies `setup-namespaces`,
  as runc runs them on restore; no createContainer or startContainer hook runs (no
  runtime process enters the container: CRIU restores the processes), and no poststart
  (runc runs none on restore); poststop at delete;
- with a terminal: the pty master CRIU made (`orphan-pts-master`) sent to
  --console-socket, as runc does;
- `rst_sibling`: the restored init is our child.

Then the record gets the restored init's pid and start time, and no exec fifo: the status
is `running`. Without -d we wait for it as `run` does and delete the container after.
A failed restore (CRIU's reason in one line) kills whatever CRIU left and removes the
cgroups and the state directory: nothing is left.
"""

from __future__ import annotations

import _signal
import gc
import os

from ociruntime import SPEC_VERSION, criu
from ociruntime.cgroups import cgroupfs
from ociruntime.commands import provision
from ociruntime.commands.checkpoint import (
    BOOLEAN_FIELDS,
    check_cgroup_mode,
    check_empty_ns,
    image_path,
)
from ociruntime.commands.create import preflight
from ociruntime.container import bundle
from ociruntime.container import container as _container
from ociruntime.container.state import ContainerState, StateDir, process_start_time, validate_id
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import CLONE_NEWNET
from ociruntime.log import LOG


class RestoreOptions:
    """The command line's options, checked (cli.py builds it)."""

    def __init__(
        self, root: str, container_id: str, options: dict[str, object], criu_binary: str
    ) -> None:
        o = options
        self.root, self.container_id, self.criu_binary = root, container_id, criu_binary
        self.bundle = str(o["bundle"] or ".")
        self.images = image_path(o["image_path"])
        self.work = os.path.abspath(str(o["work_path"])) if o["work_path"] else None
        self.detach = bool(o["detach"])
        self.pid_file = str(o["pid_file"]) if o["pid_file"] else None
        self.console_socket = o["console_socket"]
        names = ("tcp-established", "ext-unix-sk", "shell-job", "file-locks", "auto-dedup",
                 "lazy-pages")  # fmt: skip
        self.flags = [f"--{name}" for name in names if o[name.replace("-", "_")]]
        self.cgroup_mode = check_cgroup_mode(o["manage_cgroups_mode"])
        self.empty_ns = check_empty_ns(o["empty_ns"])
        self.lsm_profile = o.get("lsm_profile")


def restore(opts: RestoreOptions) -> int:
    validate_id(opts.container_id)
    if os.geteuid() != 0:
        raise RuntimeFailure("restore: restoring a container requires root")
    if not os.path.isdir(opts.images):
        raise RuntimeFailure(f"--image-path: {opts.images}: no such directory")
    if opts.pid_file:
        from ociruntime.commands import pidfile

        pidfile.check_dir(opts.pid_file)
    found = cgroupfs.hierarchies()
    b, checked, pairs = preflight(opts.bundle, opts.container_id, found)
    _check_terminal(bool(b.config["process"].get("terminal")), opts)
    if opts.work is not None:
        os.makedirs(opts.work, 0o700, exist_ok=True)
    sd = StateDir(opts.root, opts.container_id)
    sd.create()
    undo = provision.Rollback(sd)
    state = None
    try:
        shared = cgroupfs.check_existing(pairs) > 0
        state = provision.first_record(sd, b, pairs, shared, checked.scope)
        resources = (b.config.get("linux") or {}).get("resources") or {}
        cgroups = provision.CgroupSetup(
            pairs, checked.devices, resources, undo, state.cgroup_created
        )
        planned = cgroups.make()
        if planned is not None:
            planned.apply()
        state.cgroup_created = undo.cgroups_created
        sd.save(state)
        sd.unlock()  # a hook may run `state`
        pid = _run_criu(opts, b, state, sd, pairs)
        info = process_start_time(pid)
        if info is None:
            raise RuntimeFailure("restore: the restored init exited at once")
        sd.lock()
        state.pid, state.start_time = pid, info[0]
        state.creator = None  # no exec fifo: running
        sd.save(state)
    except BaseException:
        if state is not None:
            _container.kill_and_wait(state)
        undo.run()
        raise
    if opts.pid_file:
        from ociruntime.commands import pidfile

        pidfile.write(opts.pid_file, pid)
    LOG.stage("restore: restored")
    if opts.detach:
        return 0
    return _wait_and_delete(sd, state)


def _check_terminal(terminal: bool, opts: RestoreOptions) -> None:
    """runc's rules (as create's): a detached terminal needs --console-socket, which is
    for nothing else; attaching a restored terminal to ours is not done (yet)."""
    if terminal and not opts.console_socket:
        if opts.detach:
            raise RuntimeFailure(
                "config.json: /process/terminal: cannot allocate tty if runc will detach "
                "without setting console socket (--console-socket)"
            )
        raise RuntimeFailure(
            "config.json: /process/terminal: restoring attached to this terminal is not "
            "supported: use -d and --console-socket"
        )
    if opts.console_socket and not (terminal and opts.detach):
        raise RuntimeFailure(
            "--console-socket: cannot use console socket if runc will not detach or allocate tty"
        )


def _cgroup_roots(pairs: list[tuple[cgroupfs.Hierarchy, str]]) -> list[tuple[str, str]]:
    """criu's cg_root for each hierarchy, (controllers, path): the container's cgroup
    as a path in it (runc reads them from criu's /proc/PID/cgroup once it joined; the
    same paths); no controller for the v2 hierarchy."""
    roots = []
    for h, d in pairs:
        rel = "/" + os.path.relpath(d, h.mountpoint).strip(".").lstrip("/")
        controllers = sorted(c.removeprefix("name=") for c in h.controllers)
        roots.append((",".join(controllers), rel))
    return roots


def _run_criu(
    opts: RestoreOptions,
    b: bundle.Bundle,
    state: ContainerState,
    sd: StateDir,
    pairs: list[tuple[cgroupfs.Hierarchy, str]],
) -> int:
    """criu's restore request; returns the restored init's pid (our child)."""
    config, rootfs = b.config, b.rootfs
    req = criu.Message().bytes(criu.ROOT, rootfs).int(criu.RST_SIBLING, 1)
    req.int(criu.MANAGE_CGROUPS, 1).int(
        criu.MANAGE_CGROUPS_MODE, criu.CGROUP_MODES[opts.cgroup_mode]
    )
    req.int(criu.ORPHAN_PTS_MASTER, 1)
    for ctrl, path in _cgroup_roots(pairs):
        root = criu.Message().bytes(1, ctrl) if ctrl else criu.Message()
        req.bytes(criu.CG_ROOT, root.bytes(2, path))
    for dest, source in criu.bind_mounts(config, rootfs):
        mapping = criu.Message().bytes(1, dest).bytes(2, os.path.join(b.path, source))
        req.bytes(criu.EXT_MNT, mapping)
    if (config.get("linux") or {}).get("maskedPaths"):
        req.bytes(criu.EXT_MNT, criu.Message().bytes(1, "/dev/null").bytes(2, "/dev/null"))
    for flag, field in BOOLEAN_FIELDS:
        if flag in opts.flags:
            req.int(field, 1)
    if opts.empty_ns:
        req.int(criu.EMPTY_NS, CLONE_NEWNET)
    if opts.lsm_profile:
        req.bytes(criu.LSM_PROFILE, str(opts.lsm_profile))
    keep: list[int] = []
    console = None
    try:
        for key, fd in _inherited(opts.images, config, keep):
            req.bytes(criu.INHERIT_FD, criu.Message().bytes(1, key).int(2, fd))
        if opts.console_socket:
            from ociruntime.process import terminal

            console = terminal.connect(str(opts.console_socket))
        notes = _Notifications(sd, b, state, config.get("hooks") or {}, console)
        _private_root(rootfs)
        driver = criu.Criu(opts.criu_binary, opts.images, opts.work or opts.images)
        dirs = [d for _, d in pairs]
        reply = driver.run(
            criu.RESTORE, "restore.log", req, notes.handle, keep,
            lambda: _enter(dirs), keep_log=opts.work is not None,
        )  # fmt: skip
    finally:
        for fd in keep:
            os.close(fd)
        if console is not None:
            console.close()
    restored = criu.decode((reply.get(4) or [b""])[0])
    pid = (restored.get(1) or [0])[0]
    if not pid:
        raise RuntimeFailure("criu restore: no pid in its reply")
    if console is not None and not notes.master_sent:
        raise RuntimeFailure("--console-socket: criu restored no terminal to send")
    return pid


class _Notifications:
    """CRIU's notifications during the restore, answered as runc answers them:
    `setup-namespaces` runs the prestart and createRuntime hooks (the restored init's
    pid in their state), `orphan-pts-master` sends the new pty master to the console
    socket. A failing hook fails the restore with the hook's own message."""

    def __init__(self, sd: StateDir, b: bundle.Bundle, state: ContainerState, hooks: dict,
                 console: object | None) -> None:  # fmt: skip
        self.sd, self.b, self.state, self.hooks, self.console = sd, b, state, hooks, console
        self.master_sent = False

    def handle(self, script: str, pid: int, fds: list[int]) -> None:
        if script == "setup-namespaces":
            self._hooks(pid)
        elif script == "orphan-pts-master" and fds:
            if self.console is None:
                raise RuntimeFailure(
                    "restore: the container has a terminal: --console-socket is required"
                )
            from ociruntime.process import terminal

            terminal._send_fd(self.console.sock, fds[0])  # type: ignore[attr-defined]
            self.master_sent = True

    def _hooks(self, pid: int) -> None:
        if not (self.hooks.get("prestart") or self.hooks.get("createRuntime")):
            return
        from ociruntime.process import hooks

        public = {
            "ociVersion": SPEC_VERSION,
            "id": self.sd.id,
            "status": "creating",
            "bundle": self.b.path,
            "pid": pid,
            **({"annotations": self.state.annotations} if self.state.annotations else {}),
        }
        for kind in ("prestart", "createRuntime"):
            hooks.run_hooks(kind, self.hooks.get(kind) or [], public)


def _inherited(images: str, config: dict, keep: list[int]) -> list[tuple[str, int]]:
    """inherit_fd entries (key, criu's fd): our own stdin, stdout and stderr (criu's,
    too: it inherits them) for each of the checkpointed init's that was a pipe
    (descriptors.json, runc's rule), and the namespaces joined by path (opened here and
    passed to criu under the same numbers)."""
    import json

    found: list[tuple[str, int]] = []
    try:
        with open(os.path.join(images, criu.DESCRIPTORS)) as f:
            descriptors = json.load(f)
    except FileNotFoundError:
        descriptors = []
    except (OSError, ValueError) as e:
        raise RuntimeFailure(f"--image-path: {criu.DESCRIPTORS}: {e}") from None
    for i, target in enumerate(descriptors[:3] if isinstance(descriptors, list) else []):
        if isinstance(target, str) and target.startswith("pipe:"):
            found.append((target, i))
    for ns_type, path in criu.joined_namespaces(config).items():
        _kind, key = criu.EXTERNAL_NAMESPACES[ns_type]
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise RuntimeFailure(f"config.json: /linux/namespaces: {path}: {e.strerror}") from None
        keep.append(fd)
        found.append((key, fd))
    return found


def _private_root(rootfs: str) -> None:
    """This process (and so criu, its child) into a mount namespace of its own where the
    rootfs is a mount point, as CRIU wants its root (runc binds it on a criu-root
    directory on the host and unmounts it after; ours vanishes with the namespace, even
    if we are killed). Ours, not only criu's: criu's service resolves the images and
    work directories through our /proc/PID/fd and makes its cgroup yard in the work
    directory, which must be a mount of criu's own namespace (EINVAL otherwise)."""
    sc.unshare(k.CLONE_NEWNS)
    sc.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    sc.mount(rootfs, rootfs, None, k.MS_BIND | k.MS_REC)


def _enter(dirs: list[str]) -> None:
    """In criu's process before its exec: into the container's cgroups (the restored tree
    inherits them, as runc moves criu there)."""
    cgroupfs.join(dirs, os.getpid())


def _wait_and_delete(sd: StateDir, state: object) -> int:
    """`restore` without -d: as `run` does, signals forwarded, the exit code returned,
    the container deleted once its init exited."""
    from ociruntime.commands.run import _forward
    from ociruntime.container.container import Container
    from ociruntime.signals import FORWARDED_SIGNALS

    pid = state.pid  # type: ignore[attr-defined]
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda n, _frame: _forward(pid, n))
    sd.unlock()
    gc.enable()  # a long wait: cycles are collected again (cli.run_and_exit)
    _, status = os.waitpid(pid, 0)
    try:
        sd.lock()
    except RuntimeFailure:
        pass
    else:
        Container(sd, state).destroy()  # type: ignore[arg-type]
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
