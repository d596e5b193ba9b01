"""`linux.resources` as cgroup file writes: pure translation, no file system access.

The spec's resources are cgroup v1 values (shares, blkio weight, memory+swap). On a v1
controller they are written as they are; on a v2 controller they are converted the way
runc converts them (libcontainer/cgroups utils, fs2): shares -> cpu.weight, blkio weight
-> io.bfq.weight or a converted io.weight, memory+swap -> memory.swap.max = swap - limit,
quota/period -> cpu.max. As in runc, 0 means "not set" for the numeric fields and -1
means "unlimited". Fields with no equivalent on the controller's version are not written
but reported as warnings (runc ignores them silently).

`plan` returns the writes in the order they must happen; the caller (`limits.py`)
performs them, retrying the few that the kernel accepts only in another order.
"""

from __future__ import annotations

from ociruntime.errors import RuntimeFailure, field_error, field_message, pointer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DEFER_ON_EINVAL = 1  # the kernel may refuse it before a later write in the same plan
READ_BACK = 2  # the kernel clamps silently: read the value back and compare
OPTIONAL = 4  # a missing file is no error (swap accounting off, with an "unlimited" value)
MEMORY_LIMIT = 8  # EBUSY means "below the current usage"
CPUSET = 16  # ERANGE/EINVAL mean "outside the parent's set"


class Setting:
    """One write: `value` into `file` of the container's `controller` directory, on
    behalf of `field` (its spec name under linux.resources) whose value was `shown`."""

    __slots__ = ("controller", "file", "value", "field", "shown", "flags", "fallback")

    def __init__(
        self,
        controller: str,
        file: str,
        value: str,
        field: str,
        shown: object,
        flags: int = 0,
        fallback: Setting | None = None,  # written instead when `file` does not exist
    ) -> None:
        self.controller, self.file, self.value = controller, file, value
        self.field, self.shown, self.flags, self.fallback = field, shown, flags, fallback

    def __repr__(self) -> str:
        return f"Setting({self.controller}/{self.file}={self.value!r})"

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.controller, self.file, self.value)


def field_pointer(field: str) -> str:
    """The JSON pointer of a field named as the plan names it, relative to
    linux.resources: "memory.swap" -> /linux/resources/memory/swap,
    "hugepageLimits[0]" -> /linux/resources/hugepageLimits/0. Under unified and rdma the
    rest is one key (a file name such as memory.max, a device name)."""
    head, _, rest = field.partition(".")
    if head in ("unified", "rdma") and rest:
        parts: list[str | int] = [head, rest]
    else:
        parts = []
        for name in field.split("."):
            name, _, index = name.partition("[")
            parts += [name, int(index[:-1])] if index else [name]
    return pointer("linux", "resources", *parts)


def error(field: str, value: object, reason: str) -> RuntimeFailure:
    """The one-line error every resource problem becomes, naming field and value."""
    return field_error(field_pointer(field), f"{show(value)}: {reason}")


def show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        from ociruntime import jsonlite

        return jsonlite.dumps(value, compact=True)
    return str(value)


