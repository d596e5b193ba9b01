"""Spec-derived assertions: does a report show what config.json asked for?

Each `check_*` function covers one field group of config.md / config-linux.md /
runtime-linux.md and yields `Check`s. A MUST check failing fails the case; a NOTE records
something the spec leaves open (or only says "should") without failing anything.
Expectations are computed from the config alone (plus facts about the runner: its
namespaces, umask, oom score), never from what the other runtime did.
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from conformance import cgroupfiles, hostmounts
from conformance.linuxcaps import CAP_NUMBERS
from conformance.report import Mount, Report

# Every expectation here comes from the spec, the man pages and the kernel's headers,
# written in this suite: nothing is imported from ociruntime (its parsers would agree
# with their own mistakes).

MUST, NOTE = "MUST", "NOTE"

#: RLIMIT_* -> the row name in /proc/PID/limits (spaces as underscores, as printed).
RLIMIT_ROWS = {
    "RLIMIT_CPU": "Max_cpu_time",
    "RLIMIT_FSIZE": "Max_file_size",
    "RLIMIT_DATA": "Max_data_size",
    "RLIMIT_STACK": "Max_stack_size",
    "RLIMIT_CORE": "Max_core_file_size",
    "RLIMIT_RSS": "Max_resident_set",
    "RLIMIT_NPROC": "Max_processes",
    "RLIMIT_NOFILE": "Max_open_files",
    "RLIMIT_MEMLOCK": "Max_locked_memory",
    "RLIMIT_AS": "Max_address_space",
    "RLIMIT_LOCKS": "Max_file_locks",
    "RLIMIT_SIGPENDING": "Max_pending_signals",
    "RLIMIT_MSGQUEUE": "Max_msgqueue_size",
    "RLIMIT_NICE": "Max_nice_priority",
    "RLIMIT_RTPRIO": "Max_realtime_priority",
    "RLIMIT_RTTIME": "Max_realtime_timeout",
}
RLIM_INFINITY = 2**64 - 1
#: runtime-linux.md / config-linux.md "Default Devices": path -> (major, minor).
DEFAULT_DEVICES = {
    "/dev/null": (1, 3),
    "/dev/zero": (1, 5),
    "/dev/full": (1, 7),
    "/dev/random": (1, 8),
    "/dev/urandom": (1, 9),
    "/dev/tty": (5, 0),
}
#: runtime-linux.md "Dev symbolic links".
DEV_LINKS = {
    "/dev/fd": "/proc/self/fd",
    "/dev/stdin": "/proc/self/fd/0",
    "/dev/stdout": "/proc/self/fd/1",
    "/dev/stderr": "/proc/self/fd/2",
}
#: config.md name -> the name in /proc/PID/ns.
NS_FILES = {
    "pid": "pid",
    "network": "net",
    "ipc": "ipc",
    "uts": "uts",
    "mount": "mnt",
    "cgroup": "cgroup",
    "time": "time",
    "user": "user",
}


@dataclass(frozen=True)
class Check:
    group: str
    name: str
    ok: bool
    detail: str = ""
    level: str = MUST

    @property
    def failed(self) -> bool:
        return not self.ok and self.level == MUST

    def __str__(self) -> str:
        return f"{self.group}: {self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Facts:
    """What the checks need besides the config and the report."""

    config: dict
    report: Report
    rootfs: str  # host path of the bundle's rootfs
    bundle: str
    host_ns: dict[str, str]  # /proc/self/ns name -> inode, of the runner
    ns_paths: dict[str, str] = field(default_factory=dict)  # joined path -> its inode
    runner_umask: int = 0o022
    runner_oom_score_adj: str = "0"
    host_uptime: float = 0.0
    joined_hostname: str | None = None  # the hostname in a UTS namespace joined by path
    host_ids: dict[str, str] = field(default_factory=dict)  # the init's Uid/Gid on the host
    host_links: dict[str, list[str]] = field(default_factory=dict)  # host name -> addresses
    runner_cpus: str = ""  # the runner's Cpus_allowed_list
    agent: dict | None = None  # the seccomp agent: answers, received states, calls, errors

    @property
    def process(self) -> dict:
        return self.config.get("process") or {}

    @property
    def linux(self) -> dict:
        return self.config.get("linux") or {}

    def namespaces(self) -> dict[str, str | None]:
        return {ns["type"]: ns.get("path") for ns in self.linux.get("namespaces") or []}


def check(g: str, name: str, ok: bool, detail: str = "", level: str = MUST) -> Check:
    return Check(g, name, bool(ok), "" if ok else detail, level)


def expect(g: str, name: str, want: object, got: object, level: str = MUST) -> Check:
    return check(g, name, want == got, f"want {want!r}, got {got!r}", level)


def all_checks(f: Facts) -> list[Check]:
    if not f.report.complete:
        return [check("process", "the inspector ran to the end", False, "report incomplete")]
    groups = (
        check_process,
        check_args,
        check_env,
        check_cwd,
        check_uts,
        check_user,
        check_capabilities,
        check_rlimits,
        check_oom,
        check_namespaces,
        check_root,
        check_mounts,
        check_devices,
        check_masked,
        check_readonly,
        check_sysctl,
        check_propagation,
        check_cgroups,
        check_resources,
        check_device_cgroup,
        check_terminal,
        check_user_namespace,
        check_idmapped_mounts,
        check_seccomp,
        check_net_devices,
        check_personality,
        check_scheduler,
        check_io_priority,
        check_exec_cpu_affinity,
    )
    return [c for group in groups for c in group(f)]


# --- process ------------------------------------------------------------------------------


def check_process(f: Facts) -> Iterator[Check]:
    """No fd leaks into the container beyond stdio (and the shell's own script fd), no
    seccomp filter when none is configured, no_new_privs as configured."""
    fds = f.report.section("fd")
    extra = sorted(int(n) for n, kind in fds.items() if int(n) > 2 and kind != "script")
    yield check("process", "only stdio is open", not extra, f"also open: {extra}")
    if not f.linux.get("seccomp"):
        yield expect("process", "no seccomp filter", "0", f.report.get("status", "Seccomp"))
    nnp = "1" if f.process.get("noNewPrivileges") else "0"
    yield expect("noNewPrivileges", "NoNewPrivs", nnp, f.report.get("status", "NoNewPrivs"))


def check_args(f: Facts) -> Iterator[Check]:
    """The inspector is a script, so the kernel shows [interpreter, path, args[1:]...]:
    args[1:] must arrive intact, and args[0] must have been resolved like execvp's file."""
    args = f.process.get("args") or []
    yield expect("args", "args[1:] reach the process", args[1:], f.report.args[2:])
    yield expect("args", "args[0] resolved like execvp", _execvp_path(f), f.report.args[1:2])


def _execvp_path(f: Facts) -> list[str]:
    arg0 = (f.process.get("args") or [""])[0]
    if "/" in arg0:
        return [arg0]
    path = _env(f.process.get("env") or []).get("PATH", "")
    for directory in path.split(":"):
        candidate = posixpath.join(directory or ".", arg0)
        host = os.path.join(f.rootfs, candidate.lstrip("/"))
        if os.path.isfile(host) and os.access(host, os.X_OK):
            return [candidate]
    return ["<not found>"]


def _env(entries: list[str]) -> dict[str, str]:
    """`KEY=value` entries (config.md: as in POSIX environ) as a dict; the last of a name
    wins, as putenv in turn would; an entry without `=` is the name with an empty value."""
    pairs = [entry.split("=", 1) for entry in entries]
    return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}


