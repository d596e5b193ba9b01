"""What the kernel keeps per task besides identity: `linux.personality`,
`process.scheduler`, `process.ioPriority`, `process.execCPUAffinity`, and the LSM labels
(`process.apparmorProfile`, `process.selinuxLabel`, applied through `ociruntime.security.lsm`).

`plan` runs where a refusal is cheap (create before it makes anything, exec before it
forks): it checks every value as runc 1.2 does, names the field when one is wrong, and
turns names into numbers. The `ProcessAttrs` it returns is applied between fork and exec
by the init or exec's child, which cannot import anything any more.

When each part applies, and why:
- personality, scheduler, I/O priority, labels: `apply`, after the rlimits and before
  the session keyring, any seccomp filter and the user switch, while the process still
  holds CAP_SYS_NICE (negative nice, real-time policies, the RT I/O class) and before a
  filter could forbid the calls. Each survives execve and is inherited by children (a
  SCHED_DEADLINE process cannot fork unless SCHED_FLAG_RESET_ON_FORK is given).
- execCPUAffinity (exec only; the spec says it does not apply to the init): `initial`
  before exec's child joins the container's cgroups, `final` right after. Without
  `final` the child goes back to the container's default: its cpuset's CPUs.
"""

from __future__ import annotations

import ctypes
import os

from ociruntime.cpulist import parse_cpu_list
from ociruntime.errors import RuntimeFailure, field_error_at
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import IOPRIO_CLASS_SHIFT

PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}  # PER_LINUX, PER_LINUX32
SCHED_POLICIES = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,  # in the spec, not in mainline kernels: sched_setattr says EINVAL
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}