# --- v1 -> v2 conversions (runc's formulas) -------------------------------------------


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] onto cpu.weight [1, 10000], linearly (0 stays unset)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] onto io.weight [1, 10000], linearly (0 stays unset)."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int, limit: int) -> int:
    """memory.swap.max from the spec's memory+swap: swap - limit; -1 stays unlimited, 0
    unset; unlimited memory with swap unset means unlimited swap too. ValueError when
    the pair makes no sense."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise ValueError("a swap limit needs a memory limit (memory.limit)")
    if limit < 0:
        raise ValueError(f"invalid memory limit {limit}")
    if swap < limit:
        raise ValueError(f"memory+swap must be at least the memory limit {limit}")
    return swap - limit


def v2_number(value: int) -> str:
    """A v2 .max/.low/.high value: -1 (or any negative) is "max"."""
    return "max" if value < 0 else str(value)


def cpu_max(quota: int, period: int) -> str:
    """cpu.max: "$QUOTA $PERIOD", quota "max" when unlimited; without a period the
    kernel keeps the current one."""
    text = str(quota) if quota > 0 else "max"
    return f"{text} {period}" if period else text


def swap_first(current_limit: int, limit: int, swap: int) -> bool:
    """v1 keeps memory.limit <= memory.memsw.limit at every moment: write memsw first
    when it grows past the current memory limit (or becomes unlimited), else last."""
    return swap == -1 or current_limit < swap


# --- the plan --------------------------------------------------------------------------


class _Plan:
    def __init__(self, where: Callable[[str], str | None], read: Callable[[str, str], str | None]):
        self.where, self.read = where, read
        self.settings: list[Setting] = []
        self.warnings: list[str] = []

    def add(self, *args: object, **kw: object) -> None:
        self.settings.append(Setting(*args, **kw))  # type: ignore[arg-type]

    def warn(self, field: str, value: object, why: str) -> None:
        self.warnings.append(field_message(field_pointer(field), f"{show(value)}: {why}; ignored"))

    def version(self, controller: str, field: str, value: object) -> str:
        """v1/v2 for a controller the config uses, or a clear error."""
        found = self.where(controller)
        if found is None:
            raise error(
                field, value, f"the {controller} cgroup controller is not available on this host"
            )
        return found


def plan(
    resources: dict,
    where: Callable[[str], str | None],
    read: Callable[[str, str], str | None],
    mode: str,
) -> tuple[list[Setting], list[str]]:
    """(writes in order, warnings) for `resources` on a host whose controllers are where
    `where` says; `read` gives current values (memory limit, BFQ support); `mode` is the
    host's (v1, v2 or hybrid), for `unified`."""
    p = _Plan(where, read)
    _pids(p, resources.get("pids") or {})
    _memory(p, resources.get("memory") or {})
    _cpu(p, resources.get("cpu") or {})
    _block_io(p, resources.get("blockIO") or {})
    _hugetlb(p, resources.get("hugepageLimits") or [])
    _network(p, resources.get("network") or {})
    _rdma(p, resources.get("rdma") or {})
    _unified(p, resources.get("unified") or {}, mode)
    return p.settings, p.warnings


def _pids(p: _Plan, pids: dict) -> None:
    limit = pids.get("limit") or 0
    if limit:
        p.version("pids", "pids.limit", limit)
        p.add("pids", "pids.max", v2_number(limit), "pids.limit", limit)


def _memory(p: _Plan, mem: dict) -> None:
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    reservation = mem.get("reservation") or 0
    swappiness = mem.get("swappiness")
    oom_off, hierarchy = bool(mem.get("disableOOMKiller")), mem.get("useHierarchy")
    kernel = mem.get("kernel") or mem.get("kernelTCP")
    if not (limit or swap or reservation or oom_off or kernel) and swappiness is hierarchy is None:
        return
    version = p.version("memory", "memory", mem)
    if kernel:
        key = "kernel" if mem.get("kernel") else "kernelTCP"
        p.warn(f"memory.{key}", mem[key], "kernel memory limits are obsolete (as in runc)")
    if swappiness is not None and swappiness > 100:
        raise error("memory.swappiness", swappiness, "valid range is 0-100")
    if swap > 0 and limit > 0 and swap < limit:
        raise error("memory.swap", swap, f"memory+swap must be at least memory.limit {limit}")
    if swap > 0 and limit in (0, -1):
        raise error("memory.swap", swap, "a swap limit needs a memory limit (memory.limit)")
    if mem.get("checkBeforeUpdate") and (limit > 0 or swap > 0):
        _check_usage(p, version, limit, swap)
    if version == "v1":
        _memory_v1(p, limit, swap, reservation, swappiness, oom_off, hierarchy)
    else:
        _memory_v2(p, limit, swap, reservation, swappiness, oom_off, hierarchy)


def _check_usage(p: _Plan, version: str, limit: int, swap: int) -> None:
    """checkBeforeUpdate: refuse a limit at or below what the container already uses."""
    text = p.read("memory", "memory.usage_in_bytes" if version == "v1" else "memory.current")
    if not text or not text.strip().isdigit():
        return  # best effort, as runc
    usage = int(text)
    for field, value in (("memory.swap", swap), ("memory.limit", limit)):
        if value > 0 and value <= usage:
            raise error(field, value, f"not above the current usage {usage} (checkBeforeUpdate)")


