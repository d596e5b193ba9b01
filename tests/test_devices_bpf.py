"""The cgroup v2 device policy: the eBPF program built from the rules.

Its answers are checked two ways: by a small interpreter of the instructions it uses,
against the policy written plainly in Python (`decide`: per access asked, the last
matching rule wins), over hypothesis-generated rule lists; and by the kernel itself,
attaching it to a fresh cgroup v2 directory and opening devices from a process inside
(on this hybrid host the v2 hierarchy is /sys/fs/cgroup/unified: device programs apply
there too).
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociruntime.cgroups import cgroupfs
from ociruntime.cgroups import devices_bpf as d

MASK = (1 << 64) - 1


def run(insns: list[tuple[int, int, int, int, int]], kind: str, major: int, minor: int,
        access: str) -> int:  # fmt: skip
    """Interpret the program on one request (the few opcodes devices_bpf emits)."""
    ctx = [
        sum(d.ACCESS[a] for a in access) << 16 | (d.DEV_BLOCK if kind == "b" else d.DEV_CHAR),
        major, minor,
    ]  # fmt: skip
    reg = [0] * 11
    pc = steps = 0
    while True:
        steps += 1
        assert steps < 100_000
        code, dst, src, off, imm = insns[pc]
        pc += 1
        if code == d.LDX_W:
            assert src == d.R1 and off in (0, 4, 8)
            reg[dst] = ctx[off // 4]
        elif code == d.AND32_K:
            reg[dst] = reg[dst] & imm & 0xFFFFFFFF
        elif code == d.RSH32_K:
            reg[dst] = (reg[dst] & 0xFFFFFFFF) >> imm
        elif code == d.MOV32_K:
            reg[dst] = imm & 0xFFFFFFFF
        elif code == d.MOV32_X:
            reg[dst] = reg[src] & 0xFFFFFFFF
        elif code == d.JEQ_K:
            pc += off if reg[dst] == imm & MASK else 0
        elif code == d.JNE_K:
            pc += off if reg[dst] != imm & MASK else 0
        elif code == d.JA:
            pc += off
        elif code == d.EXIT:
            return reg[d.R0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def reachable(insns: list) -> bool:
    """Every instruction reachable (the verifier refuses dead code)."""
    seen, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in seen:
            continue
        seen.add(pc)
        code, _, _, off, _ = insns[pc]
        if code == d.EXIT:
            continue
        if code == d.JA:
            todo.append(pc + 1 + off)
        elif code in (d.JEQ_K, d.JNE_K):
            todo += [pc + 1, pc + 1 + off]
        else:
            todo.append(pc + 1)
    return seen == set(range(len(insns)))


numbers = st.one_of(st.none(), st.integers(0, 3))


def _no_numbers_for_all(rules: list[d.Rule]) -> list[d.Rule]:
    """A rule of type "a" (every device) has no major nor minor."""
    for rule in rules:
        if rule.kind == "a":
            rule.major = rule.minor = None
    return rules


rules_strategy = st.lists(
    st.builds(d.Rule, st.booleans(), st.sampled_from("abc"), numbers, numbers,
              st.sets(st.sampled_from("rwm"), min_size=1).map("".join)),
    max_size=8,
).map(_no_numbers_for_all)  # fmt: skip


@pytest.mark.pure
@settings(max_examples=300, deadline=None)
@given(rules=rules_strategy)
def test_program_answers_as_the_policy(rules: list[d.Rule]) -> None:
    insns = d.program(rules)
    assert reachable(insns)
    for kind in "bc":
        for major in range(4):
            for minor in range(4):
                for access in ("r", "w", "m", "rw", "rwm", "wm"):
                    expected = d.decide(rules, kind, major, minor, access)
                    assert run(insns, kind, major, minor, access) == int(expected), (
                        kind, major, minor, access)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(rules=rules_strategy)
def test_the_verifier_accepts_every_program(rules: list[d.Rule]) -> None:
    os.close(d.load(d.encode(d.program(rules))))


@pytest.mark.pure
def test_runc_default_policy() -> None:
    rules = [d.Rule.parse(a, t) for a, t in cgroupfs.device_rules(
        {"devices": [{"allow": False, "access": "rwm"}]})]  # fmt: skip
    assert d.decide(rules, "c", 1, 3, "rw")  # /dev/null
    assert d.decide(rules, "c", 136, 7, "rw")  # /dev/pts/7
    assert d.decide(rules, "b", 8, 0, "m") and not d.decide(rules, "b", 8, 0, "r")
    assert not d.decide(rules, "c", 1, 1, "r")  # /dev/mem


def v2_root() -> str:
    v2 = [h.mountpoint for h in cgroupfs.hierarchies() if h.is_v2]
    if not v2:
        pytest.skip("no cgroup v2 hierarchy mounted")
    return v2[0]


def test_the_kernel_enforces_the_program() -> None:
    """A process in a v2 cgroup with the program of "deny all; runc's defaults; deny
    writes to /dev/null" may read /dev/null and /dev/zero, not write /dev/null, not
    open another device (/dev/kmsg, or whatever this host has)."""
    path = os.path.join(v2_root(), f"ocitest-bpf-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        rules = cgroupfs.device_rules({"devices": [
            {"allow": False, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]})  # fmt: skip
        d.apply(path, rules)

        def enter() -> None:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write("0")

        other = next(p for p in ["/dev/kmsg", "/dev/mem", "/dev/port"]
                     + [f"/dev/{n}" for n in sorted(os.listdir("/sys/block"))]
                     if os.path.exists(p))  # fmt: skip
        script = (
            f"echo x > /dev/null && echo wrote-null; head -c1 /dev/null && echo read-null;"
            f" head -c1 /dev/zero | wc -c; head -c0 {other} 2>/dev/null || echo no-other"
        )
        r = subprocess.run(["sh", "-c", script], preexec_fn=enter, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
        assert r.stdout.split() == ["read-null", "1", "no-other"], r
        assert "/dev/null" in r.stderr and "not permitted" in r.stderr
    finally:
        os.rmdir(path)