def check_env(f: Facts) -> Iterator[Check]:
    want = _env(f.process.get("env") or [])
    got = _env(f.report.env)
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    yield check(
        "env",
        "every configured variable, with its value",
        not missing,
        f"missing or different: {missing}",
    )
    extra = sorted(set(got) - set(want))
    yield check(
        "env", "nothing beyond the configured variables", not extra, f"added: {extra}", NOTE
    )


def check_cwd(f: Facts) -> Iterator[Check]:
    yield expect(
        "cwd", "cwd", posixpath.normpath(f.process.get("cwd") or "/"), f.report.scalars.get("cwd")
    )


# --- uts, user, capabilities, limits ---------------------------------------------------------


def check_uts(f: Facts) -> Iterator[Check]:
    for key in ("hostname", "domainname"):
        if key in f.config:
            yield expect("uts", key, f.config[key], f.report.get("uts", key))
    if "hostname" not in f.config and f.joined_hostname:
        yield expect(
            "uts",
            "hostname of the joined UTS namespace",
            f.joined_hostname,
            f.report.get("uts", "hostname"),
        )


def check_user(f: Facts) -> Iterator[Check]:
    user = f.process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    yield expect(
        "user",
        "uid (real, effective, saved, fs)",
        f"{uid} {uid} {uid} {uid}",
        f.report.get("status", "Uid"),
    )
    yield expect(
        "user",
        "gid (real, effective, saved, fs)",
        f"{gid} {gid} {gid} {gid}",
        f.report.get("status", "Gid"),
    )
    groups = " ".join(str(g) for g in sorted(set(user.get("additionalGids") or [])))
    yield expect(
        "user", "supplementary groups = additionalGids", groups, f.report.get("status", "Groups")
    )
    got_umask = f.report.get("status", "Umask")
    if "umask" in user:
        yield expect("user", "umask", f"{user['umask']:04o}", got_umask)
    else:  # config.md: "If unspecified, the umask should not be changed"
        yield expect(
            "user", "umask unchanged when unset (should)", f"{f.runner_umask:04o}", got_umask, NOTE
        )


def _mask(names: list[str] | None) -> int:
    return sum(1 << CAP_NUMBERS[n] for n in names or [] if n in CAP_NUMBERS)


def expected_caps(f: Facts) -> dict[str, int]:
    """The five sets after the execve of the process, by capabilities(7):
    an ambient capability exists only if permitted and inheritable; without file
    capabilities, root gets P' = E' = bounding | inheritable | ambient (no more than it
    had, under no_new_privs), anyone else P' = E' = ambient."""
    sets = f.process.get("capabilities") or {}
    bounding, inheritable = _mask(sets.get("bounding")), _mask(sets.get("inheritable"))
    before = _mask(sets.get("permitted"))
    ambient = _mask(sets.get("ambient")) & before & inheritable
    if (f.process.get("user") or {}).get("uid", 0) == 0:
        permitted = bounding | inheritable | ambient
        if f.process.get("noNewPrivileges"):  # no_new_privs: execve gains nothing
            permitted &= before
    else:
        permitted = ambient
    return {
        "CapBnd": bounding,
        "CapInh": inheritable,
        "CapAmb": ambient,
        "CapPrm": permitted,
        "CapEff": permitted,
    }