def _memory_v1(
    p: _Plan, limit: int, swap: int, reservation: int, swappiness: int | None,
    oom_off: bool, hierarchy: bool | None,
) -> None:  # fmt: skip
    if limit == -1 and swap == 0:
        swap = -1  # unlimited memory with swap unset: unlimited swap too (if accounted)
        memsw = Setting("memory", "memory.memsw.limit_in_bytes", "-1", "memory.swap", -1, OPTIONAL)
    else:
        memsw = Setting("memory", "memory.memsw.limit_in_bytes", str(swap), "memory.swap", swap)
    mem = Setting(
        "memory", "memory.limit_in_bytes", str(limit), "memory.limit", limit, MEMORY_LIMIT
    )
    if limit and swap:
        current = p.read("memory", "memory.limit_in_bytes")
        cur = int(current) if current and current.strip().isdigit() else 0
        p.settings += [memsw, mem] if swap_first(cur, limit, swap) else [mem, memsw]
    elif limit:
        p.settings.append(mem)
    elif swap:
        p.settings.append(memsw)
    if reservation:
        p.add("memory", "memory.soft_limit_in_bytes", str(reservation), "memory.reservation",
              reservation)  # fmt: skip
    if oom_off:
        p.add("memory", "memory.oom_control", "1", "memory.disableOOMKiller", True)
    if swappiness is not None:
        p.add("memory", "memory.swappiness", str(swappiness), "memory.swappiness", swappiness)
    if hierarchy is not None:
        p.add("memory", "memory.use_hierarchy", "1" if hierarchy else "0",
              "memory.useHierarchy", hierarchy)  # fmt: skip


def _memory_v2(
    p: _Plan, limit: int, swap: int, reservation: int, swappiness: int | None,
    oom_off: bool, hierarchy: bool | None,
) -> None:  # fmt: skip
    try:
        swap2 = swap_to_v2(swap, limit)
    except ValueError as e:
        raise error("memory.swap", swap, str(e)) from None
    if swap2:
        p.add("memory", "memory.swap.max", v2_number(swap2), "memory.swap", swap,
              OPTIONAL if swap2 < 0 else 0)  # fmt: skip
    elif swap > 0:
        p.add("memory", "memory.swap.max", "0", "memory.swap", swap)  # swap == limit: none
    if limit:
        p.add("memory", "memory.max", v2_number(limit), "memory.limit", limit, MEMORY_LIMIT)
    if reservation:
        p.add("memory", "memory.low", v2_number(reservation), "memory.reservation", reservation)
    if swappiness is not None:
        p.warn("memory.swappiness", swappiness, "cgroup v2 has no per-cgroup swappiness")
    if oom_off:
        p.warn("memory.disableOOMKiller", True, "cgroup v2 cannot disable the OOM killer")
    if hierarchy is False:
        raise error(
            "memory.useHierarchy", False, "cgroup v2 memory accounting is always hierarchical"
        )


def _cpu(p: _Plan, cpu: dict) -> None:
    shares, quota, period = cpu.get("shares") or 0, cpu.get("quota") or 0, cpu.get("period") or 0
    rt_runtime, rt_period = cpu.get("realtimeRuntime") or 0, cpu.get("realtimePeriod") or 0
    burst, idle = cpu.get("burst"), cpu.get("idle")
    if shares or quota or period or rt_runtime or rt_period or (burst, idle) != (None, None):
        if p.version("cpu", "cpu", cpu) == "v1":
            _cpu_v1(p, shares, quota, period, burst, idle, rt_runtime, rt_period)
        else:
            _cpu_v2(p, shares, quota, period, burst, idle, rt_runtime, rt_period)
    for key in ("cpus", "mems"):
        if cpu.get(key):
            p.version("cpuset", "cpu." + key, cpu[key])
            p.add("cpuset", "cpuset." + key, cpu[key], "cpu." + key, cpu[key], CPUSET)


def _cpu_v1(
    p: _Plan, shares: int, quota: int, period: int, burst: int | None, idle: int | None,
    rt_runtime: int, rt_period: int,
) -> None:  # fmt: skip
    if shares:
        p.add("cpu", "cpu.shares", str(shares), "cpu.shares", shares, READ_BACK)
    if period:  # may exceed the parent's quota until the new quota is in: retried after it
        p.add("cpu", "cpu.cfs_period_us", str(period), "cpu.period", period, DEFER_ON_EINVAL)
    if burst is not None:
        p.add("cpu", "cpu.cfs_burst_us", str(burst), "cpu.burst", burst, DEFER_ON_EINVAL)
    if quota:
        p.add("cpu", "cpu.cfs_quota_us", str(quota if quota > 0 else -1), "cpu.quota", quota)
    if idle is not None:
        p.add("cpu", "cpu.idle", str(idle), "cpu.idle", idle)
    if rt_period:
        p.add("cpu", "cpu.rt_period_us", str(rt_period), "cpu.realtimePeriod", rt_period)
    if rt_runtime:
        p.add("cpu", "cpu.rt_runtime_us", str(rt_runtime), "cpu.realtimeRuntime", rt_runtime)


