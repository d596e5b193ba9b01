"""The conformance corpus: configs as functions of one base config.

The base is what `runc spec` writes (ociruntime.commands.spec), with `terminal: false` and
`/inspect` as the process. Each `Case` edits a copy of it to exercise one field group of
config.md / config-linux.md; the runtime-spec's own examples appear where they can run on
this host; hypothesis combines valid choices per field group into further variations.

Everything here must be safe to run on the host: a sysctl only in a namespace the
container owns, a hostname only in a UTS namespace of its own (or the holder's), hard
rlimits never above the runner's (root lacks CAP_SYS_RESOURCE), oomScoreAdj only raised,
no capability the host's bounding set lacks.

`@BUNDLE@`, `@ID@`, `@TAG@` and `@NS:<holder>:<type>@` are filled in per bundle by the
harness (absolute bundle path, container id, workspace tag, a holder's namespace file);
`@VETH@` in a case with `veth=True` is the host end of the pair made for that run;
`@AGENT@` in a case with an `agent` is the socket its seccomp agent listens on.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from conformance.linuxcaps import CAP_NUMBERS
from testkit.bundles import base_config as example_config

Edit = Callable[[dict], None]

#: The host's bounding set lacks it, so no runtime can grant it here.
UNGRANTABLE_CAPS = frozenset({"CAP_SYS_RESOURCE"})
HOST_CAPS = tuple(c for c in CAP_NUMBERS if c not in UNGRANTABLE_CAPS)
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

#: Files every bundle gets, so masked/read-only/bind cases have something real to hide.
COMMON_FILES: dict[str, str | None] = {
    "rootfs/secret.txt": "TOPSECRET\n",
    "rootfs/secretdir/key": "hidden\n",
    "rootfs/ro-dir/file": "data\n",
    "rootfs/ro-file.txt": "data\n",
    "rootfs/src/inner": None,
    "shared/hello.txt": "hello\n",
    "hello.txt": "hello\n",
    "volumes/testing/data.txt": "testing\n",
}


@dataclass(frozen=True)
class Need:
    """A feature a case needs that ociruntime does not have yet."""

    feature: str
    issue: str


@dataclass(frozen=True)
class Case:
    """One config: how it differs from the base, and what it is about."""

    name: str
    group: str  # the feature group it exercises (a row of RESULTS.md)
    doc: str  # what it shows, in terms of the spec
    edit: Edit | None = None
    probes: tuple[str, ...] = ()  # extra paths for the inspector to probe
    nodes: tuple[str, ...] = ()  # device nodes outside /dev to stat
    holders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    must_fail: bool = False  # a config the spec says MUST generate an error
    error_field: str = ""  # must_fail: ociruntime's one-line error names this field
    needs: Need | None = None  # later-issue feature: reported apart, never counted
    summary: str = ""  # generated cases: the variation, for RESULTS.md
    caller_umask: int | None = None  # the umask the runtime is started with
    veth: bool = False  # a fresh veth pair per run; `@VETH@` names the end to move in
    #: A seccomp agent listens on `@AGENT@` during each run and answers notified syscalls
    #: by name: ("errno", N) fails the call, anything unlisted continues (testkit/seccomp_agent).
    agent: Mapping[str, tuple[str, int]] | None = None

    def config(self) -> dict:
        config = base_config()
        if self.edit:
            self.edit(config)
        return config


#: config-linux.md's `devices` example (also part of its full example config).
SPEC_EXAMPLE_DEVICES = [
    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0,
     "gid": 0},
    {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 432, "uid": 0,
     "gid": 0},
]  # fmt: skip


def base_config() -> dict:
    """runc's default spec (the example bundle's config, written by `runc spec`, with its
    own hostname), non-interactive, running the inspector."""
    config = example_config(["/inspect"])
    config["process"]["terminal"] = False
    config["hostname"] = "runc"  # `runc spec`'s
    return config


# --- edit helpers: each returns an Edit ------------------------------------------------


def compose(*edits: Edit) -> Edit:
    def edit(config: dict) -> None:
        for e in edits:
            e(config)

    return edit


def top(**fields: object) -> Edit:
    """Set (or, with None, remove) top-level fields."""
    return _setter(lambda c: c, fields)


def process(**fields: object) -> Edit:
    return _setter(lambda c: c["process"], fields)


def linux(**fields: object) -> Edit:
    return _setter(lambda c: c.setdefault("linux", {}), fields)


def root(**fields: object) -> Edit:
    return _setter(lambda c: c["root"], fields)


def _setter(where: Callable[[dict], dict], fields: Mapping[str, object]) -> Edit:
    def edit(config: dict) -> None:
        target = where(config)
        for key, value in fields.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = copy.deepcopy(value)

    return edit


def add_mounts(*mounts: dict) -> Edit:
    def edit(config: dict) -> None:
        config["mounts"] += copy.deepcopy(list(mounts))

    return edit


def namespaces(*kinds: str, **paths: str) -> Edit:
    """Exactly these namespaces (mount is implied: ociruntime requires one); a keyword
    joins that type by path instead."""

    def edit(config: dict) -> None:
        wanted = ["mount", *kinds, *paths]
        entries = [{"type": k} for k in dict.fromkeys(wanted)]
        for entry in entries:
            if entry["type"] in paths:
                entry["path"] = paths[entry["type"]]
        config["linux"]["namespaces"] = entries
        if "uts" not in wanted:  # a hostname needs a UTS namespace of the container's
            config.pop("hostname", None)
            config.pop("domainname", None)

    return edit


def caps(**sets: list[str]) -> Edit:
    return process(capabilities={name: list(value) for name, value in sets.items()})


def tmpfs(destination: str, *options: str) -> dict:
    return {
        "destination": destination,
        "type": "tmpfs",
        "source": "tmpfs",
        "options": list(options),
    }


def bind(source: str, destination: str, *options: str) -> dict:
    return {"destination": destination, "type": "bind", "source": source, "options": list(options)}


# --- the runtime-spec's own examples (config.md, config-linux.md) ------------------------


def spec_example_process() -> Edit:
    """config.md "Example (Linux)" of `process`, minus apparmorProfile and selinuxLabel
    (this host has neither LSM: `lsm_cases` shows both refused) and terminal (a foreground
    run here has no console socket). Its execCPUAffinity names CPU 7, which this host may
    lack: it applies to exec only, never to the init this case runs."""
    return process(
        user={"uid": 1, "gid": 1, "umask": 63, "additionalGids": [5, 6]},
        env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        cwd="/root",
        noNewPrivileges=True,
        capabilities={
            "bounding": DEFAULT_CAPS,
            "permitted": DEFAULT_CAPS,
            "inheritable": DEFAULT_CAPS,
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        },
        rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        ioPriority={"class": "IOPRIO_CLASS_IDLE", "priority": 4},
        execCPUAffinity={"initial": "7", "final": "0-3,7"},
    )


def spec_example_full() -> Edit:
    """config.md "Configuration Schema Example", every part that runs without a later
    issue or an LSM: user namespace mappings, resources, seccomp, apparmor, selinux,
    the time namespace and the hooks' nonexistent programs are left out; cgroupsPath is
    made unique to the run."""
    return compose(
        spec_example_process(),
        process(
            user={"uid": 1, "gid": 1, "additionalGids": [5, 6]},
            cwd="/",
            rlimits=[
                {"type": "RLIMIT_CORE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            ],
            oomScoreAdj=100,
        ),
        top(hostname="slartibartfast"),
        _spec_example_sysfs_rw,
        namespaces("pid", "network", "ipc", "uts", "cgroup"),
        linux(
            devices=SPEC_EXAMPLE_DEVICES,
            sysctl={"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256"},
            cgroupsPath="/@ID@-myRuntime/myContainer",
            rootfsPropagation="slave",
            maskedPaths=[
                "/proc/kcore",
                "/proc/latency_stats",
                "/proc/timer_stats",
                "/proc/sched_debug",
            ],
            readonlyPaths=[
                "/proc/asound",
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        ),
        top(annotations={"com.example.key1": "value1", "com.example.key2": "value2"}),
    )


def _spec_example_sysfs_rw(config: dict) -> None:
    """The full example mounts /sys without `ro`."""
    for m in config["mounts"]:
        if m["destination"] == "/sys":
            m["options"] = ["nosuid", "noexec", "nodev"]


SPEC_MOUNTS_EXAMPLE = (
    tmpfs("/tmp", "nosuid", "strictatime", "mode=755", "size=65536k"),
    {
        "destination": "/data",
        "type": "none",
        "source": "@BUNDLE@/volumes/testing",
        "options": ["rbind", "rw"],
    },
)

# --- static cases, by field group ------------------------------------------------------


def baseline_cases() -> list[Case]:
    return [
        Case(
            "default",
            "baseline",
            "runc's default spec: every default mount, device, "
            "masked and read-only path, capabilities, rlimit, NoNewPrivs, PID 1",
        ),
        Case(
            "spec-example",
            "baseline",
            "config.md's full example (its core parts)",
            spec_example_full(),
            nodes=("/dev/fuse", "/dev/sda"),
        ),
        Case(
            "spec-example-process",
            "baseline",
            "config.md's Linux process example",
            spec_example_process(),
        ),
        Case(
            "spec-example-mounts",
            "baseline",
            "config.md's Linux mounts example: tmpfs with options, rbind of a host directory",
            compose(root(readonly=False), add_mounts(*SPEC_MOUNTS_EXAMPLE)),
        ),
    ]


def root_cases() -> list[Case]:
    return [
        Case("root-writable", "root", "root.readonly false: / is writable", root(readonly=False)),
        Case(
            "root-absolute-path",
            "root",
            "root.path absolute instead of bundle-relative",
            root(path="@BUNDLE@/rootfs"),
        ),
    ]


def tmpfs_and_bind_cases() -> list[Case]:
    """tmpfs options and binds of a dir, a relative source, a file."""
    return [
        Case(
            "mounts-tmpfs-options",
            "mounts",
            "tmpfs with flags and data options",
            add_mounts(
                tmpfs(
                    "/scratch",
                    "nosuid",
                    "nodev",
                    "noexec",
                    "mode=700",
                    "size=1m",
                    "uid=1000",
                    "gid=1000",
                )
            ),
        ),
        Case(
            "mounts-tmpfs-ro-atime",
            "mounts",
            "ro, noatime, strictatime, nodiratime",
            add_mounts(
                tmpfs("/ro-scratch", "ro"),
                tmpfs("/noatime", "noatime"),
                tmpfs("/strict", "strictatime", "nodiratime"),
            ),
        ),
        Case(
            "mounts-bind-dir",
            "mounts",
            "bind of a host dir with ro,nosuid,nodev,noexec",
            add_mounts(
                bind("@BUNDLE@/shared", "/shared", "bind", "ro", "nosuid", "nodev", "noexec")
            ),
        ),
        Case(
            "mounts-bind-relative-source",
            "mounts",
            "a bind source relative to the bundle",
            add_mounts(bind("shared", "/shared", "rbind")),
        ),
        Case(
            "mounts-bind-file",
            "mounts",
            "a bind-mounted file",
            add_mounts(bind("@BUNDLE@/hello.txt", "/etc/hello.txt", "bind", "ro")),
        ),
    ]


def submount_propagation_order_cases() -> list[Case]:
    """Submounts (rbind, bind), propagation, destinations, order, the cgroup mount."""
    writable = root(readonly=False)
    return [
        Case(
            "mounts-rbind-rro",
            "mounts",
            "rbind takes submounts along, rro makes every one read-only",
            add_mounts(tmpfs("/src/inner"), bind("@BUNDLE@/rootfs/src", "/view", "rbind", "rro")),
        ),
        Case(
            "mounts-bind-not-recursive",
            "mounts",
            "bind (not rbind) leaves submounts out",
            add_mounts(tmpfs("/src/inner"), bind("@BUNDLE@/rootfs/src", "/view", "bind")),
        ),
        Case(
            "mounts-propagation",
            "mounts",
            "shared, private, unbindable, rslave options",
            add_mounts(
                tmpfs("/p-shared", "shared"),
                tmpfs("/p-private", "private"),
                tmpfs("/p-unbindable", "unbindable"),
                bind("@BUNDLE@/shared", "/p-rslave", "rbind", "rslave"),
            ),
        ),
        Case(
            "mounts-relative-destination",
            "mounts",
            "a relative destination is relative to / (deprecated, still a MUST)",
            add_mounts(tmpfs("relative-dest")),
        ),
        Case(
            "mounts-order",
            "mounts",
            "entries are mounted in order: the later one of two at the same place is on top",
            compose(
                writable, add_mounts(tmpfs("/layered", "mode=711"), tmpfs("/layered", "mode=750"))
            ),
        ),
        Case(
            "mounts-cgroup-rw",
            "mounts",
            "the cgroup mount without ro",
            _cgroup_mount_options(["nosuid", "noexec", "nodev", "relatime"]),
        ),
    ]


def _cgroup_mount_options(options: list[str]) -> Edit:
    def edit(config: dict) -> None:
        for m in config["mounts"]:
            if m["type"] == "cgroup":
                m["options"] = list(options)

    return edit


def uts_cases() -> list[Case]:
    return [
        Case("hostname", "uts", "config.md's hostname example", top(hostname="mrsdalloway")),
        Case(
            "domainname",
            "uts",
            "config.md's domainname example, with a hostname",
            top(hostname="box", domainname="foobarbaz.test"),
        ),
    ]


def user_cases() -> list[Case]:
    return [
        Case("user-nonroot", "user", "uid/gid 1000", process(user={"uid": 1000, "gid": 1000})),
        Case(
            "user-additional-gids",
            "user",
            "root with additionalGids",
            process(user={"uid": 0, "gid": 0, "additionalGids": [10, 20, 1000]}),
        ),
        Case(
            "user-umask", "user", "umask 0077", process(user={"uid": 0, "gid": 0, "umask": 0o077})
        ),
        Case(
            "user-umask-zero",
            "user",
            "umask 0 (falsy, still set)",
            process(user={"uid": 1000, "gid": 100, "umask": 0}),
        ),
        Case(
            "user-umask-unset",
            "user",
            "no umask, runtime started with umask 027: config.md says it should stay",
            process(user={"uid": 0, "gid": 0}),
            caller_umask=0o027,
        ),
        Case(
            "user-spec-example",
            "user",
            "config.md's user example",
            process(user={"uid": 1, "gid": 1, "umask": 63, "additionalGids": [5, 6]}),
        ),
    ]


def process_cases() -> list[Case]:
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return [
        Case(
            "env-custom",
            "env",
            "values with spaces, '=' and empty values",
            process(env=[path, "FOO=bar", "EMPTY=", "SPACED=a b  c", "EQUALS=a=b=c"]),
        ),
        Case("env-home-set", "env", "HOME given by the config", process(env=[path, "HOME=/home"])),
        Case("cwd-tmp", "cwd", "cwd /tmp", process(cwd="/tmp")),
        Case(
            "cwd-nonroot",
            "cwd",
            "cwd /home as uid 1000",
            process(cwd="/home", user={"uid": 1000, "gid": 1000}),
        ),
        Case(
            "args-multi",
            "args",
            "arguments with spaces and an empty one",
            process(args=["/inspect", "a b", "", "--x=y"]),
        ),
        Case(
            "args-path-lookup",
            "args",
            "args[0] without a slash is looked up in the config's PATH, like execvp",
            process(args=["inspect"], env=["PATH=/usr/bin:/", "TERM=xterm"]),
        ),
        Case(
            "nnp-false", "noNewPrivileges", "noNewPrivileges false", process(noNewPrivileges=False)
        ),
        Case("oom-100", "oomScoreAdj", "config.md's oomScoreAdj example", process(oomScoreAdj=100)),
        Case("oom-1000", "oomScoreAdj", "the maximum", process(oomScoreAdj=1000)),
    ]


def capability_cases() -> list[Case]:
    return [
        Case("caps-none", "capabilities", "every set empty", process(capabilities={})),
        Case(
            "caps-root-custom",
            "capabilities",
            "root with distinct sets",
            caps(
                bounding=["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_NET_RAW"],
                effective=["CAP_KILL"],
                permitted=["CAP_KILL", "CAP_CHOWN"],
                inheritable=["CAP_CHOWN"],
                ambient=["CAP_CHOWN"],
            ),
        ),
        Case(
            "caps-user-ambient",
            "capabilities",
            "a non-root user keeps its ambient set",
            compose(
                process(user={"uid": 1000, "gid": 1000}),
                caps(
                    bounding=["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    effective=["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                    permitted=["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                    inheritable=["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                    ambient=["CAP_NET_BIND_SERVICE"],
                ),
            ),
        ),
        Case(
            "caps-all-host",
            "capabilities",
            "every capability the host allows, all sets",
            caps(
                **{
                    s: list(HOST_CAPS)
                    for s in ("bounding", "effective", "permitted", "inheritable", "ambient")
                }
            ),
        ),
        Case(
            "caps-unknown-name",
            "capabilities",
            "an unknown name must not fail the container (spec: warn, SHOULD NOT fail)",
            caps(
                bounding=[*DEFAULT_CAPS, "CAP_NOT_A_CAPABILITY"],
                effective=DEFAULT_CAPS,
                permitted=DEFAULT_CAPS,
            ),
        ),
    ]


def _rlimits(*limits: tuple[str, int, int]) -> Edit:
    """process.rlimits from (RLIMIT_ name, soft, hard)."""
    return process(rlimits=[{"type": f"RLIMIT_{t}", "soft": s, "hard": h} for t, s, h in limits])


def rlimit_cases() -> list[Case]:
    return [
        Case(
            "rlimits-several",
            "rlimits",
            "soft below hard, several types",
            _rlimits(
                ("NOFILE", 512, 1024),
                ("CORE", 0, 4096),
                ("NPROC", 2048, 4096),
                ("STACK", 4 << 20, 8 << 20),
                ("MSGQUEUE", 4096, 8192),
            ),
        ),
        Case(
            "rlimits-unlimited",
            "rlimits",
            "RLIM_INFINITY written as the uint64 maximum",
            _rlimits(("CPU", 2**64 - 1, 2**64 - 1), ("NOFILE", 1024, 1024)),
        ),
        Case(
            "rlimits-spec-example",
            "rlimits",
            "config.md's full example's rlimits",
            process(
                rlimits=[
                    {"type": "RLIMIT_CORE", "hard": 1024, "soft": 1024},
                    {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                ]
            ),
        ),
    ]


def new_namespace_cases() -> list[Case]:
    """Each namespace new, and all together."""
    return [
        Case(
            "ns-mount-only",
            "namespaces",
            "only a mount namespace: every other one is the runtime's",
            namespaces(),
        ),
        Case(
            "ns-pid", "namespaces", "a new PID namespace: the process is PID 1", namespaces("pid")
        ),
        Case("ns-network", "namespaces", "a new network namespace", namespaces("network")),
        Case("ns-ipc", "namespaces", "a new IPC namespace", namespaces("ipc")),
        Case(
            "ns-uts",
            "namespaces",
            "a new UTS namespace with a hostname",
            compose(namespaces("uts"), top(hostname="uts-only")),
        ),
        Case(
            "ns-cgroup",
            "namespaces",
            "a new cgroup namespace: the container's cgroup is its root",
            namespaces("pid", "cgroup"),
        ),
        Case(
            "ns-all",
            "namespaces",
            "pid, network, ipc, uts, mount and cgroup together",
            namespaces("pid", "network", "ipc", "uts", "cgroup"),
        ),
    ]


def joined_and_time_namespace_cases() -> list[Case]:
    """Namespaces joined by path, and a time namespace."""
    join = {"join": ("uts", "ipc", "net")}
    pid = {"pidjoin": ("pid",)}
    return [
        Case(
            "ns-join-by-path",
            "namespaces",
            "uts, ipc and network joined by path",
            namespaces(
                "pid", uts="@NS:join:uts@", ipc="@NS:join:ipc@", network="@NS:join:network@"
            ),
            holders=join,
        ),
        Case(
            "ns-join-pid",
            "namespaces",
            "a PID namespace joined by path",
            namespaces(pid="@NS:pidjoin:pid@"),
            holders=pid,
        ),
        Case(
            "ns-time",
            "namespaces",
            "a time namespace with config.md's timeOffsets (runtime-spec 1.1+)",
            compose(
                namespaces("pid", "time"),
                linux(
                    timeOffsets={
                        "monotonic": {"secs": 172800, "nanosecs": 0},
                        "boottime": {"secs": 604800, "nanosecs": 0},
                    }
                ),
            ),
        ),
    ]


def device_cases() -> list[Case]:
    return [
        Case(
            "devices-spec-example",
            "devices",
            "config-linux.md's devices example",
            linux(devices=SPEC_EXAMPLE_DEVICES),
        ),
        Case(
            "devices-modes-owners",
            "devices",
            "modes, owners, a fifo, a node outside /dev",
            compose(
                root(readonly=False),
                linux(
                    devices=[
                        {
                            "path": "/dev/custom-null",
                            "type": "c",
                            "major": 1,
                            "minor": 3,
                            "fileMode": 0o600,
                            "uid": 1000,
                            "gid": 100,
                        },
                        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640},
                        {"path": "/dev/sub/zero", "type": "c", "major": 1, "minor": 5},
                        {
                            "path": "/opt/dev/zero2",
                            "type": "c",
                            "major": 1,
                            "minor": 5,
                            "fileMode": 0o644,
                        },
                    ]
                ),
            ),
            nodes=("/opt/dev/zero2",),
        ),
    ]


def path_cases() -> list[Case]:
    return [
        Case(
            "masked-custom",
            "maskedPaths",
            "a file and a directory of the rootfs, and a path that does not exist",
            linux(maskedPaths=["/secret.txt", "/secretdir", "/no/such/path", "/proc/kcore"]),
        ),
        Case(
            "readonly-custom",
            "readonlyPaths",
            "a directory and a file of a writable rootfs, and a missing path",
            compose(
                root(readonly=False),
                linux(readonlyPaths=["/ro-dir", "/ro-file.txt", "/no/such/path", "/proc/sys"]),
            ),
        ),
        Case(
            "sysctl-spec-example",
            "sysctl",
            "config-linux.md's sysctl example (network)",
            linux(sysctl={"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256"}),
        ),
        Case(
            "sysctl-ipc",
            "sysctl",
            "IPC sysctls in the container's IPC namespace",
            linux(
                sysctl={
                    "kernel.shmmax": "65536",
                    "kernel.msgmax": "4096",
                    "fs.mqueue.queues_max": "128",
                }
            ),
        ),
    ]


def propagation_cases() -> list[Case]:
    return [
        Case(
            f"rootfs-{mode}",
            "rootfsPropagation",
            f"rootfsPropagation {mode}",
            linux(rootfsPropagation=mode),
        )
        for mode in ("shared", "slave", "private", "unbindable")
    ]


def cgroup_cases() -> list[Case]:
    return [
        Case(
            "cgroups-absolute",
            "cgroupsPath",
            "an absolute cgroupsPath: taken from the root of every hierarchy",
            linux(cgroupsPath="/@ID@-abs/leaf"),
        ),
        Case(
            "cgroups-relative",
            "cgroupsPath",
            "a relative cgroupsPath",
            linux(cgroupsPath="@ID@-rel/leaf"),
        ),
        Case(
            "annotations",
            "annotations",
            "annotations do not change the container",
            top(
                annotations={
                    "com.example.gpu-cores": "2",
                    "org.example/key": "",
                    "com.example.key1": "value1",
                }
            ),
        ),
    ]


def resources(**fields: object) -> Edit:
    """linux.resources with these fields, on top of the base's "deny every device"."""

    def edit(config: dict) -> None:
        config["linux"].setdefault("resources", {}).update(copy.deepcopy(fields))

    return edit


