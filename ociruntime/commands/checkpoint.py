"""`checkpoint`: dump a running container with CRIU (runc's semantics).

The container is described to CRIU as runc describes it: its rootfs as CRIU's root, every
bind mount and every masked file (a /dev/null bind) as an external mount, a network or PID
namespace joined by path as an external namespace, its cgroup as the one to freeze and to
record (`--manage-cgroups`, runc's default mode soft), and the targets of the init's
stdio in `descriptors.json` so that `restore` can reconnect pipes. After a dump (not a
pre-dump, not --leave-running) the container is gone: CRIU killed its processes and we
remove it as `delete` does (cgroups, state, poststop hooks), as runc destroys it.

A failed dump leaves nothing: the container keeps running as it was, and the image and
work directories this command created are removed again; the one line says CRIU's reason.
"""

from __future__ import annotations

import os

from ociruntime import criu
from ociruntime.container import bundle
from ociruntime.container.container import Container
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel.constants import CLONE_NEWNET
from ociruntime.log import LOG


class CheckpointOptions:
    """The command line's options, checked (cli.py builds it)."""

    def __init__(self, options: dict[str, object], criu_binary: str) -> None:
        o = options
        self.criu_binary = criu_binary
        self.images = image_path(o["image_path"])
        self.work = os.path.abspath(str(o["work_path"])) if o["work_path"] else None
        self.parent = str(o["parent_path"]) if o["parent_path"] else None
        self.leave_running = bool(o["leave_running"])
        self.pre_dump = bool(o["pre_dump"])
        self.flags = [f"--{name}" for name in ("tcp-established", "ext-unix-sk", "shell-job",
                      "file-locks", "auto-dedup") if o[name.replace("-", "_")]]  # fmt: skip
        self.lazy_pages = bool(o["lazy_pages"])
        self.page_server = str(o["page_server"]) if o["page_server"] else None
        self.cgroup_mode = check_cgroup_mode(o["manage_cgroups_mode"])
        self.empty_ns = check_empty_ns(o["empty_ns"])
        if self.parent is not None and self.parent.startswith("/"):
            raise RuntimeFailure("--parent-path: must be relative to --image-path")
        if self.lazy_pages and not self.page_server:
            raise RuntimeFailure("--lazy-pages: needs --page-server (criu's lazy-pages daemon)")


def image_path(value: object) -> str:
    """--image-path, absolute; runc's default: ./checkpoint."""
    return os.path.abspath(str(value or os.path.join(os.getcwd(), "checkpoint")))


def check_cgroup_mode(value: object) -> str:
    """runc's --manage-cgroups-mode: soft (its default), full, strict; and criu's ignore."""
    mode = str(value or "soft")
    if mode not in criu.CGROUP_MODES:
        raise RuntimeFailure(f"--manage-cgroups-mode: invalid manage cgroups mode: {mode}")
    return mode


def check_empty_ns(value: object) -> str | None:
    """runc's --empty-ns: only `network` (the namespace is created, not filled)."""
    if not value:
        return None
    if value != "network":
        raise RuntimeFailure(f"--empty-ns: namespace {value} is not supported (only network)")
    return "net"


def checkpoint(root: str, container_id: str, opts: CheckpointOptions) -> None:
    if os.geteuid() != 0:
        raise RuntimeFailure("checkpoint: checkpointing a container requires root")
    container = Container.load(root, container_id)
    status = container.status()
    if status not in ("running", "paused"):
        raise RuntimeFailure(f"Container cannot be checkpointed in {status} state")
    state = container.state
    b = bundle.load(state.bundle)
    made = _make_dirs(opts)
    before = {d: set(os.listdir(d)) for d in {opts.images, opts.work or opts.images}}
    try:
        _dump(container, b.config, opts)
    except BaseException:
        for d in reversed(made):
            _remove_tree(d)
        _remove_new_entries(before, keep=opts.work)
        raise
    if not (opts.leave_running or opts.pre_dump):
        container.destroy()  # CRIU killed the processes: cgroups, state, poststop hooks
    LOG.stage("checkpoint: done")


def _make_dirs(opts: CheckpointOptions) -> list[str]:
    """The image and work directories (0700, as runc), the ones made here listed so a
    failed dump removes them."""
    made = []
    for d in (opts.images, opts.work):
        if d is None or os.path.isdir(d):
            continue
        try:
            os.makedirs(d, 0o700)
        except OSError as e:
            flag = "--image-path" if d == opts.images else "--work-path"
            raise RuntimeFailure(f"{flag}: {d}: {e.strerror}") from None
        made.append(d)
    return made


