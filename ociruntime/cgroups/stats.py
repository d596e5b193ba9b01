"""A container's resource usage in the JSON shape of runc 1.1.5's `events` ("stats").

Each controller is read where the container's cgroup layout serves it (v1 files or v2
ones, so a hybrid host mixes both). Field names, nesting and which zero values are left
out follow runc's `types.Stats` with Go's `omitempty` rules, so a client that parses
runc's output parses this.
"""

from __future__ import annotations

import os

from ociruntime.cgroups.cgroupfs import Layout
from ociruntime.cpulist import parse_cpu_list
from ociruntime.fsutil import read_file as _read

MAX_UINT64 = (1 << 64) - 1


def _int(d: str | None, name: str) -> int:
    text = (_read(d, name) or "").strip()
    if text == "max":
        return MAX_UINT64
    try:
        return int(text)
    except ValueError:
        return 0


def keyed(text: str | None) -> dict[str, int]:
    """A flat-keyed file ("key value" lines) as a dict of the integer values."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _omit_zero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def collect(layout: Layout) -> dict:
    """The `data` of a stats event."""
    return {
        "cpu": _cpu(layout),
        "cpuset": _cpuset(layout),
        "memory": _memory(layout),
        "pids": _pids(layout),
        "blkio": _blkio(layout),
        "hugetlb": _hugetlb(layout),
        "intel_rdt": {},
        "network_interfaces": None,
    }


# --- cpu -------------------------------------------------------------------------------


def _cpu(layout: Layout) -> dict:
    usage: dict = {}
    throttling: dict = {}
    if layout.where("cpuacct") == "v1" or layout.where("cpu") == "v1":
        acct = layout.dir_of("cpuacct")
        if acct is not None:
            usage = _cpuacct_v1(acct)
        stat = keyed(_read(layout.dir_of("cpu"), "cpu.stat"))
        throttling = {"periods": stat.get("nr_periods", 0),
                      "throttledPeriods": stat.get("nr_throttled", 0),
                      "throttledTime": stat.get("throttled_time", 0)}  # fmt: skip
    elif layout.unified:  # v2: cpu.stat exists even without the cpu controller
        stat = keyed(_read(layout.unified, "cpu.stat"))
        usage = {"total": stat.get("usage_usec", 0) * 1000,
                 "kernel": stat.get("system_usec", 0) * 1000,
                 "user": stat.get("user_usec", 0) * 1000}  # fmt: skip
        throttling = {"periods": stat.get("nr_periods", 0),
                      "throttledPeriods": stat.get("nr_throttled", 0),
                      "throttledTime": stat.get("throttled_usec", 0) * 1000}  # fmt: skip
    shaped = _omit_zero({k: usage.get(k, 0) for k in ("total", "percpu", "percpu_kernel",
                                                        "percpu_user")})  # fmt: skip
    shaped["kernel"], shaped["user"] = usage.get("kernel", 0), usage.get("user", 0)
    return {"usage": shaped, "throttling": _omit_zero(throttling)}


def _cpuacct_v1(d: str) -> dict:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = keyed(_read(d, "cpuacct.stat"))
    percpu = [int(x) for x in (_read(d, "cpuacct.usage_percpu") or "").split()]
    kernel: list[int] = []
    user: list[int] = []
    for line in (_read(d, "cpuacct.usage_all") or "").splitlines()[1:]:  # "cpu user system"
        fields = line.split()
        if len(fields) == 3:
            user.append(int(fields[1]))
            kernel.append(int(fields[2]))
    return {
        "total": _int(d, "cpuacct.usage"),
        "percpu": percpu,
        "percpu_kernel": kernel,
        "percpu_user": user,
        "kernel": stat.get("system", 0) * 1_000_000_000 // ticks,
        "user": stat.get("user", 0) * 1_000_000_000 // ticks,
    }


# --- cpuset ----------------------------------------------------------------------------


def expand_list(text: str) -> list[int]:
    """A cpuset file's list ("0-2,5") as numbers; an empty file is no number."""
    return parse_cpu_list(text) if text.strip() else []


_CPUSET_FLAGS = (
    ("cpu_exclusive", "cpuset.cpu_exclusive"), ("mem_hardwall", "cpuset.mem_hardwall"),
    ("mem_exclusive", "cpuset.mem_exclusive"), ("memory_migrate", "cpuset.memory_migrate"),
    ("memory_spread_page", "cpuset.memory_spread_page"),
    ("memory_spread_slab", "cpuset.memory_spread_slab"),
    ("memory_pressure", "cpuset.memory_pressure"),
    ("sched_load_balance", "cpuset.sched_load_balance"),
    ("sched_relax_domain_level", "cpuset.sched_relax_domain_level"),
)  # fmt: skip


