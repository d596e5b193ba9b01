"""`restore`: a container made again from a checkpoint's images, under any id (runc's
semantics).

What `create` does for a new container, except that CRIU makes the processes in place of
our init: the bundle is checked as create checks it, the id reserved and recorded first
(a restore killed at any instant leaves what `delete` removes, as a killed create does),
the cgroups made from config.json with their device rules and limits. Then criu runs:

- in the container's cgroups (it joins them before exec, as runc moves criu there), with
  `--cgroup-root` naming them and `--manage-cgroups` (runc's default mode soft), so the
  restored tree lands in them;
- in a private mount namespace of its own where the rootfs is bound on itself (CRIU wants
  its `--root` to be a mount point; runc binds it to a criu-root directory on the host and
  unmounts it after; ours vanishes with criu's namespace, even if we are killed);
- with every bind mount mapped to its source and masked files to /dev/null (external
  mounts, as `checkpoint` described them), a network or PID namespace given by path
  handed over (`--inherit-fd`), our stdin/stdout/stderr in place of the pipes the
  checkpointed init had (descriptors.json, as runc);
- with the prestart and createRuntime hooks run at CRIU's setup-namespaces step
  (ociruntime.criu_action), as runc runs them on restore; no createContainer or
  startContainer hook runs (no runtime process enters the container: CRIU restores the
  processes), and no poststart (runc runs none on restore); poststop at delete;
- `--restore-sibling --restore-detached`: the restored init is our child, criu exits.

Then the record gets the restored init's pid and start time, and no exec fifo: the status
is `running`. Without -d we wait for it as `run` does and delete the container after.
A failed restore (CRIU's reason in one line) kills whatever CRIU left and removes the
cgroups and the state directory: nothing is left.
"""

from __future__ import annotations

import _signal
import os

from ociruntime import SPEC_VERSION, criu
from ociruntime.cgroups import cgroupfs
from ociruntime.commands.checkpoint import check_cgroup_mode, check_empty_ns, image_path
from ociruntime.commands.create import _CgroupSetup, _first_record, _Rollback, preflight
from ociruntime.container import container as _container
from ociruntime.container.state import StateDir, process_start_time, validate_id
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG

PID_FILE = "criu.pid"
HOOKS_JOB = "criu-hooks.json"
HOOK_FAILURE = "criu-hook-failure"
ACTION_SCRIPT = "criu-action.sh"


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
    if b.config["process"].get("terminal") or opts.console_socket:
        raise RuntimeFailure(
            "restore: a container with a terminal cannot be restored by ociruntime yet "
            "(criu's command line cannot hand back the pty master)"
        )
    if opts.work is not None:
        os.makedirs(opts.work, 0o700, exist_ok=True)
    sd = StateDir(opts.root, opts.container_id)
    sd.create()
    undo = _Rollback(sd)
    state = None
    try:
        shared = cgroupfs.check_existing(pairs) > 0
        state = _first_record(sd, b, pairs, shared)
        resources = (b.config.get("linux") or {}).get("resources") or {}
        cgroups = _CgroupSetup(pairs, checked.devices, resources, undo, state.cgroup_created)
        planned = cgroups.make()
        if planned is not None:
            planned.apply()
        state.cgroup_created = undo.cgroups_created
        sd.save(state)
        sd.unlock()  # a hook may run `state`
        pid = _run_criu(opts, b, state, sd, pairs, found)
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


def _cgroup_roots(pairs: list[tuple[cgroupfs.Hierarchy, str]]) -> list[str]:
    """criu's --cgroup-root for each hierarchy: the container's cgroup as a path in it
    (runc reads them from criu's /proc/PID/cgroup once it joined; the same paths)."""
    roots = []
    for h, d in pairs:
        rel = "/" + os.path.relpath(d, h.mountpoint).strip(".").lstrip("/")
        controllers = sorted(c.removeprefix("name=") for c in h.controllers)
        roots.append(f"{','.join(controllers)}:{rel}" if controllers else rel)
    return roots