def check_capabilities(f: Facts) -> Iterator[Check]:
    for name, want in expected_caps(f).items():
        got = f.report.get("status", name)
        yield expect("capabilities", name, f"{want:016x}", got)


def check_rlimits(f: Facts) -> Iterator[Check]:
    for rl in f.process.get("rlimits") or []:
        row = RLIMIT_ROWS.get(rl["type"])
        if row is None:
            continue
        got = f.report.get("rlimit", row)
        want = f"{_limit(rl['soft'])} {_limit(rl['hard'])}"
        yield expect("rlimits", rl["type"], want, got)


def _limit(value: int) -> str:
    return "unlimited" if value == RLIM_INFINITY else str(value)


def check_oom(f: Facts) -> Iterator[Check]:
    got = f.report.scalars.get("oom_score_adj")
    if "oomScoreAdj" in f.process:
        yield expect("oomScoreAdj", "set", str(f.process["oomScoreAdj"]), got)
    else:
        yield expect("oomScoreAdj", "unchanged when unset", f.runner_oom_score_adj, got)


# --- namespaces --------------------------------------------------------------------------


def check_namespaces(f: Facts) -> Iterator[Check]:
    configured = f.namespaces()
    for kind, proc_name in NS_FILES.items():
        got = f.report.get("ns", proc_name)
        if kind not in configured:
            yield expect(
                "namespaces", f"{kind}: the runtime's (not listed)", f.host_ns.get(proc_name), got
            )
        elif configured[kind]:
            yield expect(
                "namespaces", f"{kind}: joined by path", f.ns_paths.get(configured[kind]), got
            )
        else:
            yield check(
                "namespaces",
                f"{kind}: new",
                got and got != f.host_ns.get(proc_name),
                "same as the runtime's",
            )
    if "pid" in configured and not configured["pid"]:
        yield expect(
            "namespaces", "PID 1 of a new PID namespace", "1", f.report.get("pid1", "shell_pid")
        )
    if "cgroup" in configured and not configured["cgroup"]:
        paths = set(f.report.section("cgroup").values())
        yield expect(
            "namespaces", "cgroup namespace rooted at the container's cgroup", {"/"}, paths
        )
    yield from _time_offsets(f)


def _time_offsets(f: Facts) -> Iterator[Check]:
    boottime = ((f.linux.get("timeOffsets") or {}).get("boottime") or {}).get("secs")
    if not boottime or "time" not in f.namespaces():
        return
    inside = float(f.report.get("clock", "uptime") or 0)
    shift = inside - f.host_uptime
    yield check(
        "namespaces",
        "timeOffsets.boottime applied",
        abs(shift - boottime) < 60,
        f"uptime shifted by {shift:.0f} s, want {boottime}",
    )


# --- filesystem ----------------------------------------------------------------------------


def check_root(f: Facts) -> Iterator[Check]:
    """root.readonly: the root mount is read-only and writing to it fails with EROFS (a
    process without the rights to write there at all cannot tell, so only root probes)."""
    readonly = bool((f.config.get("root") or {}).get("readonly"))
    top = f.report.mount_at("/")
    yield check("root", "/ is a mount", top is not None, "no mount at /")
    if top:
        yield expect("root", "root.readonly", readonly, top.has("ro"))
    if (f.process.get("user") or {}).get("uid", 0) == 0:
        want = "erofs" if readonly else "allowed"
        yield expect("root", "writing to / (probe)", want, _probe_field(f, "/", "write"))


def _probe_field(f: Facts, path: str, key: str) -> str | None:
    probe = f.report.get("probe", path)
    if probe is None:
        return None
    if probe == "absent":
        return "absent"
    fields = dict(part.split("=", 1) for part in probe.split()[1:])
    return fields.get(key)


def check_mounts(f: Facts) -> Iterator[Check]:
    """Every configured mount is at its destination with its type, flags, data options
    and propagation (the last entry for a destination is the one on top)."""
    covered = set(f.linux.get("maskedPaths") or []) | set(f.linux.get("readonlyPaths") or [])
    entries = {_dest(m): m for m in f.config.get("mounts") or []}
    for dest, m in entries.items():
        if dest in covered:
            continue
        top = f.report.mount_at(dest)
        if top is None:
            yield check("mounts", f"{dest} mounted", False, "not a mount point")
            continue
        yield from _check_one_mount(f, dest, m, top)
    yield from _check_recursion(f)


def _dest(m: dict) -> str:
    return posixpath.normpath("/" + m["destination"].lstrip("/"))


def _is_bind(m: dict) -> bool:
    """config.md: a mount is a bind mount if its options have bind or rbind."""
    return bool({"bind", "rbind"} & set(m.get("options") or [])) or m.get("type") == "bind"


def _is_recursive_bind(m: dict) -> bool:
    """mount(8): rbind is bind with MS_REC, the source's submounts along (bind and rbind
    only add flags, whatever their order: rbind anywhere makes it recursive)."""
    return "rbind" in (m.get("options") or [])


def _check_one_mount(f: Facts, dest: str, m: dict, top: Mount) -> Iterator[Check]:
    options = m.get("options") or []
    is_bind = _is_bind(m)
    if m.get("type") == "cgroup":
        yield from _check_cgroup_mount(f, dest, options)
        return
    if not is_bind:
        yield expect("mounts", f"{dest} type", m.get("type"), top.fstype)
    yield from _check_flags(dest, options, top)
    yield from _check_data(dest, options, top, _host_id_of(f))
    yield from _check_propagation_option(dest, options, top)
    if is_bind:
        source = m.get("source") or ""
        if not source.startswith("/"):
            source = os.path.join(f.bundle, source)
        want = hostmounts.host_root_of(os.path.realpath(source))
        yield expect("mounts", f"{dest} shows the bind source", want, top.root)


