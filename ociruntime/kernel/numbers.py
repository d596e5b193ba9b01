"""System call numbers for the calls the kernel layer makes through syscall(2) (every call
Python's os module lacks: kernel/_syscall.c makes them), per architecture.

x86_64: arch/x86/entry/syscalls/syscall_64.tbl. aarch64 has no table of its own: it uses
the generic one, include/uapi/asm-generic/unistd.h (so do riscv64 and loongarch64, not
listed until someone runs the tests there). The calls added since 5.x (open_tree and
later) share their number on every architecture. tests/test_kernel_layer.py compares
both tables with the installed kernel headers.

The table for this machine is chosen at import; on any other architecture the import
fails with a message that says so, rather than the runtime calling the wrong syscall.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime.errors import RuntimeFailure

#: The calls added since Linux 5.1 have one number on every architecture.
_SAME_EVERYWHERE = {
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "openat2": 437,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
}

TABLES = {
    "x86_64": {
        "mount": 165,
        "umount2": 166,
        "unshare": 272,
        "setns": 308,
        "sethostname": 170,
        "setdomainname": 171,
        "fstatfs": 138,
        "prctl": 157,
        "personality": 135,
        "capset": 126,
        "pivot_root": 155,
        "keyctl": 250,
        "ioprio_set": 251,
        "sched_setattr": 314,
        "set_mempolicy": 238,
        "seccomp": 317,
        "bpf": 321,
        "prlimit64": 302,
        **_SAME_EVERYWHERE,
    },
    "aarch64": {
        "mount": 40,
        "umount2": 39,
        "unshare": 97,
        "setns": 268,
        "sethostname": 161,
        "setdomainname": 162,
        "fstatfs": 44,
        "prctl": 167,
        "personality": 92,
        "capset": 91,
        "pivot_root": 41,
        "keyctl": 219,
        "ioprio_set": 30,
        "sched_setattr": 274,
        "set_mempolicy": 237,
        "seccomp": 277,
        "bpf": 280,
        "prlimit64": 261,
        **_SAME_EVERYWHERE,
    },
}


def table_for(machine: str) -> dict[str, int]:
    """The syscall numbers of `machine` (as posix.uname().machine names it)."""
    table = TABLES.get(machine)
    if table is None:
        known = " and ".join(sorted(TABLES))
        raise RuntimeFailure(
            f"unsupported architecture {machine!r}: ociruntime knows the system call "
            f"numbers of {known} only (ociruntime/kernel/numbers.py)"
        )
    return table


MACHINE = posix.uname().machine
_table = table_for(MACHINE)
SYS_MOUNT, SYS_UMOUNT2 = _table["mount"], _table["umount2"]
SYS_UNSHARE, SYS_SETNS = _table["unshare"], _table["setns"]
SYS_SETHOSTNAME, SYS_SETDOMAINNAME = _table["sethostname"], _table["setdomainname"]
SYS_FSTATFS, SYS_PRCTL = _table["fstatfs"], _table["prctl"]
SYS_PERSONALITY, SYS_CAPSET = _table["personality"], _table["capset"]
SYS_PIVOT_ROOT, SYS_KEYCTL = _table["pivot_root"], _table["keyctl"]
SYS_IOPRIO_SET = _table["ioprio_set"]
SYS_SCHED_SETATTR, SYS_BPF = _table["sched_setattr"], _table["bpf"]
SYS_SECCOMP, SYS_SET_MEMPOLICY = _table["seccomp"], _table["set_mempolicy"]
SYS_OPEN_TREE, SYS_MOVE_MOUNT = _table["open_tree"], _table["move_mount"]
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = _table["fsopen"], _table["fsconfig"], _table["fsmount"]
SYS_OPENAT2, SYS_PIDFD_GETFD = _table["openat2"], _table["pidfd_getfd"]
SYS_MOUNT_SETATTR, SYS_PRLIMIT64 = _table["mount_setattr"], _table["prlimit64"]
del _table