class SchedAttr(ctypes.Structure):
    """struct sched_attr (SCHED_ATTR_SIZE_VER1: the util clamps stay 0, as runc's)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("policy", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("nice", ctypes.c_int32),
        ("priority", ctypes.c_uint32),
        ("runtime", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("period", ctypes.c_uint64),
        ("util_min", ctypes.c_uint32),
        ("util_max", ctypes.c_uint32),
    ]


class ProcessAttrs:
    """The validated attributes, ready for `apply` in the process that will exec.
    `proc_at` / `linux_at` are where plan found them ("config.json: /process"), so a
    refusal by the kernel names the field in the document the user wrote."""

    def __init__(self, proc_at: str = "/process", linux_at: str = "/linux") -> None:
        self.proc_at, self.linux_at = proc_at, linux_at
        self.personality: tuple[str, int] | None = None
        self.sched: tuple[str, SchedAttr] | None = None
        self.ioprio: tuple[str, int] | None = None
        self.initial_cpus: tuple[str, set[int]] | None = None
        self.final_cpus: tuple[str, set[int]] | None = None
        self.apparmor = ""
        self.selinux = ""

    def apply(self) -> None:
        """Labels first (SELinux's keycreate must precede the session keyring), then the
        personality, the scheduler and the I/O priority."""
        if self.selinux or self.apparmor:
            from ociruntime.security import lsm  # imported by `plan` already: no file access here

            lsm.set_selinux_labels(self.selinux, f"{self.proc_at}/selinuxLabel")
            lsm.apply_apparmor(self.apparmor, f"{self.proc_at}/apparmorProfile")
        steps = (
            (self.personality, sc.personality, f"{self.linux_at}/personality", "personality"),
            (self.sched, sc.sched_setattr, f"{self.proc_at}/scheduler", "sched_setattr"),
            (self.ioprio, sc.ioprio_set, f"{self.proc_at}/ioPriority", "ioprio_set"),
        )
        for value, call, where, syscall in steps:
            if value is not None:
                name, arg = value
                try:
                    call(arg)
                except OSError as e:
                    raise field_error_at(
                        where, f"{name}: {syscall}: {os.strerror(e.errno)}"
                    ) from None

    def set_initial_affinity(self) -> None:
        """Before exec's child joins the container's cgroups."""
        if self.initial_cpus is not None:
            _set_affinity(f"{self.proc_at}/execCPUAffinity/initial", *self.initial_cpus)

    def set_final_affinity(self, cgroup_dirs: list[str]) -> None:
        """Right after the join: `final`, or back to the container's default when only
        `initial` moved us."""
        if self.final_cpus is not None:
            _set_affinity(f"{self.proc_at}/execCPUAffinity/final", *self.final_cpus)
        elif self.initial_cpus is not None:
            text = container_cpus(cgroup_dirs)
            try:
                cpus = set(parse_cpu_list(text))
            except ValueError as e:
                raise RuntimeFailure(f"the container's cpuset: {e}") from None
            _set_affinity(None, text, cpus)


def _set_affinity(where: str | None, text: str, cpus: set[int]) -> None:
    """`where` is the field the CPUs come from; None for the container's own cpuset."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as e:
        reason = f"{text!r}: sched_setaffinity: {e.strerror}"
        if where is None:
            raise RuntimeFailure(f"the container's CPUs {reason}") from None
        raise field_error_at(where, reason) from None


def container_cpus(cgroup_dirs: list[str]) -> str:
    """The CPUs of the container's cpuset cgroup (v1 or v2), else every online CPU."""
    for directory in cgroup_dirs:
        for name in ("cpuset.effective_cpus", "cpuset.cpus.effective"):
            try:
                with open(os.path.join(directory, name)) as f:
                    text = f.read().strip()
            except OSError:
                continue
            if text:
                return text
    with open("/sys/devices/system/cpu/online") as f:
        return f.read().strip()


# --- plan: validation, where nothing has been made yet -------------------------------------


def plan(proc: dict, linux: dict, proc_at: str, linux_at: str, warn: bool = False) -> ProcessAttrs:
    """Check and resolve the fields. `proc_at` / `linux_at` prefix the JSON pointers in
    errors (e.g. "config.json: /process"); `warn` logs what is accepted but ignored (at
    create, as runc)."""
    attrs = ProcessAttrs(proc_at, linux_at)
    if linux.get("personality") is not None:
        attrs.personality = _personality(linux["personality"], f"{linux_at}/personality", warn)
    if proc.get("scheduler"):
        attrs.sched = _scheduler(proc["scheduler"], f"{proc_at}/scheduler")
    if proc.get("ioPriority"):
        attrs.ioprio = _io_priority(proc["ioPriority"], f"{proc_at}/ioPriority")
    affinity = proc.get("execCPUAffinity")
    if affinity:
        _require(isinstance(affinity, dict), f"{proc_at}/execCPUAffinity", "must be an object")
        for key in ("initial", "final"):
            text = affinity.get(key)
            if not text:
                continue
            where = f"{proc_at}/execCPUAffinity/{key}"
            _require(isinstance(text, str), where, "must be a string")
            try:
                setattr(attrs, f"{key}_cpus", (text, set(parse_cpu_list(text))))
            except ValueError as e:
                raise field_error_at(where, str(e)) from None
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        from ociruntime.security import lsm  # before the fork: the child cannot import it

        attrs.apparmor = _string(proc.get("apparmorProfile"), f"{proc_at}/apparmorProfile")
        attrs.selinux = _string(proc.get("selinuxLabel"), f"{proc_at}/selinuxLabel")
        lsm.check_selinux_label(attrs.selinux, f"{proc_at}/selinuxLabel")
    return attrs


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise field_error_at(where, message)


def _string(value: object, where: str) -> str:
    _require(value is None or isinstance(value, str), where, "must be a string")
    return value or ""  # type: ignore[return-value]


def _int(spec: dict, key: str, where: str, lo: int, hi: int) -> int:
    value = spec.get(key, 0)
    ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    _require(ok, f"{where}/{key}", f"must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def _personality(spec: object, where: str, warn: bool) -> tuple[str, int]:
    _require(isinstance(spec, dict), where, "must be an object")
    domain = spec.get("domain")  # type: ignore[union-attr]
    if domain not in PERSONALITY_DOMAINS:
        raise field_error_at(
            f"{where}/domain", f"invalid personality domain {domain!r} (LINUX or LINUX32)"
        )
    flags = spec.get("flags")  # type: ignore[union-attr]
    if flags and warn:
        from ociruntime.log import LOG

        # runc ignores them too (the spec defines none yet).
        LOG.warning(f"{where}/flags: ignoring unsupported personality flags {flags}")
    return domain, PERSONALITY_DOMAINS[domain]


def _scheduler(spec: object, where: str) -> tuple[str, SchedAttr]:
    _require(isinstance(spec, dict), where, "must be an object")
    assert isinstance(spec, dict)
    policy = spec.get("policy")
    if not policy:
        raise field_error_at(f"{where}/policy", "scheduler policy is required")
    if policy not in SCHED_POLICIES:
        raise field_error_at(f"{where}/policy", f"invalid scheduler policy: {policy!r}")
    nice = _int(spec, "nice", where, -(2**31), 2**31 - 1)
    if not -20 <= nice <= 19:  # runc's checks and words, in its order
        raise field_error_at(f"{where}/nice", f"invalid scheduler.nice: {nice}")
    priority = _int(spec, "priority", where, -(2**31), 2**31 - 1)
    if priority != 0 and policy not in ("SCHED_FIFO", "SCHED_RR"):
        raise field_error_at(f"{where}/priority", "scheduler.priority can only be specified "
                     "for SchedFIFO or SchedRR policy")  # fmt: skip
    dl = [_int(spec, k, where, 0, 2**64 - 1) for k in ("runtime", "deadline", "period")]
    if policy != "SCHED_DEADLINE" and any(dl):
        raise field_error_at(where, "scheduler runtime/deadline/period can only be "
                     "specified for SchedDeadline policy")  # fmt: skip
    flags = 0
    names = spec.get("flags") or []
    _require(isinstance(names, list), f"{where}/flags", "must be a list")
    for index, name in enumerate(names):
        if name not in SCHED_FLAGS:
            raise field_error_at(f"{where}/flags/{index}", f"invalid scheduler flag: {name!r}")
        flags |= SCHED_FLAGS[name]
    # The kernel takes the priority unsigned (as runc passes it): it refuses what is wrong.
    attr = SchedAttr(ctypes.sizeof(SchedAttr), SCHED_POLICIES[policy], flags, nice,
                     priority & 0xFFFFFFFF, *dl)  # fmt: skip
    return policy, attr


def _io_priority(spec: object, where: str) -> tuple[str, int]:
    _require(isinstance(spec, dict), where, "must be an object")
    assert isinstance(spec, dict)
    cls = spec.get("class")
    if cls not in IOPRIO_CLASSES:
        raise field_error_at(f"{where}/class", f"invalid io priority class: {cls!r}")
    priority = _int(spec, "priority", where, -(2**31), 2**31 - 1)
    if not 0 <= priority <= 7:
        raise field_error_at(f"{where}/priority", f"invalid ioPriority.Priority: {priority}"
                     " (0, the highest, to 7)")  # fmt: skip
    return f"{cls} {priority}", IOPRIO_CLASSES[cls] << IOPRIO_CLASS_SHIFT | priority