#: option -> (mountinfo flag, present?) for the flags mountinfo shows per mount.
_FLAG_WORDS = {
    "ro": ("ro", True),
    "rw": ("ro", False),
    "nosuid": ("nosuid", True),
    "suid": ("nosuid", False),
    "nodev": ("nodev", True),
    "dev": ("nodev", False),
    "noexec": ("noexec", True),
    "exec": ("noexec", False),
    "nodiratime": ("nodiratime", True),
    "noatime": ("noatime", True),
    "relatime": ("relatime", True),
    "rro": ("ro", True),
    "rrw": ("ro", False),
    "rnosuid": ("nosuid", True),
    "rsuid": ("nosuid", False),
    "rnodev": ("nodev", True),
    "rdev": ("nodev", False),
    "rnoexec": ("noexec", True),
    "rexec": ("noexec", False),
    "rnoatime": ("noatime", True),
    "rrelatime": ("relatime", True),
}


def _check_flags(dest: str, options: list[str], top: Mount) -> Iterator[Check]:
    want: dict[str, bool] = {"ro": False}
    for opt in options:
        if opt in _FLAG_WORDS:
            flag, present = _FLAG_WORDS[opt]
            want[flag] = present
        elif opt == "strictatime":
            want["relatime"] = want["noatime"] = False
    for flag, present in want.items():
        yield expect(
            "mounts", f"{dest} {flag if present else 'no ' + flag}", present, top.has(flag)
        )


_DATA_KEYS = ("mode", "ptmxmode", "uid", "gid", "size")


def _check_data(
    dest: str, options: list[str], top: Mount, host_id: dict[str, Callable[[int], int | None]]
) -> Iterator[Check]:
    """Data options as mountinfo shows them. uid=/gid= are ids of the container; the
    kernel prints them as the initial user namespace sees them, so in a user namespace of
    the container's they show mapped to the host."""
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key not in _DATA_KEYS:
            continue
        got = top.data(key)
        if key == "mode" and got is None and top.fstype == "tmpfs":
            got = "1777"  # tmpfs shows its mode only when it is not the default
        if key in ("mode", "ptmxmode"):
            ok = got is not None and int(got, 8) == int(value, 8)
        elif key == "size":
            ok = got is not None and size_bytes(got) == size_bytes(value)
        elif key in host_id and value.isdigit():
            ok = got == str(host_id[key](int(value)))
        else:
            ok = got == value
        yield check("mounts", f"{dest} {opt}", ok, f"shows {key}={got}")


def _host_id_of(f: Facts) -> dict[str, Callable[[int], int | None]]:
    """uid/gid -> the host id it maps to (identity without a user namespace)."""
    if not _userns(f):
        return {}
    uids, gids = f.linux.get("uidMappings") or [], f.linux.get("gidMappings") or []
    return {"uid": lambda i: map_id(uids, i), "gid": lambda i: map_id(gids, i)}


def size_bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if size and size[-1].lower() in units:
        return int(size[:-1]) * units[size[-1].lower()]
    return int(size)


def _check_propagation_option(dest: str, options: list[str], top: Mount) -> Iterator[Check]:
    words = [
        o.removeprefix("r")
        for o in options
        if o.removeprefix("r") in ("shared", "slave", "private", "unbindable")
    ]
    if words:
        yield from _propagation("mounts", f"{dest} propagation", words[-1], top)


def _propagation(group: str, name: str, mode: str, top: Mount) -> Iterator[Check]:
    """shared: a peer group; slave: receives but never sends (a slave of a private
    mount is private, by the kernel's rules); private; unbindable."""
    prop = set(top.propagation)
    if mode == "shared":
        ok = "shared" in prop
    elif mode == "slave":
        ok = "shared" not in prop and prop <= {"slave", "private"}
    else:
        ok = prop == {mode}
    yield check(group, name, ok, f"want {mode}, shows {','.join(sorted(prop))}")


def _check_cgroup_mount(f: Facts, dest: str, options: list[str]) -> Iterator[Check]:
    """On cgroup v1 (this host) a `cgroup` mount is a tmpfs holding one mount per
    hierarchy; on v2 it is cgroup2 itself. Its flags must hold for all of it."""
    readonly = "ro" in options
    mounts = f.report.mounts_under(dest)
    types = {m.fstype for m in mounts}
    yield check(
        "mounts",
        f"{dest} is a cgroup filesystem",
        "cgroup" in types or "cgroup2" in types,
        f"types {sorted(types)}",
    )
    writable = [m.point for m in mounts if m.has("ro") != readonly]
    word = "read-only" if readonly else "writable"
    yield check(
        "mounts", f"{dest} and every hierarchy {word}", not writable, f"not {word}: {writable}"
    )
    for flag in ("nosuid", "nodev", "noexec"):
        if flag in options:
            without = [m.point for m in mounts if not m.has(flag)]
            yield check(
                "mounts",
                f"{dest} and every hierarchy {flag}",
                not without,
                f"without {flag}: {without}",
            )


