"""The device policy on cgroup v2: an eBPF program built from the rules, loaded with
bpf(2) and attached to the container's cgroup (BPF_CGROUP_DEVICE).

cgroup v2 has no devices controller: the kernel asks the cgroup's device programs about
every open and mknod of a device node, passing `struct bpf_cgroup_dev_ctx { u32
access_type (access << 16 | type); u32 major; u32 minor; }`; the program returns 1 to
allow, 0 to deny. The rules are the same list v1's devices.allow/deny get (cgroups.
device_rules), and mean the same: for each kind of access asked (mknod, read, write), the
last rule that matches the device and includes that access decides; with none, denied.
The program checks each asked access in turn against the rules from last to first, so
it is a straight line of compares and jumps (the verifier accepts no loop).

Imported only on a v2 host.
"""

from __future__ import annotations

import ctypes
import os
import struct

from ociruntime.cgroups import devicerules
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc

# linux/bpf.h
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
DEV_BLOCK, DEV_CHAR = 1, 2  # BPF_DEVCG_DEV_*
ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# The instructions used (struct bpf_insn: code, dst | src << 4, off, imm).
LDX_W = 0x61  # dst = *(u32 *)(src + off)
AND32_K, RSH32_K, MOV32_K, MOV32_X = 0x54, 0x74, 0xB4, 0xBC
JEQ_K, JNE_K, JA, EXIT = 0x15, 0x55, 0x05, 0x95
R0, R1, R2, R3, R4, R5 = range(6)


class Rule:
    """One rule: allow or deny `access` ("rwm" letters) on type (a/b/c) major:minor
    (None: any)."""

    __slots__ = ("allow", "kind", "major", "minor", "access")

    def __init__(self, allow: bool, kind: str, major: int | None, minor: int | None,
                 access: str) -> None:  # fmt: skip
        self.allow, self.kind, self.major, self.minor = allow, kind, major, minor
        self.access = access

    @classmethod
    def parse(cls, allow: bool, text: str) -> Rule:
        """From v1's form, "c 1:3 rwm" (or "a"; no access: all three). The access is read
        as runc and v1 read it (devicerules.access): r, w, m, other letters ignored, so
        "rwa" means "rw" here too and "c 1:3 x" grants or takes nothing."""
        kind, _, rest = text.partition(" ")
        numbers, spaced, access = rest.partition(" ")
        major, _, minor = numbers.partition(":")
        access = devicerules.access(access) if spaced else "rwm"
        kind = kind or "a"
        if kind == "a":  # every device, whatever numbers follow (as v1 reads it)
            major = minor = "*"
        return cls(
            allow, kind,
            None if major in ("", "*") else int(major),
            None if minor in ("", "*") else int(minor),
            access,
        )  # fmt: skip


def decide(rules: list[Rule], kind: str, major: int, minor: int, access: str) -> bool:
    """The policy in Python, for tests: what the program answers."""
    for letter in access:
        verdict = False
        for rule in reversed(rules):
            if letter not in rule.access or (rule.kind != "a" and rule.kind != kind):
                continue
            if rule.major is not None and rule.major != major:
                continue
            if rule.minor is not None and rule.minor != minor:
                continue
            verdict = rule.allow
            break
        if not verdict:
            return False
    return True


def program(rules: list[Rule]) -> list[tuple[int, int, int, int, int]]:
    """The instructions: (code, dst, src, off, imm)."""
    insns: list[list[int]] = [
        [LDX_W, R2, R1, 0, 0], [AND32_K, R2, 0, 0, 0xFFFF],  # type
        [LDX_W, R3, R1, 0, 0], [RSH32_K, R3, 0, 0, 16],  # access asked
        [LDX_W, R4, R1, 4, 0],  # major
        [LDX_W, R5, R1, 8, 0],  # minor
    ]  # fmt: skip
    for letter, bit in ACCESS.items():
        _chain(insns, [r for r in rules if letter in r.access], bit)
    insns += [[MOV32_K, R0, 0, 0, 1], [EXIT, 0, 0, 0, 0]]
    return [tuple(i) for i in insns]  # type: ignore[misc]


def _chain(insns: list[list[int]], rules: list[Rule], bit: int) -> None:
    """If `bit` is asked: the last matching rule's verdict (deny: return 0 at once;
    allow: on to the next access), none matching: return 0. Jump targets are patched
    once known: `ends` jump to the end of the chain, `nexts` to the next rule."""
    if rules and rules[-1].allow and rules[-1].kind == "a":
        return  # the last word allows this access to everything: nothing to check
    ends = [len(insns) + 2]
    insns += [[MOV32_X, R1, R3, 0, 0], [AND32_K, R1, 0, 0, bit], [JEQ_K, R1, 0, 0, 0]]
    decided = False
    for rule in reversed(rules):
        nexts = []
        if rule.kind != "a":
            nexts.append(len(insns))
            insns.append([JNE_K, R2, 0, 0, DEV_BLOCK if rule.kind == "b" else DEV_CHAR])
        for reg, value in ((R4, rule.major), (R5, rule.minor)):
            if value is not None:
                nexts.append(len(insns))
                insns.append([JNE_K, reg, 0, 0, value])
        decided = not nexts  # it matches every device: the rules before it never decide
        if not rule.allow:
            insns += [[MOV32_K, R0, 0, 0, 0], [EXIT, 0, 0, 0, 0]]
        elif not decided:  # (when decided, the end of the chain comes next anyway)
            ends.append(len(insns))
            insns.append([JA, 0, 0, 0, 0])
        for at in nexts:
            insns[at][3] = len(insns) - at - 1
        if decided:
            break
    if not decided:
        insns += [[MOV32_K, R0, 0, 0, 0], [EXIT, 0, 0, 0, 0]]
    for at in ends:
        insns[at][3] = len(insns) - at - 1


def encode(insns: list[tuple[int, int, int, int, int]]) -> bytes:
    return b"".join(
        struct.pack("<BBhi", code, dst | (src << 4), off, imm) for code, dst, src, off, imm in insns
    )


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    return sc.bpf(cmd, attr)


def load(code: bytes) -> int:
    """BPF_PROG_LOAD: the program's fd (the verifier's log in the error if refused)."""
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license), 1, len(log),
                     ctypes.addressof(log))  # fmt: skip
    attr[48:58] = b"ocidevices"  # prog_name
    struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)  # expected_attach_type
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise RuntimeFailure(
            f"linux.resources.devices: loading the device program: {e.strerror}"
            + (f" ({detail[-1]})" if detail else "")
        ) from None


def attach(cgroup_dir: str, prog_fd: int) -> None:
    """BPF_PROG_ATTACH with BPF_F_ALLOW_MULTI: the ancestors' programs keep applying."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attr = ctypes.create_string_buffer(struct.pack(
            "<IIIII", fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0), 32)  # fmt: skip
        _bpf(BPF_PROG_ATTACH, attr)
    except OSError as e:
        raise RuntimeFailure(
            f"linux.resources.devices: attaching the device program to {cgroup_dir}: {e.strerror}"
        ) from None
    finally:
        os.close(fd)


def apply(cgroup_dir: str, rules: list[tuple[bool, str]]) -> None:
    """Build, load and attach the program for `rules` (v1's form); the attachment keeps
    the program alive, so its fd is closed at once."""
    prog_fd = load(encode(program([Rule.parse(allow, text) for allow, text in rules])))
    try:
        attach(cgroup_dir, prog_fd)
    finally:
        os.close(prog_fd)