#: config-linux.md's "Allowed Device list" example (it goes with its devices example).
SPEC_EXAMPLE_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
    {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
]


def host_controller(name: str) -> bool:
    """Whether this host has the cgroup controller mounted (v1 or v2)."""
    from conformance.cgroupfiles import host_layout

    return host_layout().place(name) is not None


def host_block_device() -> tuple[int, int]:
    """A block device this host has (throttle rules must name one): the first of
    /sys/block, a loop device on most hosts."""
    for name in sorted(os.listdir("/sys/block")):
        with open(f"/sys/block/{name}/dev") as f:
            major, minor = f.read().split(":")
            return int(major), int(minor)
    return 7, 0


def resource_cases() -> list[Case]:
    """config-linux.md "Control groups": one case per field group of linux.resources;
    each limit must show in the container's cgroup file (cgroupfiles.py), each device
    rule in what the container may open."""
    major, minor = host_block_device()
    cases = [
        Case(
            "resources-memory-pids",
            "resources",
            "memory.limit, pids.limit and cpu.shares in memory.limit_in_bytes (memory.max), "
            "pids.max and cpu.shares (cpu.weight by runc's formula)",
            resources(memory={"limit": 536870912}, pids={"limit": 512}, cpu={"shares": 512}),
        ),
        Case(
            "resources-memory",
            "resources",
            "memory reservation, swap (memory+swap), swappiness and disableOOMKiller",
            resources(memory={"limit": 536870912, "reservation": 268435456,
                              "swap": 1073741824, "swappiness": 10,
                              "disableOOMKiller": True}),
        ),
        Case(
            "resources-cpu",
            "resources",
            "cpu shares, quota and period (cpu.cfs_*_us or cpu.max), cpus and mems "
            "(cpuset), pids -1 (unlimited)",
            resources(cpu={"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0",
                           "mems": "0"},
                      pids={"limit": -1}),
        ),
        Case(
            "resources-blockio",
            "resources",
            "blockIO weight (checked where the host has a weight file) and per-device "
            f"throttles on this host's block device {major}:{minor}",
            resources(blockIO={
                "weight": 500,
                "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 300}],
            }),
        ),
    ]  # fmt: skip
    return cases + _device_rule_cases() + _host_dependent_resource_cases()


