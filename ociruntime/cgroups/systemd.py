"""The systemd cgroup driver (`--systemd-cgroup`): the container as a transient scope unit.

As runc's: `linux.cgroupsPath` is `slice:prefix:name` (empty: `system.slice:runc:ID`);
the container's cgroup is the unit `prefix-name.scope` in that slice, whose path follows
systemd's slice naming (`a-b.slice` is `/a.slice/a-b.slice`). create asks systemd
(StartTransientUnit over D-Bus) for the scope with the init's pid in it, `Delegate=yes`,
accounting on and the limits systemd understands as unit properties; then the cgroupfs
code does what it always does in those directories (makes what systemd did not: the
other v1 hierarchies; device rules; every limit written to its file, so the values are
exact where systemd rounds, and the ones systemd has no property for are there too).
`update` sets the properties again, then writes the files; `delete` stops the unit (and
resets it if it failed: an OOM-killed scope stays "failed" otherwise). Pausing, `kill
--all`, `events` and `ps` work on the directories, as with cgroupfs.

The pure parts (path parsing, slice expansion, property translation) import nothing;
the D-Bus module (and jeepney) only when systemd is actually called.
"""

from __future__ import annotations

import os
from _json import encode_basestring_ascii

from ociruntime.cgroups import resources as res
from ociruntime.cgroups.manager import Manager
from ociruntime.errors import RuntimeFailure, field_error, pointer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups import cgroupfs

DEFAULT_SLICE = "system.slice"
DEFAULT_PREFIX = "runc"  # runc's, so that tools looking for runc-ID.scope find ours too
#: systemd's USEC_INFINITY / CGROUP_LIMIT_MAX: "no limit" for a `t` property.
INFINITY = 2**64 - 1
#: The kernel's default CFS period, for a quota given without one (as runc).
DEFAULT_PERIOD = 100_000
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\")


def booted() -> bool:
    """Is systemd the init system (sd_booted(3): /run/systemd/system exists)?"""
    return os.path.isdir("/run/systemd/system")


class Scope:
    """Where a container goes under systemd: its slice and its scope unit."""

    __slots__ = ("slice", "unit", "name")

    def __init__(self, slice_: str, unit: str, name: str) -> None:
        self.slice, self.unit, self.name = slice_, unit, name

    @property
    def cgroup(self) -> str:
        """The unit's cgroup below the hierarchy's systemd root, e.g.
        /system.slice/runc-ID.scope."""
        return os.path.join(expand_slice(self.slice), self.unit)


def _path_error(reason: str) -> RuntimeFailure:
    return field_error(pointer("linux", "cgroupsPath"), reason)


def parse_path(cgroups_path: str | None, container_id: str) -> Scope:
    """runc's reading of `linux.cgroupsPath` under the systemd driver: empty is
    `system.slice:runc:ID`; otherwise exactly three `:`-separated parts, an empty slice
    being system.slice. Refused (naming the field): another shape, a slice systemd would
    not accept, a unit name systemd would refuse, a `.slice` name (a container's unit is
    a scope: a slice holds no process)."""
    if not cgroups_path:
        slice_, prefix, name = DEFAULT_SLICE, DEFAULT_PREFIX, container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise _path_error(
                'expected cgroupsPath to be of format "slice:prefix:name" for systemd '
                f"cgroups, got {encode_basestring_ascii(cgroups_path)} instead"  # runc's %q
            )
        slice_, prefix, name = parts[0] or DEFAULT_SLICE, parts[1], parts[2]
    try:
        expand_slice(slice_)
    except ValueError as e:
        raise _path_error(str(e)) from None
    if not name:
        raise _path_error(f"{cgroups_path!r}: the name (after the second colon) is empty")
    if name.endswith(".slice"):
        raise _path_error(f"{name!r}: a container's unit must be a scope, not a slice")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if len(unit) > 255 or not _UNIT_CHARS.issuperset(unit):
        raise _path_error(
            f"{unit!r} is not a valid systemd unit name (at most 255 of a-z A-Z 0-9 : - _ . \\)"
        )
    return Scope(slice_, unit, name)


