"""Linux capabilities: names from config.json to numbers, and applying all five sets.

python-prctl sets the bounding, effective, permitted and inheritable sets; it has no
ambient-set call, so the ambient set goes through prctl(2) directly. Capabilities the
running kernel does not know are skipped with a warning, as runc does, so one config
works across kernels.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ociruntime import procfs
from ociruntime.log import LOG

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
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


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
            LOG.warning(f"process.capabilities.{set_name}: {name} is not supported here; ignored")
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
    import prctl

    for cap in range(last_cap() + 1):
        if cap not in keep and prctl.capbset_read(cap):
            prctl.capbset_drop(cap)


def apply_sets(sets: dict[str, set[int]]) -> None:
    """Set effective/permitted/inheritable exactly, then raise the ambient ones."""
    import prctl

    everything = set(range(last_cap() + 1))
    prctl.set_caps(
        (list(sets["effective"]), prctl.CAP_EFFECTIVE, True),
        (list(everything - sets["effective"]), prctl.CAP_EFFECTIVE, False),
        (list(sets["permitted"]), prctl.CAP_PERMITTED, True),
        (list(everything - sets["permitted"]), prctl.CAP_PERMITTED, False),
        (list(sets["inheritable"]), prctl.CAP_INHERITABLE, True),
        (list(everything - sets["inheritable"]), prctl.CAP_INHERITABLE, False),
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in sorted(sets["ambient"]):
        # The kernel only raises an ambient capability that is also permitted and
        # inheritable; runc silently leaves the others out, and so do we (runc's own
        # default spec lists ambient capabilities without inheritable ones).
        if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0:
            err = ctypes.get_errno()
            if err != errno.EPERM:
                raise OSError(err, f"raising ambient capability {cap}: {os.strerror(err)}")
            LOG.debug(
                f"process.capabilities.ambient: capability {cap} not raised: "
                "not in the permitted and inheritable sets"
            )