def _device_rule_cases() -> list[Case]:
    """linux.resources.devices: what the container may open."""
    return [
        Case(
            "resources-devices",
            "resources",
            "config-linux.md's devices and allowed device list examples: /dev/fuse "
            "rw, /dev/sda read-only, every other device denied",
            compose(linux(devices=SPEC_EXAMPLE_DEVICES),
                    resources(devices=SPEC_EXAMPLE_DEVICE_RULES)),
        ),
        Case(
            "resources-devices-deny",
            "resources",
            "rules denying writes to /dev/full and all access to /dev/zero, after the "
            "base's deny-all: the last matching rule decides, even for a default device",
            resources(devices=[
                {"allow": False, "access": "rwm"},
                {"allow": False, "type": "c", "major": 1, "minor": 7, "access": "w"},
                {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            ]),
        ),
    ]  # fmt: skip


def _host_dependent_resource_cases() -> list[Case]:
    """hugetlb where the host has 2MB pages; classID applied, or refused without net_cls."""
    cases = []
    if host_controller("hugetlb") and os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        cases.append(
            Case(
                "resources-hugetlb",
                "resources",
                "config-linux.md's hugepageLimits example's 2MB entry (on a hybrid host "
                "the hugetlb controller is on the v2 hierarchy, read from the host)",
                resources(hugepageLimits=[{"pageSize": "2MB", "limit": 209715200}]),
            )
        )
    network = resources(network={"classID": 1048577})
    if host_controller("net_cls"):
        cases.append(Case("resources-network", "resources", "config-linux.md's classID", network))
    else:
        cases.append(
            Case(
                "resources-network",
                "resources",
                "config-linux.md's classID on a host without the net_cls controller: "
                "refused (runtime.md create: a property that cannot be applied)",
                network,
                must_fail=True,
                error_field="/linux/resources/network/classID",
            )
        )
    return cases


#: config-linux.md's user namespace mapping (its example's hostID 1000 is a real user
#: here; 100000 is the first id engines hand out from /etc/subuid).
USERNS_MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]
#: config-linux.md's seccomp example.
SPEC_EXAMPLE_SECCOMP = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ERRNO"}],
}


