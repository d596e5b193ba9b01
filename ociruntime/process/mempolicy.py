"""`linux.memoryPolicy` (runtime-spec 1.3): the NUMA memory policy of the container's
processes, set with set_mempolicy(2).

`plan` runs where a refusal is cheap (create before it makes anything, exec before it
forks). It names the field for what runc 1.4 refuses when it converts the config
("invalid memory policy mode/flag/nodes", its words) and, in the kernel's words runc
would report from its init ("set_mempolicy: invalid argument"), for each combination
the kernel refuses: the rules below are mm/mempolicy.c's (sanitize_mpol_flags,
mpol_new), checked on this kernel. Nodes the host does not have (not in
/sys/devices/system/node/online) are refused too: the kernel would silently drop them
from the mask, or fail in the init with nothing that names the field.

`MemoryPolicy.apply` runs in the init and exec's child (stages/finalize.py), before the
user switch and any seccomp filter: the policy is the calling thread's, survives execve
and is inherited by children, so the container's process starts under it.
"""

from __future__ import annotations

from ociruntime.cpulist import parse_cpu_list
from ociruntime.errors import field_error_at
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import (
    MPOL_BIND,
    MPOL_DEFAULT,
    MPOL_F_NUMA_BALANCING,
    MPOL_F_RELATIVE_NODES,
    MPOL_F_STATIC_NODES,
    MPOL_INTERLEAVE,
    MPOL_LOCAL,
    MPOL_PREFERRED,
    MPOL_PREFERRED_MANY,
    MPOL_WEIGHTED_INTERLEAVE,
)

MODES = {
    "MPOL_DEFAULT": MPOL_DEFAULT,
    "MPOL_PREFERRED": MPOL_PREFERRED,
    "MPOL_BIND": MPOL_BIND,
    "MPOL_INTERLEAVE": MPOL_INTERLEAVE,
    "MPOL_LOCAL": MPOL_LOCAL,
    "MPOL_PREFERRED_MANY": MPOL_PREFERRED_MANY,
    "MPOL_WEIGHTED_INTERLEAVE": MPOL_WEIGHTED_INTERLEAVE,
}
FLAGS = {
    "MPOL_F_STATIC_NODES": MPOL_F_STATIC_NODES,
    "MPOL_F_RELATIVE_NODES": MPOL_F_RELATIVE_NODES,
    "MPOL_F_NUMA_BALANCING": MPOL_F_NUMA_BALANCING,
}
#: Modes the kernel refuses with an empty node mask (EINVAL).
_NEED_NODES = {"MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY"}
#: Modes that take no nodes (mpol_new: a non-empty mask is EINVAL).
_NO_NODES = {"MPOL_DEFAULT", "MPOL_LOCAL"}
ONLINE_NODES = "/sys/devices/system/node/online"
EINVAL = "set_mempolicy: invalid argument"  # the kernel's refusal, as runc reports it


class MemoryPolicy:
    """A checked policy: the mode with its flags, as set_mempolicy takes it, and the nodes."""

    __slots__ = ("where", "mode", "nodes")

    def __init__(self, where: str, mode: int, nodes: list[int]) -> None:
        self.where = where  # "config.json: /linux/memoryPolicy", for the kernel's refusal
        self.mode, self.nodes = mode, nodes

    def apply(self) -> None:
        """set_mempolicy(2) for the calling thread; what it refuses names the field."""
        try:
            sc.set_mempolicy(self.mode, self.nodes)
        except OSError as e:
            raise field_error_at(self.where, f"set_mempolicy: {e.strerror.lower()}") from None


def online_nodes(path: str = ONLINE_NODES) -> set[int] | None:
    """The host's online NUMA nodes; None where the kernel has no NUMA (no such file)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return set(parse_cpu_list(text)) if text else set()


def plan(spec: object, where: str, online: set[int] | None) -> MemoryPolicy:
    """Check `linux.memoryPolicy` (`where`: "config.json: /linux/memoryPolicy") against
    the spec, runc's conversion, the kernel's rules and the host's `online` nodes."""
    if not isinstance(spec, dict):
        raise field_error_at(where, "must be an object")
    mode_name = spec.get("mode")
    if mode_name not in MODES:
        raise field_error_at(f"{where}/mode", f"invalid memory policy mode {_quote(mode_name)}")
    flags = 0
    for index, name in enumerate(spec.get("flags") or []):
        if name not in FLAGS:
            reason = f"invalid memory policy flag {_quote(name)}"
            raise field_error_at(f"{where}/flags/{index}", reason)
        flags |= FLAGS[name]
    nodes = _nodes(spec.get("nodes"), f"{where}/nodes")
    _check_combination(mode_name, flags, nodes, where)
    if nodes and online is not None and not flags & MPOL_F_RELATIVE_NODES:
        absent = sorted(set(nodes) - online)
        if absent:
            have = ",".join(str(n) for n in sorted(online)) or "none"
            reason = f"{EINVAL}: node {absent[0]} is not online on this host (online: {have})"
            raise field_error_at(f"{where}/nodes", reason)
    return MemoryPolicy(where, MODES[mode_name] | flags, nodes)


def _nodes(text: object, where: str) -> list[int]:
    if text is None or text == "":
        return []
    if not isinstance(text, str):
        raise field_error_at(where, "must be a string")
    try:
        nodes = parse_cpu_list(text)
    except ValueError as e:
        reason = f"invalid memory policy nodes {_quote(text)}: {str(e).replace('CPU', 'node')}"
        raise field_error_at(where, reason) from None
    return sorted(set(nodes))


def _check_combination(mode: str, flags: int, nodes: list[int], where: str) -> None:
    """What the kernel refuses with EINVAL (mm/mempolicy.c), named before anything is made."""
    static, relative = flags & MPOL_F_STATIC_NODES, flags & MPOL_F_RELATIVE_NODES
    if static and relative:
        why = "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other"
        raise field_error_at(f"{where}/flags", f"{EINVAL}: {why}")
    if flags & MPOL_F_NUMA_BALANCING and mode not in ("MPOL_BIND", "MPOL_PREFERRED_MANY"):
        why = f"MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY, not {mode}"
        raise field_error_at(f"{where}/flags", f"{EINVAL}: {why}")
    if mode in _NO_NODES and nodes:
        raise field_error_at(f"{where}/nodes", f"{EINVAL}: {mode} takes no nodes")
    if mode == "MPOL_LOCAL" and flags:
        raise field_error_at(f"{where}/flags", f"{EINVAL}: MPOL_LOCAL takes no flags")
    if mode in _NEED_NODES and not nodes:
        raise field_error_at(f"{where}/nodes", f"{EINVAL}: {mode} needs at least one node")
    if mode == "MPOL_PREFERRED" and not nodes and (static or relative):
        why = "MPOL_PREFERRED without nodes (local allocation) takes no node flags"
        raise field_error_at(f"{where}/flags", f"{EINVAL}: {why}")


def _quote(value: object) -> str:
    """Go's %q of a string (runc's words); other JSON values as they are."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
