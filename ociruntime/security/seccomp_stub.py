"""The -ENOSYS stub put in front of libseccomp's program (runc's patchbpf).

A syscall the profile does not name gets the default action, usually ERRNO(EPERM). For a
syscall newer than the profile (clone3, faccessat2, close_range ... or one neither
libseccomp nor the kernel knows yet) that is wrong: glibc falls back to an older call
only on ENOSYS, and EPERM makes the program fail instead. runc 1.1.5 therefore prepends
a stub: for each architecture the profile lists, a syscall number above the highest one
the profile names (on that architecture) returns ERRNO(ENOSYS); everything else goes on
to libseccomp's program. Its rules, followed here:

- no stub when the default action is SCMP_ACT_ALLOW, SCMP_ACT_LOG or SCMP_ACT_TRACE (a
  permissive profile, or a tracer that handles new syscalls itself), nor when
  defaultErrnoRet is ENOSYS already (the stub would change nothing);
- only the architectures in `architectures` (none listed: no stub, as runc); one whose
  names resolve to no syscall is left out with a warning;
- the highest number is over every rule's names, whatever its action;
- x86_64 and x32 share AUDIT_ARCH_X86_64: bit 30 of the number tells them apart;
- on s390 and s390x syscall 0 is the multiplexer unknown numbers end up as: ENOSYS.

Our layout is simpler than runc's (which builds from the end to allow long jumps): a
dispatch on the architecture, then per architecture a section ending in its own `ja`
to the filter and `ret ERRNO(ENOSYS)`, so every conditional jump is short.
"""

from __future__ import annotations

from ociruntime.errors import RuntimeFailure
from ociruntime.kernel.constants import SECCOMP_RET_ERRNO

ENOSYS = 38
X32_SYSCALL_BIT = 0x40000000
AUDIT_ARCH_X86_64 = 0xC000003E  # = SCMP_ARCH_X86_64; SCMP_ARCH_X32 is a fake value
#: Classic BPF opcodes (include/uapi/linux/bpf_common.h): ld word abs, jeq/jgt/jset k, ja,
#: ret k; and the offsets of `nr` and `arch` in struct seccomp_data.
LD_W_ABS, JEQ_K, JGT_K, JSET_K, JA, RET_K = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
NR, ARCH = 0, 4
PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")

#: An instruction before assembly: (code, jt, jf, k); jt/jf (and a `ja`'s k) may be a
#: label, a string naming the instruction after a ("label", name) marker.
Insn = tuple


def enosys_stub(sc, spec: dict, log) -> list[tuple[int, int, int, int]]:  # noqa: ANN001
    """The stub's instructions for `spec` (linux.seccomp), [] when runc adds none.
    `sc` is pyseccomp, `log` the runtime's LOG."""
    if spec.get("defaultAction") in PERMISSIVE or spec.get("defaultErrnoRet") == ENOSYS:
        return []
    highest = _highest_numbers(sc, spec, log)
    if not highest:
        return []
    program: list[Insn] = [(LD_W_ABS, 0, 0, ARCH)]
    program += [(JEQ_K, f"arch{n}", 0, audit) for n, audit in enumerate(highest)]
    program.append((JA, 0, 0, "filter"))
    for n, (audit, numbers) in enumerate(highest.items()):
        program += [("label", f"arch{n}"), *_section(sc, audit, numbers, f"{n}")]
    program.append(("label", "filter"))
    return _assemble(program)


def _highest_numbers(sc, spec: dict, log) -> dict[int, dict[int, int]]:  # noqa: ANN001
    """AUDIT_ARCH -> {SCMP_ARCH: the highest syscall number the profile names there},
    for the listed architectures (validated already: seccomp._add_architectures)."""
    names = {name for rule in spec.get("syscalls") or [] for name in rule.get("names") or []}
    result: dict[int, dict[int, int]] = {}
    for arch in spec.get("architectures") or []:
        scmp = getattr(sc.Arch, arch[len("SCMP_ARCH_") :])
        audit = AUDIT_ARCH_X86_64 if arch == "SCMP_ARCH_X32" else scmp
        top = max((sc.resolve_syscall(scmp, name) for name in names), default=0)
        if top > 0:
            result.setdefault(audit, {})[scmp] = top
        else:
            log.warning(f"seccomp: could not find any syscalls for arch {arch}")
    return result


def _section(sc, audit: int, numbers: dict[int, int], n: str) -> list[Insn]:  # noqa: ANN001
    """One architecture's checks on the syscall number: above its highest -> ENOSYS."""
    enosys, onward = f"enosys{n}", f"filter{n}"
    insns: list[Insn] = [(LD_W_ABS, 0, 0, NR)]
    if set(numbers) & {sc.Arch.S390, sc.Arch.S390X}:
        insns.append((JEQ_K, enosys, 0, 0))  # the multiplexer: an unknown syscall
    if audit == AUDIT_ARCH_X86_64:
        x86_64, x32 = numbers.get(sc.Arch.X86_64), numbers.get(sc.Arch.X32)
        if x86_64 is not None and x32 is not None:
            insns += [(JSET_K, f"x32{n}", 0, X32_SYSCALL_BIT),
                      (JGT_K, enosys, onward, x86_64), ("label", f"x32{n}"),
                      (JGT_K, enosys, onward, x32)]  # fmt: skip
        elif x86_64 is not None:  # an x32 syscall: not this section's business
            insns += [(JSET_K, onward, 0, X32_SYSCALL_BIT), (JGT_K, enosys, onward, x86_64)]
        else:
            insns += [(JSET_K, 0, onward, X32_SYSCALL_BIT), (JGT_K, enosys, onward, x32)]
    else:
        (top,) = numbers.values()
        insns.append((JGT_K, enosys, onward, top))
    return [*insns, ("label", onward), (JA, 0, 0, "filter"), ("label", enosys),
            (RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]  # fmt: skip


def _assemble(program: list[Insn]) -> list[tuple[int, int, int, int]]:
    """Resolve the labels into jump offsets (conditional ones must fit in a byte)."""
    at: dict[str, int] = {}
    insns: list[Insn] = []
    for item in program:
        if item[0] == "label":
            at[item[1]] = len(insns)  # the next instruction's index
        else:
            insns.append(item)

    def offset(target: int | str, index: int, limit: int) -> int:
        if isinstance(target, int):
            return target
        distance = at[target] - index - 1
        if not 0 <= distance <= limit:
            raise RuntimeFailure(f"seccomp: the -ENOSYS stub's jump to {target} is too long")
        return distance

    out = []
    for index, (code, jt, jf, k) in enumerate(insns):
        if code == JA:
            out.append((code, 0, 0, offset(k, index, 0xFFFFFFFF)))
        else:
            out.append((code, offset(jt, index, 255), offset(jf, index, 255), k))
    return out