#: config-linux.md's SCMP_ACT_NOTIFY: every call of these goes to the agent.
SECCOMP_NOTIFY = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "listenerPath": "@AGENT@",
    "listenerMetadata": "conformance-@ID@",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["getcwd", "chmod", "fchmodat"], "action": "SCMP_ACT_NOTIFY"},
    ],
}


def userns(*kinds: str) -> Edit:
    """A new user namespace (with these other namespaces) mapping 0 -> 100000."""
    return compose(
        namespaces("user", *kinds),
        linux(uidMappings=USERNS_MAPPING, gidMappings=USERNS_MAPPING),
    )


# Issue #4's features: terminal, user namespaces, id-mapped mounts, seccomp,
# netDevices.
def terminal_and_user_namespace_cases() -> list[Case]:
    """The terminal, user namespaces, an id-mapped mount."""
    return [
        Case(
            "terminal",
            "terminal",
            "process.terminal with config.md's consoleSize example: a pty on stdio, sent "
            "over --console-socket; /dev/console is the pty",
            process(terminal=True, consoleSize={"height": 25, "width": 80}),
        ),
        Case(
            "terminal-user",
            "terminal",
            "a terminal for uid 1000 in a PID namespace, another size",
            compose(
                namespaces("pid", "ipc", "uts"),
                process(
                    terminal=True,
                    consoleSize={"height": 40, "width": 160},
                    user={"uid": 1000, "gid": 1000},
                ),
            ),
        ),
        Case(
            "user-namespace",
            "userNamespace",
            "a user namespace with uid/gid mappings: root inside is 100000 on the host",
            userns("pid", "network", "ipc", "uts"),
        ),
        Case(
            "user-namespace-nonroot",
            "userNamespace",
            "uid 1000 / gid 1000 and additionalGids inside a user namespace",
            compose(
                userns("pid", "network", "ipc", "uts", "cgroup"),
                process(user={"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}),
            ),
        ),
        Case(
            "idmapped-mount",
            "userNamespace",
            "an id-mapped bind mount (config.md `idmap`, mount uid/gidMappings): the host's "
            "root-owned files show as the container's root",
            compose(
                userns("pid", "network", "ipc", "uts"),
                add_mounts(
                    {
                        "destination": "/mapped",
                        "type": "bind",
                        "source": "@BUNDLE@/shared",
                        "options": ["rbind", "ro", "idmap"],
                        "uidMappings": USERNS_MAPPING,
                        "gidMappings": USERNS_MAPPING,
                    },
                    bind("@BUNDLE@/shared", "/plain", "rbind", "ro"),
                ),
            ),
            nodes=("/mapped/hello.txt", "/plain/hello.txt"),
        ),
    ]  # fmt: skip


def seccomp_and_net_device_cases() -> list[Case]:
    """seccomp (with errnoRet, with a notify agent) and netDevices."""
    return [
        Case(
            "seccomp",
            "seccomp",
            "config-linux.md's seccomp example: getcwd and chmod fail with EPERM",
            linux(seccomp=SPEC_EXAMPLE_SECCOMP),
        ),
        Case(
            "seccomp-errnoret",
            "seccomp",
            "a rule's errnoRet: chmod fails with EACCES, getcwd is allowed",
            linux(
                seccomp={
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [
                        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
                         "errnoRet": 13},
                    ],
                }
            ),
        ),
        Case(
            "seccomp-notify",
            "seccomp",
            "SCMP_ACT_NOTIFY with listenerPath: the agent gets the notify fd and the "
            "container process state (listenerMetadata, status creating); chmod fails with "
            "the agent's answer (EACCES), getcwd is notified and continues",
            linux(seccomp=SECCOMP_NOTIFY),
            agent={"chmod": ("errno", 13), "fchmodat": ("errno", 13)},
        ),
        Case(
            "net-devices",
            "netDevices",
            "linux.netDevices: a host veth end moved in, renamed, its address kept, up",
            linux(netDevices={"@VETH@": {"name": "eth1"}}),
            veth=True,
        ),
    ]  # fmt: skip


def process_attr_cases() -> list[Case]:
    """Issue #4's per-task attributes: linux.personality, process.scheduler,
    process.ioPriority, process.execCPUAffinity (which applies to exec only: the exec
    lifecycle scenario checks the exec'd process; here, that the init is unaffected)."""
    return [
        Case(
            "personality",
            "personality",
            "linux.personality LINUX32: the init's execution domain is PER_LINUX32 "
            "(`uname -m` says i686 on x86_64)",
            linux(personality={"domain": "LINUX32"}),
        ),
        Case(
            "scheduler",
            "scheduler",
            "process.scheduler SCHED_BATCH with nice 5: the init's policy and nice",
            process(scheduler=dict(policy="SCHED_BATCH", nice=5)),
        ),
        Case(
            "scheduler-idle",
            "scheduler",
            "process.scheduler SCHED_IDLE, nice unset (the spec: 0)",
            process(scheduler=dict(policy="SCHED_IDLE")),
        ),
        Case(
            "io-priority",
            "ioPriority",
            "config.md's ioPriority example: class IOPRIO_CLASS_IDLE, priority 4",
            process(ioPriority={"class": "IOPRIO_CLASS_IDLE", "priority": 4}),
        ),
        Case(
            "io-priority-be",
            "ioPriority",
            "ioPriority IOPRIO_CLASS_BE, priority 6, for uid 1000",
            process(
                ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 6},
                user={"uid": 1000, "gid": 1000},
            ),
        ),
        Case(
            "exec-cpu-affinity",
            "execCPUAffinity",
            "process.execCPUAffinity is not applicable to the init: its CPUs stay the runtime's",
            process(execCPUAffinity={"initial": "0", "final": "0"}),
        ),
    ]