def _check_recursion(f: Facts) -> Iterator[Check]:
    """rbind brings the source's submounts along, bind does not; recursive attributes
    (rro, rnosuid, ...) hold on every one of them."""
    mounts = f.config.get("mounts") or []
    for index, m in enumerate(mounts):
        if not _is_bind(m):
            continue
        dest = _dest(m)
        for sub in _submounts_of_source(f, m.get("source") or "", mounts[:index]):
            seen = f.report.mount_at(dest + sub)
            if _is_recursive_bind(m):
                yield check(
                    "mounts",
                    f"rbind {dest} carries {dest}{sub}",
                    seen is not None,
                    "submount missing",
                )
            else:
                yield check(
                    "mounts",
                    f"bind {dest} leaves {dest}{sub} out",
                    seen is None,
                    "submount present",
                )
        for opt in m.get("options") or []:
            if opt in ("rro", "rnosuid", "rnodev", "rnoexec"):
                flag = opt[1:]
                bad = [x.point for x in f.report.mounts_under(dest) if not x.has(flag)]
                yield check(
                    "mounts", f"{opt} on everything under {dest}", not bad, f"without {flag}: {bad}"
                )


def _submounts_of_source(f: Facts, source: str, earlier: list[dict]) -> list[str]:
    """Mounts made earlier in this config below a bind source inside the rootfs."""
    rootfs = f.rootfs.rstrip("/") + "/"
    if not source.startswith(rootfs):
        return []
    inside = "/" + source[len(rootfs) :].strip("/")
    return [_dest(m)[len(inside) :] for m in earlier if _dest(m).startswith(inside + "/")]


def check_devices(f: Facts) -> Iterator[Check]:
    devices = f.report.section("dev")
    bind_dev = any(_dest(m) == "/dev" and _is_bind(m) for m in f.config.get("mounts") or [])
    if not bind_dev:
        for path, (major, minor) in DEFAULT_DEVICES.items():
            yield expect(
                "devices",
                f"default {path}",
                f"c {major:x}:{minor:x}",
                " ".join((devices.get(path) or "").split("|")[0].split()[:2]),
            )
        ptmx = devices.get("/dev/ptmx") or ""
        bound = f.report.mount_at("/dev/ptmx")
        yield check(
            "devices",
            "/dev/ptmx is a symlink or bind of the container's /dev/pts/ptmx",
            ptmx in ("l pts/ptmx", "l /dev/pts/ptmx") or (bound and bound.fstype == "devpts"),
            f"shows {ptmx!r}",
        )
        for link, target in DEV_LINKS.items():
            yield expect("devices", f"{link} symlink", f"l {target}", devices.get(link))
    for dev in f.linux.get("devices") or []:
        seen = devices.get(dev["path"]) or _node(f, dev["path"])
        yield from _check_device(dev, seen)


def _node(f: Facts, path: str) -> str | None:
    """A device outside /dev, in the inspector's `node` form, as `dev` shows it."""
    node = f.report.get("node", path)
    if not node or node == "absent":
        return None
    kind, rest = node.split("|", 1)
    letter = {"character special file": "c", "block special file": "b", "fifo": "p"}
    return f"{letter.get(kind, '?')} {rest}" if kind != "fifo" else f"p {rest.split('|', 1)[1]}"


def _check_device(dev: dict, seen: str | None) -> Iterator[Check]:
    path = dev["path"]
    if not seen:
        yield check("devices", f"{path} present", False, "missing")
        return
    kind, _, rest = seen.partition(" ")
    fields = rest.split("|")
    want_kind = {"u": "c"}.get(dev["type"], dev["type"])
    yield expect("devices", f"{path} type", want_kind, kind)
    if dev["type"] != "p":
        yield expect(
            "devices", f"{path} major:minor", f"{dev['major']:x}:{dev['minor']:x}", fields[0]
        )
        fields = fields[1:]
    if "fileMode" in dev:
        yield expect("devices", f"{path} fileMode", f"{dev['fileMode'] & 0o7777:o}", fields[0])
    owner = f"{dev.get('uid', 0)}:{dev.get('gid', 0)}"
    if "uid" in dev or "gid" in dev:
        yield expect("devices", f"{path} uid:gid", owner, fields[1] if len(fields) > 1 else "")


def check_masked(f: Facts) -> Iterator[Check]:
    """config-linux.md: masked paths "cannot be read". A path the rootfs has must still
    exist (masked, not removed); paths the container lacks are nothing to mask."""
    for path in f.linux.get("maskedPaths") or []:
        read = _probe_field(f, path, "read")
        if read == "absent":
            in_rootfs = os.path.lexists(os.path.join(f.rootfs, path.lstrip("/")))
            yield check("maskedPaths", f"{path} still exists", not in_rootfs, "removed")
            continue
        yield expect("maskedPaths", f"{path} reads empty", "empty", read)


def check_readonly(f: Facts) -> Iterator[Check]:
    """A read-only path is a read-only mount (and root's write probe gets EROFS)."""
    for path in f.linux.get("readonlyPaths") or []:
        write = _probe_field(f, path, "write")
        if write == "absent":
            continue
        top = f.report.mount_at(path)
        yield check(
            "readonlyPaths",
            f"{path} is a read-only mount",
            top and top.has("ro"),
            "not a read-only mount",
        )
        if write != "denied":  # EACCES comes before EROFS: a non-root probe cannot tell
            yield expect("readonlyPaths", f"{path} refuses writes (EROFS)", "erofs", write)