def _cpuset(layout: Layout) -> dict:
    """v1 only, as runc 1.1.5 (its v2 driver reports none: the zero values)."""
    d = layout.dir_of("cpuset") if layout.where("cpuset") == "v1" else None
    out: dict = {}
    cpus = expand_list(_read(d, "cpuset.cpus") or "") if d else []
    mems = expand_list(_read(d, "cpuset.mems") or "") if d else []
    if cpus:
        out["cpus"] = cpus
    out["cpu_exclusive"] = _int(d, "cpuset.cpu_exclusive") if d else 0
    if mems:
        out["mems"] = mems
    for key, name in _CPUSET_FLAGS[1:]:
        out[key] = _int(d, name) if d else 0
    return out


# --- memory ----------------------------------------------------------------------------


def _entry(limit: int, usage: int = 0, peak: int = 0, failcnt: int = 0) -> dict:
    entry: dict = {"limit": limit}
    if usage:
        entry["usage"] = usage
    if peak:
        entry["max"] = peak
    entry["failcnt"] = failcnt
    return entry


def _memory_v1_entry(d: str, prefix: str) -> dict:
    if _read(d, prefix + "usage_in_bytes") is None:
        return _entry(0)
    return _entry(
        _int(d, prefix + "limit_in_bytes"), _int(d, prefix + "usage_in_bytes"),
        _int(d, prefix + "max_usage_in_bytes"), _int(d, prefix + "failcnt"),
    )  # fmt: skip


def _memory(layout: Layout) -> dict:
    version, d = layout.where("memory"), layout.dir_of("memory")
    out: dict = {}
    if version == "v1" and d is not None:
        raw = keyed(_read(d, "memory.stat"))
        if raw.get("cache"):
            out["cache"] = raw["cache"]
        out["usage"] = _memory_v1_entry(d, "memory.")
        out["swap"] = _memory_v1_entry(d, "memory.memsw.")
        out["kernel"] = _memory_v1_entry(d, "memory.kmem.")
        out["kernelTCP"] = _memory_v1_entry(d, "memory.kmem.tcp.")
    elif version == "v2" and d is not None:
        raw = keyed(_read(d, "memory.stat"))
        if raw.get("file"):
            out["cache"] = raw["file"]
        usage, limit = _int(d, "memory.current"), _int(d, "memory.max")
        out["usage"] = _entry(limit, usage)
        # As runc: v1's swap figures include memory, so v2's are reported that way.
        swap_limit = _int(d, "memory.swap.max") if _read(d, "memory.swap.max") else 0
        if swap_limit != MAX_UINT64:
            swap_limit += limit
        out["swap"] = _entry(swap_limit, _int(d, "memory.swap.current") + usage)
        out["kernel"] = _entry(0)
        out["kernelTCP"] = _entry(0)
    else:
        raw = {}
        out = {k: _entry(0) for k in ("usage", "swap", "kernel", "kernelTCP")}
    if raw:
        out["raw"] = dict(sorted(raw.items()))  # Go writes map keys sorted
    return out


# --- pids, blkio, hugetlb ---------------------------------------------------------------


def _pids(layout: Layout) -> dict:
    d = layout.dir_of("pids")
    if d is None or _read(d, "pids.current") is None:
        d = layout.unified or next(iter(layout.paths.values()), None)
        procs = (_read(d, "cgroup.procs") or "").split() if d else []
        return _omit_zero({"current": len(procs)})
    limit = _int(d, "pids.max")
    return _omit_zero({"current": _int(d, "pids.current"),
                       "limit": 0 if limit == MAX_UINT64 else limit})  # fmt: skip


_BLKIO_KEYS = {
    "sectors": "sectorsRecursive", "io_service_time": "ioServiceTimeRecursive",
    "io_wait_time": "ioWaitTimeRecursive", "io_merged": "ioMergedRecursive",
    "io_queued": "ioQueueRecursive", "time": "ioTimeRecursive",
    "io_serviced": "ioServicedRecursive", "io_service_bytes": "ioServiceBytesRecursive",
}  # fmt: skip
_DEBUG = ("sectors", "io_service_time", "io_wait_time", "io_merged", "io_queued", "time",
          "io_serviced", "io_service_bytes")  # fmt: skip