def expand_slice(name: str) -> str:
    """A slice's cgroup path: systemd nests slices by their dashes, so `a-b-c.slice` is
    /a.slice/a-b.slice/a-b-c.slice and `-.slice` (the root slice) is /. ValueError for a
    name systemd would refuse (no .slice suffix, a slash, an empty part: `a--b.slice`,
    `-a.slice`)."""
    if not name.endswith(".slice") or name == ".slice" or "/" in name:
        raise ValueError(f"invalid slice name: {name!r}")
    stem = name[: -len(".slice")]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise ValueError(f"invalid slice name: {name!r}")
        path += f"/{prefix}{part}.slice"
        prefix += part + "-"
    return path


def placement(
    scope: Scope,
    found: list[cgroupfs.Hierarchy],
    roots: dict[frozenset[str], str] | None = None,
) -> list[tuple[cgroupfs.Hierarchy, str]]:
    """(hierarchy, directory) for each hierarchy: the scope's cgroup below systemd's root
    in it (on v1, PID 1's cgroup without its init.scope, as runc; on v2 the mount's
    root). `roots`: PID 1's cgroups by v1 hierarchy (default: read now)."""
    roots = _pid1_roots() if roots is None else roots
    pairs = []
    for h in found:
        base = "/" if h.is_v2 else roots.get(h.controllers, "/")
        rel = os.path.normpath(base + "/" + scope.cgroup).lstrip("/")
        pairs.append((h, os.path.join(h.mountpoint, rel)))
    return pairs