def check_sysctl(f: Facts) -> Iterator[Check]:
    for key, value in (f.linux.get("sysctl") or {}).items():
        yield expect("sysctl", key, " ".join(value.split()), f.report.get("sysctl", key))


def check_propagation(f: Facts) -> Iterator[Check]:
    mode = f.linux.get("rootfsPropagation")
    top = f.report.mount_at("/")
    if mode and top:
        yield from _propagation("rootfsPropagation", "propagation of /", mode, top)


def check_cgroups(f: Facts) -> Iterator[Check]:
    """config-linux.md: an absolute cgroupsPath is relative to each hierarchy's root; a
    relative one MAY sit under a runtime-chosen place (it must still be that path)."""
    path = f.linux.get("cgroupsPath")
    ns = f.namespaces()
    if not path or ("cgroup" in ns and not ns["cgroup"]):
        return
    seen = f.report.section("cgroup")
    want = posixpath.normpath(path if path.startswith("/") else "/" + path)
    if path.startswith("/"):
        bad = {k: v for k, v in seen.items() if v != want}
    else:
        bad = {k: v for k, v in seen.items() if not (v + "/").endswith(want + "/")}
    yield check("cgroupsPath", f"every hierarchy at {path}", seen and not bad, f"elsewhere: {bad}")


def check_resources(f: Facts) -> Iterator[Check]:
    """config-linux.md "Control groups": each `linux.resources` field shows in the
    container's cgroup file it names (on a v2 controller, runc's conversion of it)."""
    if not cgroupfiles.resources_in_play(f.linux):
        return
    seen = f.report.section("cgfile")
    expected = cgroupfiles.expected_files(f.linux["resources"])
    if (f.linux["resources"].get("blockIO") or {}).get("weight") and not any(
        e.field == "blockIO.weight" for e in expected
    ):
        yield check(
            "resources", "blockIO.weight applied", False, "the host has no weight file", NOTE
        )
    for e in expected:
        got = seen.get(e.file)
        yield check(
            "resources", f"{e.field}: {e.file}", cgroupfiles.matches(e, got),
            f"want {e.want!r}, got {got!r}",
        )  # fmt: skip


def check_device_cgroup(f: Facts) -> Iterator[Check]:
    """config-linux.md "Allowed Device list": the rules apply in the listed order (the
    last one matching an access decides), and a denied access cannot be had: opening
    the node fails with EPERM; the default devices stay usable unless a rule names
    them. A leading "deny all" leaves no `a *:* rwm` in the v1 devices.list."""
    if not cgroupfiles.resources_in_play(f.linux):
        return
    rules = (f.linux.get("resources") or {}).get("devices") or []
    for path, node in cgroupfiles.device_probes(f.linux).items():
        seen = dict(part.split("=", 1) for part in (f.report.get("devaccess", path) or "").split())
        default = path in cgroupfiles.DEFAULT_DEVICES
        for access, key in (("r", "read"), ("w", "write")):
            allowed = cgroupfiles.device_allowed(rules, node, access, default)
            if allowed is None:
                continue
            got = seen.get(key)
            yield check(
                "devices cgroup", f"{path} {key} {'allowed' if allowed else 'denied'}",
                got is not None and (got != "EPERM") == allowed, f"open: {got}",
            )  # fmt: skip
    listing = next((v for k, v in f.report.section("cgfile").items()
                    if k.endswith("/devices.list")), None)  # fmt: skip
    if listing is not None and rules and rules[0] == cgroupfiles.BASE_DEVICE_RULES[0]:
        yield check(
            "devices cgroup", "deny all: devices.list has no a *:* rwm",
            "a *:* rwm" not in listing.split(";"), listing,
        )  # fmt: skip


# --- terminal, user namespaces, seccomp, network devices ------------------------------------

#: The major number of devpts's pseudoterminal slaves (/dev/pts/N), in stat's hex.
PTS_MAJOR = "88"


def check_terminal(f: Facts) -> Iterator[Check]:
    """config.md `terminal`: a pseudoterminal is attached to the process (stdio is its
    slave, and it is the controlling terminal); config-linux.md: /dev/console is set up by
    bind mounting that pty; `consoleSize` is its size. Without one, stdio is no terminal."""
    tty = f.report.section("tty")
    if not f.process.get("terminal"):
        yield expect("terminal", "stdin is not a terminal", "none", tty.get("stdin"))
        return
    console = tty.get("console") or ""
    stdio = {n: f.report.get("fd", n) for n in ("0", "1", "2")}
    yield check(
        "terminal",
        "stdin, stdout and stderr are one pty slave",
        console.startswith(PTS_MAJOR + ":") and set(stdio.values()) == {f"chardev {console}"},
        f"stdio {stdio}, /dev/console {console!r}",
    )
    yield check(
        "terminal",
        "/dev/console is the pty",
        f.report.mount_at("/dev/console") is not None and console.startswith(PTS_MAJOR + ":"),
        f"/dev/console {console!r}",
    )
    yield expect(
        "terminal", "the pty is the controlling terminal", _tty_nr(console), tty.get("ctty")
    )
    size = f.process.get("consoleSize")
    if size:
        want = f"{size.get('height', 0)} {size.get('width', 0)}"
        yield expect("terminal", "consoleSize", want, tty.get("size"))


def _tty_nr(hex_dev: str) -> str:
    """stat's `%t:%T` (hex) as /proc/PID/stat's tty_nr encodes it."""
    try:
        major, minor = (int(x, 16) for x in hex_dev.split(":"))
    except ValueError:
        return "?"
    return str((minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12))


