"""`update [--resources FILE|-] [--memory ...] ID`: change a running container's limits.

runc 1.1.5's command line and JSON input. The new values are merged into the
container's resources as state.json records them, the whole set is written again (limits
depend on each other: swap on memory, quota on period), and state.json keeps the result.
If the kernel refuses, the previous values are written back and the error names the
resource. A stopped container cannot be updated.
"""

from __future__ import annotations

import sys

from ociruntime import jsonlite
from ociruntime.cgroups import resources
from ociruntime.container.container import Container
from ociruntime.errors import RuntimeFailure

#: flag dest -> (resource group, key, flag name)
_UINT_FLAGS = {
    "cpu_burst": ("cpu", "burst", "cpu-burst"),
    "cpu_period": ("cpu", "period", "cpu-period"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "cpu-rt-period"),
    "cpu_share": ("cpu", "shares", "cpu-share"),
}
_INT_FLAGS = {
    "cpu_quota": ("cpu", "quota", "cpu-quota"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "cpu-rt-runtime"),
    "cpu_idle": ("cpu", "idle", "cpu-idle"),
}
_SIZE_FLAGS = {
    "memory": ("memory", "limit", "memory"),
    "memory_swap": ("memory", "swap", "memory-swap"),
    "memory_reservation": ("memory", "reservation", "memory-reservation"),
}
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def update(root: str, container_id: str, o: dict) -> None:
    """Merge the flags' or the JSON input's resources into the recorded ones and write
    them (the container's lock is held throughout: the record is read, then written)."""
    if o.get("l3_cache_schema"):
        raise RuntimeFailure("Intel RDT/CAT: l3 cache schema is not enabled")
    if o.get("mem_bw_schema"):
        raise RuntimeFailure("Intel RDT/MBA: memory bandwidth schema is not enabled")
    container = Container.load(root, container_id)
    container.check("update")
    change = _from_input(str(o["resources"])) if o.get("resources") else _from_flags(o)
    container.update(change)


def _from_input(source: str) -> dict:
    """The JSON input (a spec LinuxResources object), from a file or stdin ("-"), with
    config.json's bounds (bundle.read_bounded, parse_json): a regular file (not
    /dev/zero, no FIFO that blocks), at most 4 MiB, 64 levels, no NUL in a string."""
    from ociruntime.container import bundle

    limit = bundle.MAX_CONFIG_BYTES
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(limit + 1)
            if len(raw) > limit:
                raise RuntimeFailure(f"{source}: larger than {limit} bytes")
        else:
            raw = bundle.read_bounded(source, source)
    except OSError as e:
        raise RuntimeFailure(f"open {source}: {e.strerror}") from None
    data = bundle.parse_json(raw, source)
    if not isinstance(data, dict):
        raise RuntimeFailure(f"{source}: expected a JSON object of resources")
    _check_types(source, data)
    return data


def _check_types(source: str, data: dict) -> None:
    """The updatable fields must have the spec's types (what runc's decoder enforces)."""
    for group, keys in resources.UPDATABLE.items():
        given = data.get(group)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise RuntimeFailure(f"{source}: /{group}: expected an object")
        for key in keys:
            value = given.get(key)
            if value is None:
                continue
            want = (str if key in ("cpus", "mems") else bool if key == "checkBeforeUpdate"
                    else int)  # fmt: skip
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise RuntimeFailure(
                    f"{source}: /{group}/{key}: expected {want.__name__}, "
                    f"got {jsonlite.dumps(value)}"
                )
    unified = data.get("unified")
    if unified is not None and not (
        isinstance(unified, dict) and all(isinstance(v, str) for v in unified.values())
    ):
        raise RuntimeFailure(f"{source}: /unified: expected an object of strings")


def _from_flags(o: dict) -> dict:
    """The change runc's individual flags ask for, as a LinuxResources object."""
    change: dict = {"memory": {}, "cpu": {}, "blockIO": {}, "pids": {}}
    weight = _int_flag(o, "blkio_weight", "blkio-weight")
    if weight:
        change["blockIO"]["weight"] = weight
    for dest, key in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if o.get(dest):
            change["cpu"][key] = str(o[dest])
    for table, unsigned in ((_UINT_FLAGS, True), (_INT_FLAGS, False)):
        for dest, (group, key, name) in table.items():
            text = o.get(dest)
            if text:
                change[group][key] = _number(str(text), name, unsigned)
    for dest, (group, key, name) in _SIZE_FLAGS.items():
        text = o.get(dest)
        if text:
            change[group][key] = -1 if text == "-1" else ram_in_bytes(str(text), name)
    for dest, name in (
        ("kernel_memory", "kernel-memory"),
        ("kernel_memory_tcp", "kernel-memory-tcp"),
    ):
        if o.get(dest):
            from ociruntime.log import LOG

            LOG.warning(f"Setting --{name} is ignored and will be removed")
    pids = _int_flag(o, "pids_limit", "pids-limit")
    if pids:
        change["pids"]["limit"] = pids
    return change


def _int_flag(o: dict, dest: str, name: str) -> int:
    text = str(o.get(dest) or "0")
    try:
        return int(text, 0)
    except ValueError:
        raise RuntimeFailure(f'invalid value "{text}" for flag -{name}: parse error') from None


def _number(text: str, name: str, unsigned: bool) -> int:
    try:
        value: int | None = int(text)
    except ValueError:
        value = None
    if value is None or (unsigned and value < 0):
        kind = "an unsigned integer" if unsigned else "an integer"
        raise RuntimeFailure(f"invalid value for {name}: {text!r} is not {kind}")
    return value


def ram_in_bytes(text: str, name: str) -> int:
    """docker/go-units' RAMInBytes, which runc's flags use: "512", "64m", "1.5g", "2GiB"
    (binary multiples; k m g t p, an optional i and b)."""
    s = text.strip()
    i = 0
    while i < len(s) and (s[i].isdigit() or s[i] == "."):
        i += 1
    number, suffix = s[:i], s[i:].lstrip(" ").lower()
    unit = suffix[:1] if suffix[:1] in "kmgtp" and suffix else ""
    rest = suffix[len(unit) :]
    if rest.startswith("i"):
        rest = rest[1:]
    if rest not in ("", "b"):
        raise RuntimeFailure(f"invalid value for {name}: invalid size: '{text}'")
    try:
        value = float(number)
    except ValueError:
        raise RuntimeFailure(f"invalid value for {name}: invalid size: '{text}'") from None
    return int(value * _UNITS[unit])
