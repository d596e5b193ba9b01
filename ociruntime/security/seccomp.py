"""`linux.seccomp`: the filter, built with libseccomp through `pyseccomp`.

`build` runs in `create` before the fork (so every error is create's, naming the field,
and the binding is imported while the host's site-packages are reachable); the init only
loads it, as late as runc 1.1.5 does it (see init.py). This module imports nothing
heavy itself: `pyseccomp` is imported by `build`, i.e. only for configs with linux.seccomp.
create and exec reach `build` through seccomp_cache.filter_for, which builds a profile
once and loads its program from the state root after that (no pyseccomp then).

The translation follows runc's libcontainer/seccomp/seccomp_linux.go: SCMP_ACT_KILL is
kill-thread; ERRNO and TRACE return errnoRet (defaultErrnoRet for the default action) or
EPERM; unknown syscall names are skipped with a debug line; a rule whose action equals
the default action is skipped (libseccomp refuses it); several args on one rule are ANDed,
unless one index appears twice, then each arg becomes a rule of its own (ORed), as runc;
libseccomp's no_new_privs attribute is cleared (the config's noNewPrivileges decides).

libseccomp only builds: its BPF program is exported (seccomp_export_bpf), the -ENOSYS
stub of runc's patchbpf goes in front of it (seccomp_stub.py: a syscall newer than the
profile fails with ENOSYS, not the default errno, so glibc falls back), and the init
loads the result with seccomp(2) itself, with the config's flags (TSYNC, LOG,
SPEC_ALLOW) and NEW_LISTENER when a rule notifies.

SCMP_ACT_NOTIFY (seccomp user notification): the filter is loaded with
SECCOMP_FILTER_FLAG_NEW_LISTENER and the kernel returns the listener ("notify") fd;
`Filter.hand_over` passes it to the runtime's parent side, which sends it to the agent at
`listenerPath` (see seccomp_notify.py for how and why there). runc 1.1.5's rules: NOTIFY
needs libseccomp API level 6, is refused as the default action and for `write` (the
hand-over itself writes to the parent after the filter is on), and needs a listenerPath;
a listenerPath without any NOTIFY rule is ignored.
"""

from __future__ import annotations

import os
import sys

from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls
from ociruntime.kernel.constants import (
    SECCOMP_FILTER_FLAG_LOG,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

EPERM = 1
EEXIST = 17

#: Actions, operators and flags as features.json names them.
ACTIONS = (
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
)
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
#: The architectures libseccomp 2.5 knows (pyseccomp.Arch has a constant for each).
ARCHS = (
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
)
#: flag -> libseccomp attribute (pyseccomp.Attr): CTL_TSYNC, CTL_LOG, CTL_SSB.
FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 4,
    "SECCOMP_FILTER_FLAG_LOG": 6,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,
}
KNOWN_FLAGS = (*FLAG_ATTRS, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
#: flag -> seccomp(2)'s flag bit, for loading the filter ourselves
FLAG_BITS = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
}
_ATTR_CTL_NNP = 3
#: The libseccomp pyseccomp loads (_import_pyseccomp; seccomp_cache.py keys on its file)
LIBSECCOMP_SONAME = "libseccomp.so.2"
_PTR = "config.json: /linux/seccomp"


