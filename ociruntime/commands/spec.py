"""The starter ``config.json`` written by ``ociruntime spec [--rootless]``.

The content mirrors what runc 1.1.5 writes for ``runc spec`` / ``runc spec --rootless`` so
that tooling and tutorials written against runc keep working, except that ``ociVersion``
is the runtime-spec version this runtime implements.  Key order matters: it is the order
runc's Go structs serialise in, and users diff these files against runc's.
"""

from __future__ import annotations

import json
import os

from ociruntime import SPEC_VERSION

#: runc's exact refusal text (runc chdirs into the bundle first, so the name is relative).
SPEC_EXISTS_MESSAGE = "File config.json exists. Remove it first"

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]

_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _process() -> dict:
    """The default process: an interactive ``sh`` as root with runc's minimal capabilities."""
    return {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
        ],
        "cwd": "/",
        "capabilities": {
            name: list(_DEFAULT_CAPS) for name in ("bounding", "effective", "permitted", "ambient")
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


def _mount(destination: str, mtype: str, source: str, options: list[str] | None) -> dict:
    """One mounts[] entry; runc omits ``options`` entirely when there are none."""
    entry = {"destination": destination, "type": mtype, "source": source}
    if options is not None:
        entry["options"] = options
    return entry


def _mounts(rootless: bool) -> list[dict]:
    """runc's default mounts.

    Rootless differs in two places: devpts drops ``gid=5`` (gid 5 is usually unmapped in a
    user namespace) and /sys becomes a read-only rbind of the host's /sys (a fresh sysfs
    cannot be mounted without owning the network namespace).
    """
    nse = ["nosuid", "noexec", "nodev"]
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")
    if rootless:
        sysfs = _mount("/sys", "none", "/sys", ["rbind", *nse, "ro"])
    else:
        sysfs = _mount("/sys", "sysfs", "sysfs", [*nse, "ro"])
    return [
        _mount("/proc", "proc", "proc", None),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts", devpts),
        _mount("/dev/shm", "tmpfs", "shm", [*nse, "mode=1777", "size=65536k"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", list(nse)),
        sysfs,
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", [*nse, "relatime", "ro"]),
    ]


def _linux(rootless: bool) -> dict:
    """The ``linux`` section.

    Rootless maps only the caller's euid/egid to root (all an unprivileged user can map
    without newuidmap), adds a user namespace, drops the network namespace (no way to
    configure it unprivileged) and drops the device cgroup rule (cgroups are not writable).
    On a pure cgroup v2 host runc also gives the container a cgroup namespace (before the
    user one it adds for rootless).
    """
    linux: dict = {}
    cgroup_ns = ["cgroup"] if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else []
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        namespaces = ["pid", "ipc", "uts", "mount", *cgroup_ns, "user"]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        namespaces = ["pid", "network", "ipc", "uts", "mount", *cgroup_ns]
    linux["namespaces"] = [{"type": ns} for ns in namespaces]
    linux["maskedPaths"] = list(_MASKED_PATHS)
    linux["readonlyPaths"] = list(_READONLY_PATHS)
    return linux


def default_spec(rootless: bool = False) -> dict:
    """Return the config ``ociruntime spec [--rootless]`` writes (a fresh, mutable dict)."""
    return {
        "ociVersion": SPEC_VERSION,
        "process": _process(),
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": _mounts(rootless),
        "linux": _linux(rootless),
    }


def render_spec(spec: dict) -> str:
    """Serialise like Go's ``json.MarshalIndent(spec, "", "\\t")``: tabs, no final newline."""
    return json.dumps(spec, indent="\t", ensure_ascii=False)


def _check_bundle_dir(bundle: str) -> None:
    """Fail with runc's wording (it chdirs into the bundle first) if the bundle is unusable."""
    if not bundle:
        return
    if not os.path.exists(bundle):
        raise FileNotFoundError(f"chdir {bundle}: no such file or directory")
    if not os.path.isdir(bundle):
        raise NotADirectoryError(f"chdir {bundle}: not a directory")


def write_spec(bundle: str, rootless: bool) -> None:
    """Write ``<bundle>/config.json`` like ``runc spec``.

    Like runc, an existing config.json is never overwritten (``os.stat`` follows symlinks,
    so a dangling symlink is written through, exactly as runc does) and the file is created
    with mode 0666 minus the umask.  Raises FileExistsError with runc's message, and
    FileNotFoundError/NotADirectoryError worded like runc's failed chdir for a bad bundle.
    """
    _check_bundle_dir(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    else:
        raise FileExistsError(SPEC_EXISTS_MESSAGE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_spec(default_spec(rootless)))
