"""Capability numbers as linux/capability.h defines them, written here from the header and
not taken from the runtime: an expectation computed with the runtime's own table would
agree with any mistake in it."""

from __future__ import annotations

#: linux/capability.h in number order: CAP_CHOWN is 0, ..., CAP_CHECKPOINT_RESTORE 40 (5.9).
_IN_NUMBER_ORDER = """
    CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE
""".split()

#: "CAP_CHOWN" -> 0, ...
CAP_NUMBERS: dict[str, int] = {f"CAP_{name}": bit for bit, name in enumerate(_IN_NUMBER_ORDER)}