def _run_criu(
    opts: RestoreOptions,
    b: object,
    state: object,
    sd: StateDir,
    pairs: list[tuple[cgroupfs.Hierarchy, str]],
    found: list[cgroupfs.Hierarchy],
) -> int:
    """criu restore; returns the restored init's pid (our child)."""
    config, rootfs = b.config, b.rootfs  # type: ignore[attr-defined]
    options = ["--root", rootfs, "--restore-detached", "--restore-sibling",
               "--pidfile", os.path.join(sd.path, PID_FILE),
               "--manage-cgroups=" + opts.cgroup_mode]  # fmt: skip
    for root in _cgroup_roots(pairs):
        options += ["--cgroup-root", root]
    for dest, source in criu.bind_mounts(config, rootfs):
        options += ["--ext-mount-map", f"{dest}:{os.path.join(b.path, source)}"]  # type: ignore[attr-defined]
    if (config.get("linux") or {}).get("maskedPaths"):
        options += ["--ext-mount-map", "/dev/null:/dev/null"]
    keep: list[int] = []
    try:
        options += _inherited(opts.images, config, keep)
        if opts.empty_ns:
            options += ["--empty-ns", opts.empty_ns]
        if opts.lsm_profile:
            options += ["--lsm-profile", str(opts.lsm_profile)]
        options += opts.flags
        hooks = config.get("hooks") or {}
        if hooks.get("prestart") or hooks.get("createRuntime"):
            options += ["--action-script", _hooks_script(sd, b, state, hooks, found)]
        driver = criu.Criu(opts.criu_binary, opts.images, opts.work or opts.images)
        dirs = [d for _, d in pairs]
        LOG.debug(f"restore: criu restore {' '.join(options)}")
        try:
            enter = lambda: _enter(dirs, rootfs)  # noqa: E731
            driver.run("restore", "restore.log", options, keep, enter, opts.work is not None)
        except RuntimeFailure:
            hook_failure = os.path.join(sd.path, HOOK_FAILURE)
            if os.path.exists(hook_failure):
                with open(hook_failure) as f:
                    raise RuntimeFailure(f.read().strip()) from None
            raise
    finally:
        for fd in keep:
            os.close(fd)
        for name in (HOOKS_JOB, HOOK_FAILURE, ACTION_SCRIPT):
            try:
                os.unlink(os.path.join(sd.path, name))
            except FileNotFoundError:
                pass
    with open(os.path.join(sd.path, PID_FILE)) as f:
        pid = int(f.read().strip())
    os.unlink(os.path.join(sd.path, PID_FILE))
    return pid


def _inherited(images: str, config: dict, keep: list[int]) -> list[str]:
    """--inherit-fd options: our stdio for each of the checkpointed init's stdio that was
    a pipe (descriptors.json, runc's rule), and the namespaces joined by path. The fds
    are duplicated above 2 (criu's own stdio is its log's) and kept open for criu."""
    import json

    options: list[str] = []
    try:
        with open(os.path.join(images, criu.DESCRIPTORS)) as f:
            descriptors = json.load(f)
    except FileNotFoundError:
        descriptors = []
    except (OSError, ValueError) as e:
        raise RuntimeFailure(f"--image-path: {criu.DESCRIPTORS}: {e}") from None
    for i, target in enumerate(descriptors[:3] if isinstance(descriptors, list) else []):
        if isinstance(target, str) and target.startswith("pipe:"):
            fd = os.dup(i)
            keep.append(fd)
            options += ["--inherit-fd", f"fd[{fd}]:{target}"]
    for ns_type, path in criu.joined_namespaces(config).items():
        _kind, key = criu.EXTERNAL_NAMESPACES[ns_type]
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise RuntimeFailure(f"config.json: /linux/namespaces: {path}: {e.strerror}") from None
        keep.append(fd)
        options += ["--inherit-fd", f"fd[{fd}]:{key}"]
    return options


def _enter(dirs: list[str], rootfs: str) -> None:
    """In criu's process before its exec: into the container's cgroups (the restored tree
    inherits them), into a mount namespace of its own with the rootfs a mount point."""
    cgroupfs.join(dirs, os.getpid())
    sc.unshare(k.CLONE_NEWNS)
    sc.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    sc.mount(rootfs, rootfs, None, k.MS_BIND | k.MS_REC)


def _hooks_script(sd: StateDir, b: object, state: object, hooks: dict, found: list) -> str:
    """The action script criu runs (ociruntime.criu_action) and the job it reads."""
    import json
    import shlex
    import sys

    public = {
        "ociVersion": SPEC_VERSION,
        "id": sd.id,
        "status": "creating",
        "bundle": b.path,  # type: ignore[attr-defined]
        **({"annotations": state.annotations} if state.annotations else {}),  # type: ignore[attr-defined]
    }
    job = {
        "state": public,
        "hooks": {kind: hooks.get(kind) or [] for kind in ("prestart", "createRuntime")},
        "own_cgroups": [os.path.join(h.mountpoint, h.own_path.lstrip("/")) for h in found],
        "reason_file": os.path.join(sd.path, HOOK_FAILURE),
    }
    job_path = os.path.join(sd.path, HOOKS_JOB)
    with open(job_path, "w") as f:
        json.dump(job, f)
    script = os.path.join(sd.path, ACTION_SCRIPT)
    with open(script, "w") as f:
        f.write(
            f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ociruntime.criu_action "
            f"{shlex.quote(job_path)}\n"
        )
    os.chmod(script, 0o700)
    return script


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
    _, status = os.waitpid(pid, 0)
    try:
        sd.lock()
    except RuntimeFailure:
        pass
    else:
        Container(sd, state).destroy()  # type: ignore[arg-type]
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