def map_id(mappings: list[dict], container_id: int) -> int | None:
    """A container id through uid/gidMappings to the host (None: not mapped)."""
    for m in mappings:
        if m["containerID"] <= container_id < m["containerID"] + m["size"]:
            return m["hostID"] + container_id - m["containerID"]
    return None


def unmap_id(mappings: list[dict], host_id: int) -> int | None:
    """A host id back to the container's (None: not mapped)."""
    for m in mappings:
        if m["hostID"] <= host_id < m["hostID"] + m["size"]:
            return m["containerID"] + host_id - m["hostID"]
    return None


def _userns(f: Facts) -> bool:
    ns = f.namespaces()
    return "user" in ns and not ns["user"]


def check_user_namespace(f: Facts) -> Iterator[Check]:
    """config-linux.md "User namespace mappings": the container's uid_map and gid_map are
    the configured ones, so the process's ids are the mapped ones on the host."""
    if not _userns(f):
        return
    user = f.process.get("user") or {}
    for kind, field_name, want_id in (
        ("uid", "uidMappings", user.get("uid", 0)),
        ("gid", "gidMappings", user.get("gid", 0)),
    ):
        mappings = f.linux.get(field_name) or []
        want = {str(m["containerID"]): f"{m['hostID']} {m['size']}" for m in mappings}
        yield expect(
            "userNamespace", f"{kind}_map = {field_name}", want, f.report.section(f"{kind}_map")
        )
        host = map_id(mappings, want_id)
        status = f.host_ids.get(kind.capitalize())
        yield expect(
            "userNamespace",
            f"host {kind} of the process (/proc/PID/status, real/effective/saved/fs)",
            " ".join([str(host)] * 4),
            status,
        )


def check_idmapped_mounts(f: Facts) -> Iterator[Check]:
    """config.md `idmap`/`ridmap` with the mount's uidMappings/gidMappings: files show
    through the mount's mapping (on-disk id as containerID -> hostID), then as the
    container's user namespace sees that id; without a mapping, the overflow id 65534."""
    for m in f.config.get("mounts") or []:
        options = m.get("options") or []
        if not ({"idmap", "ridmap"} & set(options)) or not m.get("uidMappings"):
            continue
        dest, source = _dest(m), m.get("source") or ""
        for node, seen in f.report.section("node").items():
            if not node.startswith(dest + "/"):
                continue
            st = os.stat(os.path.join(source, node[len(dest) + 1 :]))
            want = f"{_shown(f, m, 'uid', st.st_uid)}:{_shown(f, m, 'gid', st.st_gid)}"
            owner = seen.rsplit("|", 1)[-1] if seen != "absent" else "absent"
            yield expect("idmap", f"{node} owner through the id-mapped mount", want, owner)


def _shown(f: Facts, mount: dict, kind: str, on_disk: int) -> int:
    through = map_id(mount.get(f"{kind}Mappings") or [], on_disk)
    if through is None:
        return 65534
    if not _userns(f):
        return through
    shown = unmap_id(f.linux.get(f"{kind}Mappings") or [], through)
    return 65534 if shown is None else shown


#: The system calls the inspector tries (section_syscalls).
PROBED_SYSCALLS = ("getcwd", "chmod")


def check_seccomp(f: Facts) -> Iterator[Check]:
    """config-linux.md `seccomp`: a filter is installed (Seccomp: 2); a syscall a rule
    names with SCMP_ACT_ERRNO fails with its errnoRet (default EPERM)."""
    seccomp = f.linux.get("seccomp")
    if not seccomp:
        return
    yield expect("seccomp", "a filter is installed", "2", f.report.get("status", "Seccomp"))
    for name in PROBED_SYSCALLS:
        action, errno_ret = _seccomp_action(seccomp, name)
        if action == "SCMP_ACT_ERRNO":
            want = errno.errorcode.get(errno_ret, str(errno_ret))
            yield expect(
                "seccomp", f"{name} fails with {want}", want, f.report.get("syscall", name)
            )
        elif action in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") and _is_root(f):
            yield expect("seccomp", f"{name} allowed", "ok", f.report.get("syscall", name))
        elif action == "SCMP_ACT_NOTIFY" and f.agent is not None:
            yield _notified_outcome(f, name)
    if f.agent is not None and _notifies(seccomp):
        yield from _check_agent(f, seccomp)


def _notifies(seccomp: dict) -> bool:
    actions = [seccomp.get("defaultAction")] + [r.get("action") for r in seccomp["syscalls"]]
    return "SCMP_ACT_NOTIFY" in actions


def _notified_outcome(f: Facts, name: str) -> Check:
    """A notified call ends as the agent answers it: its errno, or (continued) run by the
    kernel, which root's probes pass."""
    assert f.agent is not None
    kind, value = f.agent["answers"].get(name, ("continue", 0))
    want = errno.errorcode.get(value, str(value)) if kind == "errno" else "ok"
    return expect(
        "seccomp", f"{name} notified: the agent's answer ({want})", want,
        f.report.get("syscall", name),
    )  # fmt: skip