def _cpu_v2(
    p: _Plan, shares: int, quota: int, period: int, burst: int | None, idle: int | None,
    rt_runtime: int, rt_period: int,
) -> None:  # fmt: skip
    if shares:
        weight = shares_to_weight(shares)
        if not 1 <= weight <= 10000:
            raise error("cpu.shares", shares, "valid range is 2-262144")
        p.add("cpu", "cpu.weight", str(weight), "cpu.shares", shares)
    if idle is not None:
        p.add("cpu", "cpu.idle", str(idle), "cpu.idle", idle)
    if quota or period:
        field, shown = ("cpu.quota", quota) if quota else ("cpu.period", period)
        p.add("cpu", "cpu.max", cpu_max(quota, period), field, shown)
    if burst is not None:
        p.add("cpu", "cpu.max.burst", str(burst), "cpu.burst", burst)
    for field, value in (("cpu.realtimeRuntime", rt_runtime), ("cpu.realtimePeriod", rt_period)):
        if value:
            p.warn(field, value, "cgroup v2 has no realtime group scheduling budget")


def _device(entry: dict) -> str:
    return f"{entry.get('major', 0)}:{entry.get('minor', 0)}"


_THROTTLES = (
    ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
    ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
    ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
    ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"),
)


def _block_io(p: _Plan, bio: dict) -> None:
    weight, leaf = bio.get("weight") or 0, bio.get("leafWeight") or 0
    devices = bio.get("weightDevice") or []
    if not (weight or leaf or devices or any(bio.get(k) for k, _, _ in _THROTTLES)):
        return
    if p.where("blkio") == "v1":
        _block_io_v1(p, weight, leaf, devices, bio)
    elif p.where("io") == "v2":
        _block_io_v2(p, weight, leaf, devices, bio)
    else:
        p.version("blkio", "blockIO", bio)  # raises: not available


def _block_io_v1(p: _Plan, weight: int, leaf: int, devices: list, bio: dict) -> None:
    def weight_setting(file: str, value: str, field: str, shown: object) -> Setting:
        # CFQ's files, or BFQ's when CFQ is gone (kernel 5.0+), as runc
        bfq = Setting("blkio", file.replace("blkio.", "blkio.bfq."), value, field, shown)
        return Setting("blkio", file, value, field, shown, fallback=bfq)

    if weight:
        p.settings.append(weight_setting("blkio.weight", str(weight), "blockIO.weight", weight))
    if leaf:
        p.add("blkio", "blkio.leaf_weight", str(leaf), "blockIO.leafWeight", leaf)
    for i, dev in enumerate(devices):
        field = f"blockIO.weightDevice[{i}]"
        if dev.get("weight"):
            value = f"{_device(dev)} {dev['weight']}"
            p.settings.append(weight_setting("blkio.weight_device", value, field, value))
        if dev.get("leafWeight"):
            value = f"{_device(dev)} {dev['leafWeight']}"
            p.add("blkio", "blkio.leaf_weight_device", value, field, value)
    for key, file, _ in _THROTTLES:
        for i, dev in enumerate(bio.get(key) or []):
            value = f"{_device(dev)} {dev.get('rate', 0)}"
            p.add("blkio", file, value, f"blockIO.{key}[{i}]", value)


def _block_io_v2(p: _Plan, weight: int, leaf: int, devices: list, bio: dict) -> None:
    bfq = p.read("io", "io.bfq.weight")
    if weight:
        if not 10 <= weight <= 1000:
            raise error("blockIO.weight", weight, "valid range is 10-1000")
        converted = Setting("io", "io.weight", str(blkio_weight_to_io_weight(weight)),
                            "blockIO.weight", weight)  # fmt: skip
        p.add("io", "io.bfq.weight", str(weight), "blockIO.weight", weight, fallback=converted)
    if leaf:
        p.warn("blockIO.leafWeight", leaf, "cgroup v2 has no leaf weight")
    # BFQ takes per-device weights since kernel 5.4: its file then holds "default N".
    per_device_bfq = bfq is not None and not bfq.strip().isdigit()
    for i, dev in enumerate(devices):
        field = f"blockIO.weightDevice[{i}]"
        if dev.get("weight"):
            w = dev["weight"]
            if per_device_bfq:
                p.add("io", "io.bfq.weight", f"{_device(dev)} {w}", field, f"{_device(dev)} {w}")
            else:
                value = f"{_device(dev)} {blkio_weight_to_io_weight(w)}"
                p.add("io", "io.weight", value, field, f"{_device(dev)} {w}")
        if dev.get("leafWeight"):
            p.warn(
                field, f"{_device(dev)} leaf {dev['leafWeight']}", "cgroup v2 has no leaf weight"
            )
    for key, _, name in _THROTTLES:
        for i, dev in enumerate(bio.get(key) or []):
            rate = dev.get("rate", 0)
            value = f"{_device(dev)} {name}={rate or 'max'}"  # v1's 0 is "no limit"
            p.add("io", "io.max", value, f"blockIO.{key}[{i}]", f"{_device(dev)} {rate}")