def features() -> dict:
    return {
        "enabled": True,
        "actions": list(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": list(ARCHS),
        "knownFlags": list(KNOWN_FLAGS),
        "supportedFlags": list(FLAG_ATTRS),
    }


def _action(sc, name: str, errno_ret: int | None, where: str) -> int:  # noqa: ANN001
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return sc.KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return sc.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return sc.TRAP
    if name == "SCMP_ACT_ALLOW":
        return sc.ALLOW
    if name == "SCMP_ACT_LOG":
        return sc.LOG
    if name == "SCMP_ACT_ERRNO":
        return sc.ERRNO(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return sc.TRACE(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_NOTIFY":
        return sc.NOTIFY
    raise RuntimeFailure(f"{_PTR}/{where}: unknown seccomp action {name!r}")


def _import_pyseccomp():  # noqa: ANN202 - the module
    """Import pyseccomp, fast. At import it finds libc and libseccomp with
    ctypes.util.find_library, whose module imports subprocess, shutil and tempfile and
    which runs `ldconfig -p` (~20 ms on every create with seccomp). The sonames are
    stable, so during the import a stand-in ctypes.util tries them first and falls back
    to the real find_library only if they do not load."""
    import ctypes

    known = {"c": "libc.so.6", "seccomp": LIBSECCOMP_SONAME}

    def find_library(name: str) -> str | None:
        soname = known.get(name)
        if soname is not None:
            try:
                ctypes.CDLL(soname)
                return soname
            except OSError:
                pass
        sys.modules.pop("ctypes.util", None)
        import ctypes.util as real

        return real.find_library(name)

    stub = type(sys)("ctypes.util")
    stub.find_library = find_library  # type: ignore[attr-defined]
    had = sys.modules.get("ctypes.util")
    sys.modules["ctypes.util"] = had or stub
    if had is None:
        ctypes.util = stub  # type: ignore[attr-defined]
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as e:
        raise RuntimeFailure(f"{_PTR}: libseccomp is unavailable: {e}") from None
    finally:
        if sys.modules.get("ctypes.util") is stub:
            del sys.modules["ctypes.util"]
            del ctypes.util  # type: ignore[attr-defined]
    return pyseccomp


def sock_filters(program: list[tuple[int, int, int, int]]) -> bytes:
    """(code, jt, jf, k) instructions as the kernel reads them: struct sock_filter
    {u16 code; u8 jt; u8 jf; u32 k} in the machine's byte order."""
    order = sys.byteorder
    return b"".join(
        code.to_bytes(2, order) + bytes((jt, jf)) + k.to_bytes(4, order)
        for code, jt, jf, k in program
    )


class Filter:
    """A built filter, not loaded yet: libseccomp's program with the -ENOSYS stub in front
    (see seccomp_stub.py), the seccomp(2) flags the config asks for, and, when it has
    SCMP_ACT_NOTIFY rules, the agent its notify fd goes to: `listener` (listenerPath)
    and `metadata` (listenerMetadata). Loading needs nothing imported: the program is
    the bytes of its instructions, made in create (or exec) before the fork."""

    def __init__(self, program: list[tuple[int, int, int, int]], flags: int,
                 listener: str | None, metadata: str) -> None:  # fmt: skip
        self._program = sock_filters(program)
        self.flags = flags
        self.listener, self.metadata = listener, metadata
        self._notify_fd = -1

    @classmethod
    def from_bytes(cls, program: bytes, flags: int, listener: str | None,
                   metadata: str) -> Filter:  # fmt: skip
        """A filter whose program is `program_bytes()` of another (seccomp_cache.py)."""
        filt = cls([], flags, listener, metadata)
        filt._program = bytes(program)
        return filt

    def program_bytes(self) -> bytes:
        """The program as seccomp(2) reads it: struct sock_filter after struct sock_filter,
        in the host's byte order (what seccomp_cache.py stores)."""
        return self._program

    def __len__(self) -> int:
        return len(self._program) // 8

    def load(self) -> None:
        """Install the filter in this process (OSError if the kernel refuses it)."""
        self._notify_fd = syscalls.seccomp_set_mode_filter(self.flags, self._program)

    def hand_over(self, report: Callable[[int], None]) -> None:
        """After `load`, with a listener: report the notify fd's number to the runtime's
        parent side, which copies the fd out of this process (pidfd_getfd) and sends it to
        the agent; then close this process's copy (protocol.StageEnd.report_seccomp_fd),
        so the container never holds its own notify fd."""
        if self.listener is None:
            return
        if self._notify_fd < 0:
            raise RuntimeFailure(f"{_PTR}: the loaded filter has no notify fd")
        fd, self._notify_fd = self._notify_fd, -1
        report(fd)


def build(spec: dict, log=None) -> Filter:  # noqa: ANN001 - the log: LOG or a recorder
    """The libseccomp filter for `linux.seccomp` (not loaded yet). Its debug and warning
    lines go to `log` (default the runtime's LOG; seccomp_cache.py records them)."""
    sc = _import_pyseccomp()
    if log is None:
        from ociruntime.log import LOG as log

    listener = _notify_listener(sc, spec)
    default = _action(
        sc, spec.get("defaultAction", ""), spec.get("defaultErrnoRet"), "defaultAction"
    )
    try:
        filt = sc.SyscallFilter(default)
        filt.set_attr(_ATTR_CTL_NNP, 0)
    except OSError as e:
        raise RuntimeFailure(f"{_PTR}/defaultAction: {e.strerror}") from None
    _add_architectures(sc, filt, spec.get("architectures") or [])
    _set_flags(filt, spec.get("flags") or [])
    notifies = False  # a NOTIFY rule is in the filter: libseccomp then makes a listener
    for i, rule in enumerate(spec.get("syscalls") or []):
        notifies = _add_rule(sc, filt, default, rule, f"syscalls/{i}", log) or notifies
    if listener is not None and not notifies:
        # Every NOTIFY rule named only syscalls unknown here: no listener fd to send.
        # (runc 1.1.5 asks the kernel for one anyway and sends an fd that never fires.)
        log.debug("no SCMP_ACT_NOTIFY rule names a known syscall: listenerPath not used")
        listener = None
    from ociruntime.security import seccomp_stub

    program = seccomp_stub.enosys_stub(sc, spec, log) + _export(sc, filt)
    return Filter(program, _load_flags(spec, listener is not None), listener,
                  spec.get("listenerMetadata") or "")  # fmt: skip


def _export(sc, filt) -> list[tuple[int, int, int, int]]:  # noqa: ANN001 - pyseccomp's
    """libseccomp's BPF program for the filter (seccomp_export_bpf, through a memfd), as
    (code, jt, jf, k) instructions in the host's byte order."""
    import ctypes  # loaded by pyseccomp already

    lib = sc._libseccomp
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_export_bpf.restype = ctypes.c_int
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(filt._filter, fd)
        if rc < 0:
            raise RuntimeFailure(f"{_PTR}: exporting the filter: {os.strerror(-rc)}")
        data = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
    order = sys.byteorder
    return [
        (int.from_bytes(data[i : i + 2], order), data[i + 2], data[i + 3],
         int.from_bytes(data[i + 4 : i + 8], order))
        for i in range(0, len(data) - len(data) % 8, 8)
    ]  # fmt: skip


def _load_flags(spec: dict, listens: bool) -> int:
    """seccomp(2)'s flags: the config's (validated by _set_flags), NEW_LISTENER with a
    notify rule, and with TSYNC too TSYNC_ESRCH (the kernel refuses TSYNC with a
    listener otherwise; libseccomp adds it the same way)."""
    flags = 0
    for flag in spec.get("flags") or []:
        flags |= FLAG_BITS[flag]
    if listens:
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER
        if flags & SECCOMP_FILTER_FLAG_TSYNC:
            flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH
    return flags


def _add_architectures(sc, filt, archs: list[str]) -> None:  # noqa: ANN001 - pyseccomp's
    for i, arch in enumerate(archs):
        number = getattr(sc.Arch, arch[len("SCMP_ARCH_") :], None)
        if not arch.startswith("SCMP_ARCH_") or not isinstance(number, int) or not number:
            raise RuntimeFailure(f"{_PTR}/architectures/{i}: unknown architecture {arch!r}")
        try:
            filt.add_arch(number)
        except OSError as e:
            if e.errno != EEXIST:  # the native one is there already (runc ignores it too)
                raise RuntimeFailure(f"{_PTR}/architectures/{i}: {arch}: {e.strerror}") from None


def _set_flags(filt, flags: list[str]) -> None:  # noqa: ANN001 - a pyseccomp filter
    for i, flag in enumerate(flags):
        attr = FLAG_ATTRS.get(flag)
        if attr is None:
            raise RuntimeFailure(f"{_PTR}/flags/{i}: seccomp flag {flag!r} is not supported")
        try:
            filt.set_attr(attr, 1)
        except OSError as e:
            raise RuntimeFailure(f"{_PTR}/flags/{i}: {flag}: {e.strerror}") from None


def _add_rule(sc, filt, default: int, rule: dict, where: str, log) -> bool:  # noqa: ANN001
    """One of linux.seccomp.syscalls; True if it put a NOTIFY rule in the filter."""
    action = _action(sc, rule.get("action", ""), rule.get("errnoRet"), f"{where}/action")
    if action == default:
        return False  # libseccomp refuses it; runc skips it as well
    groups = _conditions(sc, rule.get("args") or [], where)
    notifies = False
    for name in rule.get("names") or []:
        number = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if number == -1:  # __NR_SCMP_ERROR; other negatives are other arches' syscalls
            log.debug(f"unknown seccomp syscall {name!r} ignored")
            continue
        for group in groups:
            try:
                filt.add_rule(action, number, *group)
            except OSError as e:
                raise RuntimeFailure(
                    f"{_PTR}/{where}: adding the rule for {name}: {e.strerror}"
                ) from None
            notifies = notifies or action == sc.NOTIFY
    return notifies


def _conditions(sc, args: list[dict], where: str) -> list[list]:  # noqa: ANN001
    """The rule's argument conditions, grouped as runc does: one index twice -> each
    condition is a rule of its own (OR), else one rule with all of them (AND)."""
    conditions, counts = [], [0] * 6
    for j, arg in enumerate(args):
        index, op = arg.get("index", 0), OPERATORS.get(arg.get("op", ""))
        if op is None:
            raise RuntimeFailure(f"{_PTR}/{where}/args/{j}/op: unknown operator {arg['op']!r}")
        if not 0 <= index < 6:
            raise RuntimeFailure(f"{_PTR}/{where}/args/{j}/index: {index} is not in 0..5")
        counts[index] += 1
        conditions.append(sc.Arg(index, op, arg.get("value", 0), arg.get("valueTwo", 0)))
    return [[c] for c in conditions] if max(counts) > 1 else [conditions]


def _notify_listener(sc, spec: dict) -> str | None:  # noqa: ANN001 - the pyseccomp module
    """listenerPath if a rule uses SCMP_ACT_NOTIFY (runc 1.1.5's checks), else None: a
    listenerPath without NOTIFY rules is ignored, as runc does."""
    if spec.get("defaultAction") == "SCMP_ACT_NOTIFY":
        raise RuntimeFailure(
            f"{_PTR}/defaultAction: SCMP_ACT_NOTIFY cannot be used as default action"
        )
    notifying = [
        i for i, rule in enumerate(spec.get("syscalls") or [])
        if rule.get("action") == "SCMP_ACT_NOTIFY"
    ]  # fmt: skip
    if not notifying:
        return None
    first = f"/linux/seccomp/syscalls/{notifying[0]}"
    api = sc.get_api()
    if api < 6:
        raise RuntimeFailure(
            f"config.json: {first}/action: SCMP_ACT_NOTIFY needs libseccomp API level 6 "
            f"(libseccomp >= 2.5.0, Linux >= 5.7), this one has {api}"
        )
    for i in notifying:
        if "write" in (spec["syscalls"][i].get("names") or []):
            raise RuntimeFailure(
                f"{_PTR}/syscalls/{i}/names: SCMP_ACT_NOTIFY cannot be used for the write "
                "syscall (the runtime hands the notify fd over by writing after the load)"
            )
    listener = spec.get("listenerPath") or ""
    if not listener:
        raise RuntimeFailure(
            f"{_PTR}/listenerPath: not set, but {first} is SCMP_ACT_NOTIFY "
            "(its notify fd needs an agent to go to)"
        )
    return listener
