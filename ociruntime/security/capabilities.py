"""Linux capabilities: names from config.json to numbers, and applying all five sets.

The sets are changed through the kernel layer (ociruntime.kernel.syscalls: prctl(2) for
the bounding and ambient sets, python-prctl's capset for the other three). Capabilities the
running kernel does not know are skipped with a warning, as runc does, so one config
works across kernels.
"""

from __future__ import annotations

import errno

from ociruntime.errors import field_message, pointer
from ociruntime.kernel import syscalls as sc
from ociruntime.log import LOG
from ociruntime.security import procfs

#: Capability numbers from linux/capability.h (stable ABI).
CAP_NUMBERS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )  # fmt: skip
    )
}

SET_NAMES = ("bounding", "effective", "permitted", "inheritable", "ambient")


_last_cap: list[int] = []  # read once: later calls may run under seccomp, after procfs.close


def last_cap() -> int:
    """The highest capability number the running kernel knows, from the trusted procfs:
    a fake cap_last_cap mounted in the container would leave the capabilities above it in
    the bounding set."""
    if not _last_cap:
        _last_cap.append(int(procfs.read("sys/kernel/cap_last_cap")))
    return _last_cap[0]


def to_numbers(names: list[str], known_up_to: int, set_name: str) -> set[int]:
    """Translate names; unknown names (to us or to this kernel) are warned about and skipped."""
    numbers = set()
    for name in names:
        number = CAP_NUMBERS.get(name)
        if number is None or number > known_up_to:
            where = pointer("process", "capabilities", set_name)
            LOG.warning(field_message(where, f"{name} is not supported here; ignored"))
            continue
        numbers.add(number)
    return numbers


def resolve_sets(caps: dict[str, list[str]] | None) -> dict[str, set[int]]:
    """All five sets as numbers; an absent set is empty (the spec's default)."""
    top = last_cap()
    caps = caps or {}
    return {s: to_numbers(caps.get(s) or [], top, s) for s in SET_NAMES}


def drop_bounding(keep: set[int]) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP,
    so it happens before the user switch)."""
    for cap in range(last_cap() + 1):
        if cap not in keep and sc.capbset_read(cap):
            sc.capbset_drop(cap)


def apply_sets(sets: dict[str, set[int]]) -> None:
    """Set effective/permitted/inheritable exactly, then raise the ambient ones."""
    sc.set_capabilities(sets["effective"], sets["permitted"], sets["inheritable"], last_cap())
    sc.ambient_clear_all()
    for cap in sorted(sets["ambient"]):
        # The kernel only raises an ambient capability that is also permitted and
        # inheritable; runc silently leaves the others out, and so do we (runc's own
        # default spec lists ambient capabilities without inheritable ones).
        try:
            sc.ambient_raise(cap)
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            LOG.debug(
                field_message(
                    pointer("process", "capabilities", "ambient"),
                    f"capability {cap} not raised: not in the permitted and inheritable sets",
                )
            )