def _remove_new_entries(before: dict[str, set[str]], keep: str | None) -> None:
    """What a failed dump wrote into directories that were there before (partial
    images): removed, but for CRIU's log in a --work-path the user named."""
    for d, names in before.items():
        if not os.path.isdir(d):
            continue
        for name in set(os.listdir(d)) - names:
            path = os.path.join(d, name)
            if keep is not None and d == keep and name.endswith(".log"):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                _remove_tree(path)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _remove_tree(d: str) -> None:
    """rm -r of a directory this command made (criu's images and log in it)."""
    try:
        entries = list(os.scandir(d))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def _dump(container: Container, config: dict, opts: CheckpointOptions) -> None:
    """runc's dump request: the init's tree, the rootfs as CRIU's root, external
    mounts and namespaces, the cgroup to freeze and record, the command's flags."""
    state = container.state
    pid = state.pid
    driver = criu.Criu(opts.criu_binary, opts.images, opts.work or opts.images)
    req = criu.Message().int(criu.PID, pid).bytes(criu.ROOT, state.rootfs)
    req.int(criu.ORPHAN_PTS_MASTER, 1)  # a terminal's master is outside the tree (runc)
    if opts.parent is not None:
        if not os.path.isdir(os.path.join(opts.images, opts.parent)):
            where = f"--parent-path: {opts.parent}"
            raise RuntimeFailure(f"{where}: no such directory under the image path")
        req.bytes(criu.PARENT_IMG, opts.parent).int(criu.TRACK_MEM, 1)
    for flag, field in BOOLEAN_FIELDS:
        if flag in opts.flags:
            req.int(field, 1)
    if opts.pre_dump:
        driver.run(
            criu.PRE_DUMP, "pre-dump.log", req.int(criu.TRACK_MEM, 1), keep_log=bool(opts.work)
        )
        return
    _write_descriptors(opts.images, pid)
    req.int(criu.MANAGE_CGROUPS, 1).int(
        criu.MANAGE_CGROUPS_MODE, criu.CGROUP_MODES[opts.cgroup_mode]
    )
    freezer = _freezer_dir(container)
    if freezer:
        req.bytes(criu.FREEZE_CGROUP, freezer)
    for dest, _source in criu.bind_mounts(config, state.rootfs):
        req.bytes(criu.EXT_MNT, criu.Message().bytes(1, dest).bytes(2, dest))
    for path in criu.masked_files(config, pid):
        req.bytes(criu.EXT_MNT, criu.Message().bytes(1, path).bytes(2, "/dev/null"))
    for ns_type, path in criu.joined_namespaces(config).items():
        kind, key = criu.EXTERNAL_NAMESPACES[ns_type]
        try:
            inode = os.stat(path).st_ino
        except OSError as e:
            raise RuntimeFailure(f"config.json: /linux/namespaces: {path}: {e.strerror}") from None
        req.bytes(criu.EXTERNAL, f"{kind}[{inode}]:{key}")
    if opts.empty_ns:
        req.int(criu.EMPTY_NS, CLONE_NEWNET)
    if opts.leave_running:
        req.int(criu.LEAVE_RUNNING, 1)
    if opts.lazy_pages:
        req.int(criu.LAZY_PAGES, 1)
    if opts.page_server:
        address, _, port = opts.page_server.rpartition(":")
        if not address or not port.isdigit():
            raise RuntimeFailure(f"--page-server: {opts.page_server}: expected ADDRESS:PORT")
        req.bytes(criu.PS, criu.Message().bytes(1, address).int(2, int(port)))
    try:
        driver.run(criu.DUMP, "dump.log", req, keep_log=bool(opts.work))
    except RuntimeFailure:
        try:
            os.unlink(os.path.join(opts.images, criu.DESCRIPTORS))
        except FileNotFoundError:
            pass
        raise


#: the boolean flags both commands share -> their criu_opts fields
BOOLEAN_FIELDS = (
    ("--tcp-established", criu.TCP_ESTABLISHED), ("--ext-unix-sk", criu.EXT_UNIX_SK),
    ("--shell-job", criu.SHELL_JOB), ("--file-locks", criu.FILE_LOCKS),
    ("--auto-dedup", criu.AUTO_DEDUP), ("--lazy-pages", criu.LAZY_PAGES),
)  # fmt: skip


def _freezer_dir(container: Container) -> str | None:
    """The cgroup CRIU freezes the tree with (runc's FreezeCgroup): v1's freezer
    directory, else the v2 one."""
    paths = container.state.cgroup_paths
    return paths.get("freezer") or paths.get("") or None


def _write_descriptors(images: str, pid: int) -> None:
    """What the init's stdin, stdout and stderr are (runc's descriptors.json): `restore`
    reconnects each that was a pipe to its own corresponding fd."""
    targets = []
    for fd in range(3):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            targets.append("/dev/null")
    import json

    with open(os.path.join(images, criu.DESCRIPTORS), "w") as f:
        json.dump(targets, f)