def _pid1_roots() -> dict[frozenset[str], str]:
    """PID 1's cgroup per v1 hierarchy, without a trailing /init.scope."""
    roots: dict[frozenset[str], str] = {}
    try:
        with open("/proc/1/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return roots
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path.endswith("/init.scope"):
            path = path[: -len("/init.scope")] or "/"
        roots[frozenset(c for c in controllers.split(",") if c)] = path
    return roots


# --- properties (pure) -------------------------------------------------------------------


def unit_properties(scope: Scope, pid: int, v2: bool) -> list[tuple[str, tuple[str, object]]]:
    """The scope's own properties, as runc sets them: the init in it, delegated (the
    subtree is ours to manage), accounting on for every controller (the kernel charges
    from the start), no default dependencies (a container must not be stopped by a
    shutdown ordering it did not ask for, nor wait for other units)."""
    return [
        ("Description", ("s", f"ociruntime container {scope.name}")),
        ("Slice", ("s", scope.slice)),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("MemoryAccounting", ("b", True)),
        ("CPUAccounting", ("b", True)),
        ("IOAccounting" if v2 else "BlockIOAccounting", ("b", True)),
        ("TasksAccounting", ("b", True)),
        ("DefaultDependencies", ("b", False)),
    ]


def resource_properties(
    resources: dict, v2: bool, version: int
) -> list[tuple[str, tuple[str, object]]]:
    """`linux.resources` as the unit properties systemd understands (runc's choice and
    formulas; `version` is systemd's, for the properties newer ones added). The values
    have passed resources.plan already, which refuses what makes no sense."""
    props: list[tuple[str, tuple[str, object]]] = []
    _memory_props(props, resources.get("memory") or {}, v2)
    _cpu_props(props, resources.get("cpu") or {}, v2, version)
    weight = (resources.get("blockIO") or {}).get("weight") or 0
    if weight:
        props.append(("IOWeight", ("t", res.blkio_weight_to_io_weight(weight)))
                     if v2 else ("BlockIOWeight", ("t", weight)))  # fmt: skip
    pids = (resources.get("pids") or {}).get("limit") or 0
    if pids > 0 or pids == -1:
        props.append(("TasksMax", ("t", _limit(pids))))
    return props


def _limit(value: int) -> int:
    """A spec limit as a `t` property: negative (-1) is "infinity"."""
    return INFINITY if value < 0 else value


def _memory_props(props: list, mem: dict, v2: bool) -> None:
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    if limit:
        props.append(("MemoryMax" if v2 else "MemoryLimit", ("t", _limit(limit))))
    if not v2:
        return
    reservation = mem.get("reservation") or 0
    if reservation:
        props.append(("MemoryLow", ("t", _limit(reservation))))
    try:
        swap2 = res.swap_to_v2(swap, limit)
    except ValueError:
        return  # resources.plan refuses it, naming the field
    if swap2:
        props.append(("MemorySwapMax", ("t", _limit(swap2))))
    elif swap > 0:
        props.append(("MemorySwapMax", ("t", 0)))


def _cpu_props(props: list, cpu: dict, v2: bool, version: int) -> None:
    shares = cpu.get("shares") or 0
    if shares:
        props.append(("CPUWeight", ("t", res.shares_to_weight(shares)))
                     if v2 else ("CPUShares", ("t", shares)))  # fmt: skip
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if period and version >= 242:  # CPUQuotaPeriodUSec= is systemd 242's
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        props.append(("CPUQuotaPerSecUSec", ("t", quota_per_sec(quota, period))))
    if version >= 244:  # AllowedCPUs= and AllowedMemoryNodes= are systemd 244's
        for key, name in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
            if cpu.get(key):
                props.append((name, ("ay", cpu_mask(cpu[key], f"cpu.{key}"))))


def quota_per_sec(quota: int, period: int) -> int:
    """CPUQuotaPerSecUSec from a CFS quota and period: CPU time per second, rounded up
    to systemd's 1% (10 ms) steps, as runc does, so that the quota written to cpu.max
    afterwards is within what systemd allowed; no quota is infinity."""
    if quota <= 0:
        return INFINITY
    per_sec = quota * 1_000_000 // (period or DEFAULT_PERIOD)
    return -(-per_sec // 10_000) * 10_000


def cpu_mask(text: str, field: str = "cpu.cpus") -> bytes:
    """A CPU or node list ("0-2,4") as systemd's AllowedCPUs= bytes: bit n of byte n//8
    is CPU n."""
    from ociruntime.cpulist import parse_cpu_list

    try:
        cpus = parse_cpu_list(text)
    except ValueError as e:
        raise res.error(field, text, str(e)) from None
    mask = bytearray((max(cpus) // 8 + 1) if cpus else 0)
    for n in cpus:
        mask[n // 8] |= 1 << (n % 8)
    return bytes(mask)


def device_properties(
    rules: list[tuple[bool, str]], proc_devices: str
) -> list[tuple[str, tuple[str, object]]]:
    """The device rules (cgroupfs.device_rules' result) as DevicePolicy= and DeviceAllow=,
    as runc converts them. An allow-all result is policy "auto" with no list. A deny
    list systemd cannot express: no property (our own device cgroup rules still apply);
    runc applies a temporary deny-all there. An allow list: "strict" and one entry per
    rule: /dev/char/M:m for a device, char-* / block-* for a whole type, the group name
    from /proc/devices for a whole major; a `*:m` rule has no systemd form and is left
    to our rules (systemd's filter would then deny it: as runc, with a warning)."""
    from ociruntime.cgroups import devicerules

    target = devicerules.Emulator()
    for allow, rule in rules:
        target.apply(allow, rule)
    if target.default_allow:
        if target.rules:
            return []
        return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
    allowed: list[tuple[str, str]] = []
    for (kind, major, minor), perms in sorted(target.rules.items()):
        path = _device_path(kind, major, minor, proc_devices)
        if path is not None and perms:
            allowed.append((path, perms))
    return [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", allowed))]


def _device_path(kind: str, major: str, minor: str, proc_devices: str) -> str | None:
    group = "char" if kind == "c" else "block" if kind == "b" else None
    if group is None or (major == "*" and minor != "*"):
        _warn(f"systemd has no form for the device rule '{kind} {major}:{minor}'")
        return None
    if major == "*":
        return f"{group}-*"
    if minor != "*":
        return f"/dev/{group}/{major}:{minor}"
    name = device_group(proc_devices, group, int(major))
    if name is None:
        _warn(f"no group for '{kind} {major}:*' in /proc/devices")
    return name


def device_group(proc_devices: str, group: str, major: int) -> str | None:
    """ "char-NAME" / "block-NAME" for a major number, from /proc/devices' sections."""
    section = None
    for line in proc_devices.splitlines():
        if line.endswith("devices:"):
            section = "char" if line.startswith("Character") else "block"
            continue
        fields = line.split()
        if section == group and len(fields) == 2 and fields[0] == str(major):
            return f"{group}-{fields[1]}"
    return None


def _warn(text: str) -> None:
    from ociruntime.log import LOG

    LOG.warning(f"linux.resources.devices: {text}; only ociruntime's own device filter has it")


# --- talking to systemd ----------------------------------------------------------------


def start(scope: Scope, pid: int, resources: dict, devices: list, v2: bool) -> None:
    """Start the scope with `pid` in it and its properties; a unit of that name left
    failed by an earlier container is reset and the start tried once more (runc)."""
    from ociruntime.cgroups import dbus

    with dbus.Systemd() as sd:
        props = unit_properties(scope, pid, v2)
        props += device_properties(devices, _read("/proc/devices"))
        props += resource_properties(resources, v2, _version(sd, resources))
        for attempt in (1, 2):
            try:
                result = sd.run_job("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                    (scope.unit, "replace", props, []))  # fmt: skip
                break
            except dbus.DBusError as e:
                if attempt == 2 or not e.name.endswith(".UnitExists"):
                    raise RuntimeFailure(f"starting systemd unit {scope.unit}: {e}") from None
                _reset_failed(sd, scope.unit)
        if result != "done":
            _reset_failed(sd, scope.unit)
            raise RuntimeFailure(f"starting systemd unit {scope.unit}: the job ended {result!r}")


def stop(unit: str) -> None:
    """Stop the unit and forget it (reset-failed); a unit already gone is no error."""
    from ociruntime.cgroups import dbus

    with dbus.Systemd() as sd:
        try:
            sd.run_job("StopUnit", "ss", (unit, "replace"))
        except dbus.DBusError as e:
            if not e.name.endswith(".NoSuchUnit"):
                raise RuntimeFailure(f"stopping systemd unit {unit}: {e}") from None
        _reset_failed(sd, unit)


def set_properties(unit: str, resources: dict, v2: bool) -> None:
    """`update`: the unit's resource properties (runtime, as runc: not persisted)."""
    from ociruntime.cgroups import dbus

    with dbus.Systemd() as sd:
        props = resource_properties(resources, v2, _version(sd, resources))
        if not props:
            return
        try:
            sd.call("SetUnitProperties", "sba(sv)", (unit, True, props))
        except dbus.DBusError as e:
            raise RuntimeFailure(f"setting the properties of systemd unit {unit}: {e}") from None


def _version(sd: object, resources: dict) -> int:
    """systemd's version where a property depends on it (a CPU period or set), else a
    recent one: one call fewer."""
    cpu = resources.get("cpu") or {}
    if cpu.get("period") or cpu.get("cpus") or cpu.get("mems"):
        return sd.version()  # type: ignore[attr-defined]
    return 10_000


def _reset_failed(sd: object, unit: str) -> None:
    from ociruntime.cgroups import dbus

    try:
        sd.call("ResetFailedUnit", "s", (unit,))  # type: ignore[attr-defined]
    except dbus.DBusError:
        pass  # not failed, or gone


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class SystemdManager(Manager):
    """A container's cgroup under the systemd driver: the cgroupfs Manager, plus its
    unit for what systemd must be told (update's properties, delete's stop)."""

    __slots__ = ("unit",)

    def __init__(self, dirs: list[str], created: list[str], paths: dict[str, str],
                 unit: str) -> None:  # fmt: skip
        super().__init__(dirs, created, paths)
        self.unit = unit

    def apply(self, new: dict, old: dict) -> None:
        """systemd's properties first (as runc: systemd would otherwise write its own
        values back over ours on its next change of the unit), then every file."""
        v2 = self.layout.mode == "v2"
        set_properties(self.unit, new, v2)
        try:
            super().apply(new, old)
        except RuntimeFailure:
            try:
                set_properties(self.unit, old, v2)
            except RuntimeFailure:
                pass  # the update's own error is the one to report
            raise

    def remove(self) -> None:
        """Stop the unit (systemd removes its cgroups), then what we made ourselves."""
        stop(self.unit)
        super().remove()