def lsm_enabled(lsm: str) -> bool:
    """Whether this host runs the LSM (then a label can be applied, and the cases below
    are not refusals)."""
    try:
        with open("/sys/kernel/security/lsm") as f:
            return lsm in f.read().split(",")
    except OSError:
        fallback = {"apparmor": "/sys/module/apparmor", "selinux": "/sys/fs/selinux"}
        return os.path.exists(fallback[lsm])


def lsm_cases() -> list[Case]:
    """The LSM refusals, for the LSMs this host lacks."""
    return [c for c in _lsm_refusals() if not lsm_enabled(c.group)]


def _lsm_refusals() -> list[Case]:
    """apparmorProfile, selinuxLabel and mountLabel on a host without the LSM: runtime.md
    "create": a runtime that cannot apply a property MUST generate an error, and no
    container is created. (On a host with the LSM they would be labels to check: listed
    apart there, see `later_cases`.)"""
    return [
        Case(
            "apparmor",
            "apparmor",
            "config.md's apparmorProfile example, on a host without AppArmor: refused",
            process(apparmorProfile="acme_secure_profile"),
            must_fail=True,
            error_field="/process/apparmorProfile",
        ),
        Case(
            "selinux",
            "selinux",
            "config.md's selinuxLabel and config-linux.md's mountLabel examples, on a host "
            "without SELinux: refused",
            compose(
                process(selinuxLabel="system_u:system_r:svirt_lxc_net_t:s0:c124,c675"),
                linux(mountLabel="system_u:object_r:svirt_sandbox_file_t:s0:c715,c811"),
            ),
            must_fail=True,
            error_field="/process/selinuxLabel",
        ),
        Case(
            "selinux-mount-label",
            "selinux",
            "config-linux.md's mountLabel example alone, on a host without SELinux: refused",
            linux(mountLabel="system_u:object_r:svirt_sandbox_file_t:s0:c715,c811"),
            must_fail=True,
            error_field="/linux/mountLabel",
        ),
    ]