def _check_agent(f: Facts, seccomp: dict) -> Iterator[Check]:
    """config-linux.md: the runtime MUST send the agent the container process state with
    the listener fd ("fds": ["seccompFd"]), `metadata` from listenerMetadata, `state` the
    container's; the process's notified calls reach the agent."""
    assert f.agent is not None
    received = f.agent["received"]
    yield expect("seccomp", "the agent got one container process state", 1, len(received))
    if received:
        msg = received[0]
        state = msg.get("state") or {}
        yield expect("seccomp", "fds", ["seccompFd"], msg.get("fds"))
        yield expect("seccomp", "metadata", seccomp.get("listenerMetadata"), msg.get("metadata"))
        yield expect("seccomp", "state.bundle", f.bundle, state.get("bundle"))
        yield expect("seccomp", "pid is the state's pid", state.get("pid"), msg.get("pid"))
    yield check(
        "seccomp",
        "the agent was asked about chmod",
        bool({"chmod", "fchmodat"} & set(f.agent["calls"])),
        f"notified: {f.agent['calls']}",
    )
    yield expect("seccomp", "the agent saw no protocol error", [], f.agent["errors"])


def _seccomp_action(seccomp: dict, name: str) -> tuple[str, int]:
    """The action (and errno) for a call of `name` with any arguments: the first rule
    naming it without argument conditions, else the default."""
    for rule in seccomp.get("syscalls") or []:
        if name in rule.get("names", []) and not rule.get("args"):
            return rule["action"], rule.get("errnoRet", errno.EPERM)
    return seccomp["defaultAction"], seccomp.get("defaultErrnoRet", errno.EPERM)


def _is_root(f: Facts) -> bool:
    return (f.process.get("user") or {}).get("uid", 0) == 0


def check_net_devices(f: Facts) -> Iterator[Check]:
    """config-linux.md "Network Devices": each device MUST be made available in the
    container under `name` (else its host name), keep its permanent global addresses,
    and be set up."""
    for host_name, entry in (f.linux.get("netDevices") or {}).items():
        name = (entry or {}).get("name") or host_name
        seen = f.report.get("netdev", name) or "absent"
        yield check("netDevices", f"{name} in the container", seen != "absent", "absent")
        if seen == "absent":
            continue
        flags, _, addresses = seen.partition(" ")
        yield check("netDevices", f"{name} is up", "UP" in flags.split(","), f"flags {flags}")
        want = set(f.host_links.get(host_name) or [])
        got = set(addresses.split(",")) - {""}
        yield check(
            "netDevices", f"{name} kept its addresses", want <= got, f"want {want}, got {got}"
        )


# --- personality, scheduler, I/O priority, exec CPU affinity ---------------------------------

#: config-linux.md `personality.domain` -> PER_* of <linux/personality.h>.
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
#: What `uname -m` says under PER_LINUX32, by the host's machine (the 32-bit one).
MACHINE_32 = {"x86_64": "i686", "aarch64": "armv8l", "ppc64le": "ppc", "s390x": "s390"}
#: config.md `scheduler.policy` -> SCHED_* of <linux/sched.h>.
SCHED_POLICIES = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}


def check_personality(f: Facts) -> Iterator[Check]:
    """config-linux.md `personality`: the execution domain of the container's process
    (/proc/PID/personality); under LINUX32, uname(2) reports the 32-bit machine."""
    domain = (f.linux.get("personality") or {}).get("domain")
    if domain not in PERSONALITY_DOMAINS:
        return
    want = f"{PERSONALITY_DOMAINS[domain]:08x}"
    yield expect("personality", f"domain {domain}", want, f.report.get("persona", "domain"))
    machine = os.uname().machine
    if domain == "LINUX32":
        machine = MACHINE_32.get(machine, machine)
    yield expect("personality", "uname -m", machine, f.report.get("persona", "machine"))


def check_scheduler(f: Facts) -> Iterator[Check]:
    """config.md `scheduler`: the process's policy, its nice value and its static
    priority (nice and priority "must" be 0 when not set); /proc/PID/stat fields 41, 19
    and 40."""
    sched = f.process.get("scheduler")
    if not sched or sched.get("policy") not in SCHED_POLICIES:
        return
    seen = f.report.section("sched")
    policy = sched["policy"]
    yield expect("scheduler", f"policy {policy}", str(SCHED_POLICIES[policy]), seen.get("policy"))
    yield expect("scheduler", "nice", str(sched.get("nice", 0)), seen.get("nice"))
    yield expect("scheduler", "priority", str(sched.get("priority", 0)), seen.get("rt_priority"))


def check_io_priority(f: Facts) -> Iterator[Check]:
    """config.md `ioPriority`: the process's I/O class and level, as busybox `ionice -p`
    prints ioprio_get(2) (the idle class has no level to show)."""
    io = f.process.get("ioPriority")
    if not io:
        return
    cls, level = io.get("class"), io.get("priority", 0)
    want = {
        "IOPRIO_CLASS_RT": f"realtime: prio {level}",
        "IOPRIO_CLASS_BE": f"best-effort: prio {level}",
        "IOPRIO_CLASS_IDLE": "idle",
    }.get(cls)
    yield expect("ioPriority", f"{cls} {level}", want, f.report.scalars.get("ioprio"))


def check_exec_cpu_affinity(f: Facts) -> Iterator[Check]:
    """config.md `execCPUAffinity`: "not applicable to the container's init process": the
    init runs on the CPUs the runtime ran on."""
    if not f.process.get("execCPUAffinity"):
        return
    yield expect(
        "execCPUAffinity",
        "the init's CPUs are the runtime's",
        f.runner_cpus,
        f.report.get("status", "Cpus_allowed_list"),
    )