#: runc's order of preference: BFQ with debug files, BFQ, CFQ, throttling (recursive,
#: then not): the first group whose first file has entries is the one reported.
_BLKIO_GROUPS = (
    [(f"blkio.bfq.{k}_recursive", k) for k in _DEBUG],
    [("blkio.bfq.io_serviced_recursive", "io_serviced"),
     ("blkio.bfq.io_service_bytes_recursive", "io_service_bytes")],
    [(f"blkio.{k}_recursive", k) for k in _DEBUG],
    [("blkio.throttle.io_serviced_recursive", "io_serviced"),
     ("blkio.throttle.io_service_bytes_recursive", "io_service_bytes")],
    [("blkio.throttle.io_serviced", "io_serviced"),
     ("blkio.throttle.io_service_bytes", "io_service_bytes")],
)  # fmt: skip


def _blkio_entries(text: str | None) -> list[dict]:
    entries = []
    for line in (text or "").splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) < 3:
            continue  # "Total N"
        entry: dict = {"major": int(fields[0]), "minor": int(fields[1])}
        if len(fields) == 4:
            entry["op"] = fields[2]
        entry["value"] = int(fields[-1])
        entries.append(_omit_zero(entry))
    return entries


def _blkio(layout: Layout) -> dict:
    if layout.where("blkio") == "v1":
        return _blkio_v1(layout.dir_of("blkio") or "")
    if layout.unified:
        return _blkio_v2(layout.unified)
    return {}


def _blkio_v1(d: str) -> dict:
    found: dict[str, list] = {}
    for group in _BLKIO_GROUPS:
        for i, (name, key) in enumerate(group):
            entries = _blkio_entries(_read(d, name))
            if not entries:
                if i == 0:
                    break  # this scheduler's files are not there: the next group
                return _blkio_ordered(found)
            found[key] = entries
        else:
            return _blkio_ordered(found)
    return _blkio_ordered(found)


def _blkio_ordered(found: dict[str, list]) -> dict:
    order = ("io_service_bytes", "io_serviced", "io_queued", "io_service_time", "io_wait_time",
             "io_merged", "time", "sectors")  # fmt: skip
    return {_BLKIO_KEYS[k]: found[k] for k in order if found.get(k)}


def _blkio_v2(d: str) -> dict:
    """io.stat mapped onto v1's tables, as runc: rbytes/wbytes -> service bytes,
    rios/wios -> serviced."""
    found: dict[str, list] = {}
    targets = {"rbytes": ("io_service_bytes", "Read"), "wbytes": ("io_service_bytes", "Write"),
               "rios": ("io_serviced", "Read"), "wios": ("io_serviced", "Write")}  # fmt: skip
    for line in (_read(d, "io.stat") or "").splitlines():
        device, *items = line.split()
        major, _, minor = device.partition(":")
        for item in items:
            name, _, value = item.partition("=")
            if name in targets and value.isdigit():
                key, op = targets[name]
                entry = {"major": int(major), "minor": int(minor), "op": op, "value": int(value)}
                found.setdefault(key, []).append(_omit_zero(entry))
    return _blkio_ordered(found)


def hugepage_sizes() -> list[str]:
    """The kernel's huge page sizes as cgroup file names spell them (2MB, 1GB)."""
    sizes = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    for name in names:  # hugepages-2048kB
        kb = int(name[len("hugepages-") : -len("kB")])
        value, unit = kb, "KB"
        for bigger in ("MB", "GB", "TB"):
            if value % 1024:
                break
            value, unit = value // 1024, bigger
        sizes.append(f"{value}{unit}")
    return sorted(sizes)


def _hugetlb(layout: Layout) -> dict:
    version, d = layout.where("hugetlb"), layout.dir_of("hugetlb")
    out: dict = {}
    if d is None:
        return out
    for size in hugepage_sizes():
        prefix = f"hugetlb.{size}."
        if version == "v1":
            if _read(d, prefix + "usage_in_bytes") is None:
                continue
            usage, peak = _int(d, prefix + "usage_in_bytes"), _int(d, prefix + "max_usage_in_bytes")
            failcnt = _int(d, prefix + "failcnt")
        else:
            if _read(d, prefix + "current") is None:
                continue  # the controller is not enabled for this cgroup
            usage, peak = _int(d, prefix + "current"), 0
            failcnt = keyed(_read(d, prefix + "events")).get("max", 0)
        out[size] = _omit_zero({"usage": usage, "max": peak})
        out[size]["failcnt"] = failcnt
    return out
