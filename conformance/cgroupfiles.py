"""Where `linux.resources` shows, and what it must show: the cgroup files of a container.

config-linux.md's "Control groups" sections name each field after the cgroup v1 file it
sets; on a v2 controller runc (and so every engine's expectations) converts it to the v2
file (shares -> cpu.weight by runc's formula, memory+swap -> memory.swap.max, quota and
period -> cpu.max). `expected_files` computes, from the config alone and this host's
layout, every file and the value it must hold. The container reads its files under its
own /sys/fs/cgroup (the config's cgroup mount shows its cgroups there); a file of a
hybrid host's v2 hierarchy is not mounted inside, so the runner reads it from the host
while the container is created (`Where.HOST`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

CGROUP_ROOT = "/sys/fs/cgroup"
INSIDE, HOST = "inside", "host"
#: How a value is compared: equal, equal as CPU/node lists, one of its lines (the
#: inspector joins a file's sorted lines with ';').
EQUAL, CPU_LIST, LINE = "equal", "cpulist", "line"


@dataclass(frozen=True)
class Expected:
    field: str  # the config field, e.g. memory.limit
    file: str  # relative to /sys/fs/cgroup (on the host: to its mount of the hierarchy)
    want: str
    how: str = EQUAL
    where: str = INSIDE


@dataclass(frozen=True)
class Layout:
    """Which controller this host serves where: v1 directory names, or the v2 hierarchy."""

    v1: dict[str, str]  # controller -> its directory under /sys/fs/cgroup
    v2: str | None  # the v2 hierarchy's directory under /sys/fs/cgroup ("" on a v2 host)
    v2_controllers: frozenset[str]

    def place(self, controller: str) -> tuple[str, str, str] | None:
        """(version, directory, where) of a controller; None when the host lacks it."""
        if controller in self.v1:
            return "v1", self.v1[controller], INSIDE
        if self.v2 is not None and controller in self.v2_controllers:
            return "v2", self.v2, INSIDE if self.v2 == "" else HOST
        return None

    def has_file(self, controller: str, name: str) -> bool:
        """Whether the host's root cgroup of that controller has the file (a v1
        interface file the kernel or the I/O scheduler may lack)."""
        placed = self.place(controller)
        return bool(placed) and os.path.exists(os.path.join(CGROUP_ROOT, placed[1], name))


@cache
def host_layout() -> Layout:
    v1: dict[str, str] = {}
    v2, v2_controllers = None, frozenset()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point, fstype, superopts = fields[4], fields[sep + 1], fields[sep + 3]
            if not point.startswith(CGROUP_ROOT):
                continue
            rel = "" if point == CGROUP_ROOT else os.path.relpath(point, CGROUP_ROOT)
            if fstype == "cgroup2":
                v2 = rel
                with open(os.path.join(point, "cgroup.controllers")) as c:
                    v2_controllers = frozenset(c.read().split())
            elif fstype == "cgroup":
                for opt in superopts.split(","):
                    if opt not in ("rw", "ro"):
                        v1.setdefault(opt, rel)
    return Layout(v1, v2, v2_controllers)


def expected_files(resources: dict, layout: Layout | None = None) -> list[Expected]:
    layout = layout or host_layout()
    out: list[Expected] = []
    for part in (_memory, _cpu, _pids, _block_io, _hugetlb, _network):
        out += part(resources, layout)
    return out


def _at(layout: Layout, controller: str, field: str, v1: str | None, v2: str | None,
        want_v1: str, want_v2: str | None = None, how: str = EQUAL) -> list[Expected]:  # fmt: skip
    placed = layout.place(controller)
    if placed is None:
        return []
    version, directory, where = placed
    name, want = (v1, want_v1) if version == "v1" else (v2, want_v2 or want_v1)
    if name is None:
        return []
    return [Expected(field, os.path.join(directory, name), want, how, where)]


def _max(value: int) -> str:
    return "max" if value < 0 else str(value)


def _memory(resources: dict, layout: Layout) -> list[Expected]:
    mem = resources.get("memory") or {}
    out: list[Expected] = []
    limit = mem.get("limit")
    if limit is not None and limit > 0:
        out += _at(layout, "memory", "memory.limit", "memory.limit_in_bytes", "memory.max",
                   str(limit))  # fmt: skip
    if mem.get("reservation", 0) > 0:
        out += _at(layout, "memory", "memory.reservation", "memory.soft_limit_in_bytes",
                   "memory.low", str(mem["reservation"]))  # fmt: skip
    swap = mem.get("swap")
    if swap is not None and swap > 0 and layout.has_file("memory", "memory.memsw.limit_in_bytes"):
        out += _at(layout, "memory", "memory.swap", "memory.memsw.limit_in_bytes",
                   "memory.swap.max", str(swap), str(swap - (limit or 0)))  # fmt: skip
    if mem.get("swappiness") is not None:
        out += _at(layout, "memory", "memory.swappiness", "memory.swappiness", None,
                   str(mem["swappiness"]))  # fmt: skip
    if mem.get("disableOOMKiller"):
        out += _at(layout, "memory", "memory.disableOOMKiller", "memory.oom_control", None,
                   "oom_kill_disable 1", how=LINE)  # fmt: skip
    return out


def cpu_weight(shares: int) -> int:
    """runc's conversion of cpu.shares [2, 262144] to cgroup v2's cpu.weight [1, 10000]."""
    return 1 + ((shares - 2) * 9999) // 262142


def _cpu(resources: dict, layout: Layout) -> list[Expected]:
    cpu = resources.get("cpu") or {}
    out: list[Expected] = []
    if cpu.get("shares"):
        out += _at(layout, "cpu", "cpu.shares", "cpu.shares", "cpu.weight", str(cpu["shares"]),
                   str(cpu_weight(cpu["shares"])))  # fmt: skip
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota:
        out += _at(layout, "cpu", "cpu.quota", "cpu.cfs_quota_us", "cpu.max", str(quota),
                   f"{_max(quota)} {period or 100000}")  # fmt: skip
    if period:
        out += _at(layout, "cpu", "cpu.period", "cpu.cfs_period_us", None, str(period))
    for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        if cpu.get(key):
            out += _at(layout, "cpuset", f"cpu.{key}", name, name, cpu[key], how=CPU_LIST)
    return out


def _pids(resources: dict, layout: Layout) -> list[Expected]:
    limit = (resources.get("pids") or {}).get("limit")
    if limit is None:
        return []
    return _at(
        layout, "pids", "pids.limit", "pids.max", "pids.max", "max" if limit <= 0 else str(limit)
    )


def _block_io(resources: dict, layout: Layout) -> list[Expected]:
    """weight where the host has a file for it (v1: blkio.weight, or BFQ's); the
    throttle lists as `MAJOR:MINOR RATE` lines of their v1 files."""
    blkio = resources.get("blockIO") or {}
    out: list[Expected] = []
    if blkio.get("weight"):
        for v1, v2 in (("blkio.weight", "io.weight"), ("blkio.bfq.weight", "io.bfq.weight")):
            name = v1 if layout.place("blkio") else v2
            controller = "blkio" if layout.place("blkio") else "io"
            if layout.has_file(controller, name):
                want = str(blkio["weight"]) if name == v1 else f"default {blkio['weight']}"
                out += _at(layout, controller, "blockIO.weight", v1, v2, want, how=LINE)
                break
    throttles = {
        "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
        "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
        "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
        "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
    }
    for key, name in throttles.items():
        for entry in blkio.get(key) or []:
            want = f"{entry['major']}:{entry['minor']} {entry['rate']}"
            out += _at(layout, "blkio", f"blockIO.{key}", name, None, want, how=LINE)
    return out


def _hugetlb(resources: dict, layout: Layout) -> list[Expected]:
    out: list[Expected] = []
    for entry in resources.get("hugepageLimits") or []:
        size = entry["pageSize"]
        out += _at(layout, "hugetlb", f"hugepageLimits.{size}", f"hugetlb.{size}.limit_in_bytes",
                   f"hugetlb.{size}.max", str(entry["limit"]))  # fmt: skip
    return out


def _network(resources: dict, layout: Layout) -> list[Expected]:
    classid = (resources.get("network") or {}).get("classID")
    if classid is None:
        return []
    return _at(layout, "net_cls", "network.classID", "net_cls.classid", None, str(classid))


def matches(expected: Expected, seen: str | None) -> bool:
    if seen is None:
        return False
    if expected.how == LINE:
        return expected.want in seen.split(";")
    if expected.how == CPU_LIST:
        return cpu_set(expected.want) == cpu_set(seen)
    return expected.want == seen


def cpu_set(text: str) -> set[int] | None:
    """The kernel's CPU list format ("0-3,7") as a set; None when it is not one."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        return None
    return cpus


def host_value(pid: int, expected: Expected) -> str:
    """A file of the process's cgroup in the hierarchy the file lives in, read on the
    host (/proc/PID/cgroup's path under the hierarchy's mount), as the inspector
    prints it: sorted lines joined by ';', or absent / unreadable."""
    hierarchy, name = os.path.split(expected.file)
    v2 = hierarchy == host_layout().v2
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
        paths = [p for _, ctrl, p in entries if (ctrl == "") == v2 and (v2 or hierarchy in ctrl)]
        with open(os.path.join(CGROUP_ROOT, hierarchy, paths[0].lstrip("/"), name)) as f:
            return ";".join(sorted(x for x in f.read().splitlines() if x))
    except FileNotFoundError:
        return "absent"
    except (OSError, IndexError):
        return "unreadable"


# --- the device cgroup ---------------------------------------------------------------------

#: config-linux.md "Default Devices" (and /dev/tty): path -> (type, major, minor).
DEFAULT_DEVICES = {
    "/dev/null": ("c", 1, 3),
    "/dev/zero": ("c", 1, 5),
    "/dev/full": ("c", 1, 7),
    "/dev/random": ("c", 1, 8),
    "/dev/urandom": ("c", 1, 9),
}
#: runc's default spec: the one rule every base config has.
BASE_DEVICE_RULES = [{"allow": False, "access": "rwm"}]


def resources_in_play(linux: dict) -> bool:
    """Whether the config asks for more than the base's "deny every device"."""
    resources = dict(linux.get("resources") or {})
    rules = resources.pop("devices", BASE_DEVICE_RULES)
    return bool(resources) or rules != BASE_DEVICE_RULES


def device_probes(linux: dict) -> dict[str, tuple[str, int, int]]:
    """The device nodes a rule names by type, major and minor: the default devices and
    the ones `linux.devices` creates."""
    nodes = dict(DEFAULT_DEVICES)
    for dev in linux.get("devices") or []:
        if dev.get("type") in ("c", "b", "u"):
            kind = "c" if dev["type"] == "u" else dev["type"]
            nodes[dev["path"]] = (kind, dev.get("major", 0), dev.get("minor", 0))
    named = {_specific(r) for r in (linux.get("resources") or {}).get("devices") or []}
    return {path: node for path, node in nodes.items() if node in named}


def _specific(rule: dict) -> tuple[str, int, int] | None:
    kind, major, minor = rule.get("type") or "a", rule.get("major"), rule.get("minor")
    if kind == "a" or major in (None, -1) or minor in (None, -1):
        return None
    return kind, major, minor


def device_allowed(rules: list[dict], node: tuple[str, int, int], access: str,
                   default_device: bool) -> bool | None:  # fmt: skip
    """config-linux.md: the entries apply in the listed order, so the last one that
    matches decides. A default device MUST be supplied, so only a rule naming it (type,
    major and minor) takes it away; None: no rule decides."""
    kind, major, minor = node
    decided = None
    for rule in rules:
        rtype, rmajor, rminor = rule.get("type") or "a", rule.get("major"), rule.get("minor")
        if default_device and _specific(rule) is None:
            continue
        if rtype not in ("a", kind) or rmajor not in (None, -1, major):
            continue
        if rminor not in (None, -1, minor) or access not in (rule.get("access") or "rwm"):
            continue
        decided = bool(rule.get("allow"))
    if decided is None and default_device:
        return True
    return decided