def _hugetlb(p: _Plan, limits: list) -> None:
    for i, entry in enumerate(limits):
        size, limit = entry.get("pageSize"), entry.get("limit", 0)
        field, shown = f"hugepageLimits[{i}]", f"{size}={limit}"
        suffix = ".limit_in_bytes" if p.version("hugetlb", field, shown) == "v1" else ".max"
        p.add("hugetlb", f"hugetlb.{size}{suffix}", str(limit), field, shown)


def _network(p: _Plan, net: dict) -> None:
    class_id, priorities = net.get("classID") or 0, net.get("priorities") or []
    if class_id:
        if p.where("net_cls") is None and p.where("memory") == "v2":
            p.warn("network.classID", class_id, "cgroup v2 has no net_cls controller")
        elif p.version("net_cls", "network.classID", class_id) == "v1":
            p.add("net_cls", "net_cls.classid", str(class_id), "network.classID", class_id)
    for i, prio in enumerate(priorities):
        value = f"{prio.get('name')} {prio.get('priority', 0)}"
        field = f"network.priorities[{i}]"
        if p.where("net_prio") is None and p.where("memory") == "v2":
            p.warn(field, value, "cgroup v2 has no net_prio controller")
        elif p.version("net_prio", field, value) == "v1":
            p.add("net_prio", "net_prio.ifpriomap", value, field, value)


def _rdma(p: _Plan, rdma: dict) -> None:
    for device, limit in rdma.items():
        value = device
        if limit.get("hcaHandles") is not None:
            value += f" hca_handle={limit['hcaHandles']}"
        if limit.get("hcaObjects") is not None:
            value += f" hca_object={limit['hcaObjects']}"
        field = f"rdma.{device}"
        p.version("rdma", field, value)
        p.add("rdma", "rdma.max", value, field, value)


def _unified(p: _Plan, unified: dict, mode: str) -> None:
    """Raw v2 files, written last (they override the translated values). Refused on v1
    and on hybrid hosts, where the controllers they name are not on the v2 hierarchy, in
    runc's words (`invalid configuration: cannot use unified on cgroup v1`, which engines
    match), then why."""
    if not unified:
        return
    if mode != "v2":
        raise error(
            "unified", unified, "invalid configuration: cannot use unified on cgroup v1 "
            f"(it needs a cgroup v2 host; this one is {mode}: its controllers are on v1)"
        )  # fmt: skip
    for key, value in unified.items():
        if "/" in key or key in (".", ".."):
            raise error(f"unified.{key}", value, "must be a file name (no slashes)")
        controller, dot, _ = key.partition(".")
        if not dot:
            raise error(f"unified.{key}", value, "must be CONTROLLER.PARAMETER")
        p.add("", key, str(value), f"unified.{key}", value)  # "": the v2 directory itself


# --- update ----------------------------------------------------------------------------

#: What `update` may change, as runc 1.1.5 takes it from its flags or its JSON input
#: (plus cpu.burst and memory.checkBeforeUpdate, which later runcs take too).
UPDATABLE = {
    "memory": ("limit", "reservation", "swap", "checkBeforeUpdate"),
    "cpu": ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
            "mems", "idle"),
    "blockIO": ("weight",),
    "pids": ("limit",),
}  # fmt: skip


def merge_update(current: dict, update: dict) -> dict:
    """The container's resources after `update`: `current` with the updatable values
    `update` gives. Values depend on each other (swap on limit, quota on period), so the
    whole result is written again, as runc does."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    for group, keys in UPDATABLE.items():
        given = update.get(group) or {}
        for key in keys:
            value = given.get(key)
            if value is None or (key in ("cpus", "mems") and not value):
                continue
            merged.setdefault(group, {})[key] = value
    mem = update.get("memory") or {}
    if mem.get("limit") == -1 and mem.get("swap") is None:
        merged["memory"]["swap"] = -1  # unlimited memory: unlimited swap too, as runc
    if update.get("unified"):
        merged["unified"] = dict(merged.get("unified") or {}, **update["unified"])
    return merged