# Configs the spec says MUST generate an error (and leave nothing behind).
def rlimit_and_namespace_error_cases() -> list[Case]:
    """Duplicate or unknown rlimits and namespaces."""
    nofile = {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}
    return [
        Case(
            "err-duplicate-rlimit",
            "errors",
            "config.md: duplicated rlimit types MUST error",
            process(rlimits=[nofile, dict(nofile, soft=512)]),
            must_fail=True,
        ),
        Case(
            "err-unknown-rlimit",
            "errors",
            "config.md: an rlimit type that cannot be mapped MUST error",
            process(rlimits=[{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]),
            must_fail=True,
        ),
        Case(
            "err-duplicate-namespace",
            "errors",
            "config-linux.md: duplicated namespace types MUST error",
            linux(namespaces=[{"type": "pid"}, {"type": "mount"}, {"type": "pid"}]),
            must_fail=True,
        ),
        Case(
            "err-namespace-wrong-type",
            "errors",
            "config-linux.md: a path that is not a namespace of the type MUST error",
            namespaces(uts="@NS:join:network@"),
            holders={"join": ("uts", "ipc", "net")},
            must_fail=True,
        ),
    ]


def process_root_hook_error_cases() -> list[Case]:
    """A relative cwd, empty args, no root, no executable, a zero hook timeout."""
    return [
        Case(
            "err-relative-cwd",
            "errors",
            "config.md: cwd MUST be absolute",
            process(cwd="tmp"),
            must_fail=True,
        ),
        Case(
            "err-empty-args",
            "errors",
            "config.md: args needs at least one entry",
            process(args=[]),
            must_fail=True,
        ),
        Case(
            "err-missing-root",
            "errors",
            "config.md: a directory MUST exist at root.path",
            root(path="no-such-rootfs"),
            must_fail=True,
        ),
        Case(
            "err-missing-executable",
            "errors",
            "the process cannot be executed",
            process(args=["/no/such/program"]),
            must_fail=True,
        ),
        Case(
            "err-hook-timeout-zero",
            "errors",
            "config.md: a hook timeout MUST be > 0",
            top(hooks={"createRuntime": [{"path": "/bin/true", "timeout": 0}]}),
            must_fail=True,
        ),
    ]


def static_cases() -> list[Case]:
    return [
        *baseline_cases(),
        *root_cases(),
        *tmpfs_and_bind_cases(),
        *submount_propagation_order_cases(),
        *uts_cases(),
        *user_cases(),
        *process_cases(),
        *capability_cases(),
        *rlimit_cases(),
        *new_namespace_cases(),
        *joined_and_time_namespace_cases(),
        *device_cases(),
        *path_cases(),
        *propagation_cases(),
        *cgroup_cases(),
        *resource_cases(),
        *terminal_and_user_namespace_cases(),
        *seccomp_and_net_device_cases(),
        *process_attr_cases(),
        *lsm_cases(),
        *rlimit_and_namespace_error_cases(),
        *process_root_hook_error_cases(),
    ]


# --- later issues: listed, run for the record, never counted ----------------------------

ISSUE_PROCESS = "#4"


def later_cases() -> list[Case]:
    def later(name: str, feature: str, issue: str, edit: Edit) -> Case:
        return Case(name, "later", feature, edit, needs=Need(feature, issue))

    return [
        *(
            later(
                c.name,
                f"{c.group} labels on a host with the LSM (no check yet)",
                ISSUE_PROCESS,
                c.edit or compose(),
            )
            for c in _lsm_refusals()
            if lsm_enabled(c.group)
        ),
    ]


#: Operations of later issues, listed in RESULTS.md (they are not configs). Issue #5's
#: pause/resume, update and events are lifecycle scenarios now (lifecycle.py).
LATER_OPERATIONS: tuple[tuple[str, str, str], ...] = ()
