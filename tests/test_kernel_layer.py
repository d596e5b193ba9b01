"""The kernel layer (ociruntime.kernel) and what the runtime asks of it, without root.

Pure tests: the syscall layer is replaced by a recording fake (tests/kernelfake.py), so
they check which mount flags a `mounts` entry becomes, the order namespaces are joined
and created in, and the order of the capability and user-switch steps; and they compare
the per-architecture syscall numbers and the flag values with the kernel headers.
They need no root and change nothing on the host (run them with `-m pure`).
"""

from __future__ import annotations

import ast
import ctypes
import errno
import importlib.util
import os
import posix
import re
import struct
from pathlib import Path

import pytest
from kernelfake import RecordingKernel, install

from ociruntime.cgroups import devices_bpf
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import constants, numbers
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    KEY_OTH_SEARCH,
    KEY_USR_SEARCH,
    MNT_DETACH,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
)
from ociruntime.process import namespaces, procattrs, settings
from ociruntime.rootfs import mounts
from ociruntime.security import capabilities

pytestmark = pytest.mark.pure

PACKAGE = Path(__file__).resolve().parent.parent / "ociruntime"
INCLUDE = Path("/usr/include")


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> RecordingKernel:
    return install(monkeypatch)


# --- the syscall numbers -------------------------------------------------------------


def _header_numbers(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\b", line)
        if m:
            out[m[1]] = int(m[2])
    return out


@pytest.mark.parametrize(
    ("machine", "header"),
    [
        ("x86_64", "x86_64-linux-gnu/asm/unistd_64.h"),
        ("aarch64", "asm-generic/unistd.h"),  # aarch64 has no table of its own
    ],
)
def test_syscall_numbers_match_the_kernel_headers(machine: str, header: str) -> None:
    path = INCLUDE / header
    if not path.exists():
        pytest.skip(f"{path} not installed (linux-libc-dev)")
    kernel = _header_numbers(path)
    ours = numbers.table_for(machine)
    wrong = {name: (n, kernel.get(name)) for name, n in ours.items() if kernel.get(name) != n}
    assert not wrong, f"{machine}: (ours, the kernel's): {wrong}"


def test_both_architectures_list_the_same_syscalls() -> None:
    assert set(numbers.TABLES["x86_64"]) == set(numbers.TABLES["aarch64"])


def test_the_numbers_in_use_are_this_machines() -> None:
    table = numbers.table_for(os.uname().machine)
    for name, number in table.items():
        assert getattr(numbers, "SYS_" + name.upper()) == number, name


def test_pivot_root_differs_between_the_architectures() -> None:
    """The bug this layer fixes: x86_64's 155 is not pivot_root on aarch64 (41)."""
    assert numbers.table_for("x86_64")["pivot_root"] == 155
    assert numbers.table_for("aarch64")["pivot_root"] == 41


def test_an_unknown_architecture_is_refused_by_name() -> None:
    with pytest.raises(RuntimeFailure) as e:
        numbers.table_for("mips")
    assert "'mips'" in str(e.value) and "aarch64 and x86_64" in str(e.value)


def _import_numbers_on(machine: str, monkeypatch: pytest.MonkeyPatch):
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, real.release, real.version, machine))
    monkeypatch.setattr(posix, "uname", lambda: fake)  # what numbers.py reads
    spec = importlib.util.spec_from_file_location("numbers_probe", numbers.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_is_chosen_at_import_from_uname(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _import_numbers_on("aarch64", monkeypatch)
    assert (probe.SYS_PIVOT_ROOT, probe.SYS_KEYCTL, probe.SYS_IOPRIO_SET) == (41, 219, 30)
    assert (probe.SYS_SCHED_SETATTR, probe.SYS_BPF, probe.SYS_OPENAT2) == (274, 280, 437)


def test_importing_on_an_unknown_architecture_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeFailure, match="unsupported architecture 'riscv32'"):
        _import_numbers_on("riscv32", monkeypatch)


# --- the flag values -----------------------------------------------------------------

_HEADERS = ("linux/mount.h", "linux/sched.h", "linux/prctl.h", "linux/openat2.h",
            "linux/keyctl.h", "linux/magic.h", "linux/fcntl.h", "linux/ioprio.h",
            "linux/seccomp.h", "linux/mempolicy.h", "sys/mount.h",
            "asm-generic/resource.h")  # fmt: skip
#: Not in any uapi header: include/linux/key.h (the kernel's own) defines them.
_NOT_IN_UAPI = {"KEY_USR_SEARCH", "KEY_OTH_SEARCH"}
#: Newer than the headers of an older distribution: Linux 6.9 added it after
#: MPOL_PREFERRED_MANY (checked as the enum's next value when the header lacks it).
_NEWER_THAN_HEADERS = {"MPOL_WEIGHTED_INTERLEAVE": ("MPOL_PREFERRED_MANY", 1)}


def _enum_values(text: str, first: str) -> dict[str, int]:
    """The members of the C enum that starts with `first`, counted from 0 (mempolicy.h's
    modes have no explicit values)."""
    body = text[text.index(first) :].split("}", 1)[0]
    names = [re.sub(r"/\*.*?\*/", "", part).strip() for part in body.split(",")]
    return {name: index for index, name in enumerate(n for n in names if n)}


def _header_constants() -> dict[str, int]:
    texts = {}
    for header in _HEADERS:
        # sys/mount.h (glibc's: MNT_DETACH) lives in the multiarch directory
        for path in [INCLUDE / header, *INCLUDE.glob(f"*-linux-gnu*/{header}")][:2]:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                m = re.match(r"\s*#\s*define\s+(\w+)\s+([^/]+?)\s*(?:/\*.*)?$", line) or re.match(
                    r"\s*(\w+)\s*=\s*([^,/]+?)\s*,?\s*(?:/\*.*)?$", line
                )
                if m:
                    texts.setdefault(m[1], m[2])
    values: dict[str, int] = {}
    mempolicy = INCLUDE / "linux/mempolicy.h"
    if mempolicy.exists():
        values.update(_enum_values(mempolicy.read_text(), "MPOL_DEFAULT"))
    for name, text in texts.items():
        expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[UL]+\b", r"\1", text)  # 1UL << 3
        expr = re.sub(r"\b0([0-7]+)\b", r"0o\1", expr)
        try:
            values[name] = int(eval(expr, {"__builtins__": {}}, {}))  # noqa: S307 - headers
        except Exception:  # noqa: BLE001 - macros, types: not our constants
            continue
    return values


def test_every_flag_value_matches_the_kernel_headers() -> None:
    if not (INCLUDE / "linux/mount.h").exists():
        pytest.skip("kernel headers not installed (linux-libc-dev)")
    kernel = _header_constants()
    ours = {n: v for n, v in vars(constants).items() if n.isupper()}
    for name, (before, step) in _NEWER_THAN_HEADERS.items():
        kernel.setdefault(name, kernel[before] + step)
    missing = sorted(set(ours) - set(kernel) - _NOT_IN_UAPI)
    assert not missing, f"not found in {_HEADERS}: {missing}"
    wrong = {n: (v, kernel[n]) for n, v in ours.items() if n in kernel and kernel[n] != v}
    assert not wrong, f"(ours, the kernel's): {wrong}"


_OWN_PREFIXES = ("MS_", "MOUNT_ATTR_", "CLONE_", "PR_", "SYS_", "KEYCTL_", "RESOLVE_",
                 "MNT_", "AT_", "FSCONFIG_", "FSMOUNT_", "FSOPEN_", "OPEN_TREE_",
                 "MOVE_MOUNT_", "RLIMIT_")  # fmt: skip


def _module_assignments(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                names.append(target.id)
    return names


def test_kernel_constants_are_defined_only_in_the_kernel_layer() -> None:
    defined = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "kernel" or path.name == "_config_validator.py":
            continue
        for name in _module_assignments(path):
            if name.startswith(_OWN_PREFIXES):
                defined.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert not defined


def test_raw_syscalls_are_made_only_in_the_kernel_layer() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "kernel":
            continue
        text = path.read_text()
        for pattern in (r"\.syscall\(", r"libc\.(mount|umount2|unshare|setns|prctl)\("):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(PACKAGE)}: {pattern}")
    assert not offenders


# --- the fake keeps to the layer's contract ------------------------------------------


def test_every_wrapper_exists_and_the_fake_has_the_same_parameters() -> None:
    import inspect

    for name in sc.WRAPPERS:
        real = inspect.signature(getattr(sc, name))
        fake = inspect.signature(getattr(RecordingKernel, name))
        assert list(real.parameters) == list(fake.parameters)[1:], name


def test_every_public_function_of_the_layer_is_in_the_contract() -> None:
    import inspect

    public = {n for n, v in vars(sc).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert public - set(sc.WRAPPERS) == {"fd_path"}  # pure: a path, no system call


def test_the_fixture_replaces_every_wrapper(fake_kernel: RecordingKernel) -> None:
    for name in sc.WRAPPERS:
        assert getattr(sc, name).__self__ is fake_kernel, name


# --- mounts: which flags an entry becomes --------------------------------------------


@pytest.fixture
def mounter(tmp_path: Path, fake_kernel: RecordingKernel):
    root = tmp_path / "rootfs"
    root.mkdir()
    m = mounts.Mounter(str(root), str(tmp_path), [], False, lambda: None)
    yield m, os.readlink(sc.fd_path(m.root_fd))
    m.close()


def _mounts(fake: RecordingKernel) -> list[tuple]:
    return fake.only("mount", "mount_setattr")


def test_tmpfs_entry_flags_and_data(mounter, fake_kernel: RecordingKernel) -> None:
    m, root = mounter
    m.mount_all([{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}])  # fmt: skip
    assert _mounts(fake_kernel) == [
        ("mount", "tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    ]


def _bind_src_on_data(m, tmp_path: Path, *options: str) -> None:
    """mount_all of one bind mount of tmp_path/src (made here) on /data."""
    (tmp_path / "src").mkdir()
    source = str(tmp_path / "src")
    m.mount_all([{"destination": "/data", "type": "bind", "source": source, "options": [*options]}])


def test_read_only_bind_is_a_bind_then_a_remount(
    mounter, tmp_path: Path, fake_kernel: RecordingKernel
) -> None:
    """A bind ignores every flag but MS_REC: `ro` takes a second, remount call."""
    m, root = mounter
    _bind_src_on_data(m, tmp_path, "rbind", "ro", "nosuid")
    assert _mounts(fake_kernel) == [
        ("mount", str(tmp_path / "src"), root + "/data", None, MS_BIND | MS_REC, None),
        ("mount", None, root + "/data", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, None),
    ]


def test_plain_bind_makes_no_remount(mounter, tmp_path: Path, fake_kernel) -> None:
    m, root = mounter
    (tmp_path / "file").write_text("x")
    m.mount_all([{"destination": "/etc/hosts", "source": "file", "options": ["bind"]}])
    assert _mounts(fake_kernel) == [
        ("mount", str(tmp_path / "file"), root + "/etc/hosts", None, MS_BIND, None)
    ]
    assert (Path(root) / "etc/hosts").is_file()  # the target is made a file, not a dir


def test_propagation_and_recursive_attributes_follow_the_mount(
    mounter, tmp_path: Path, fake_kernel: RecordingKernel
) -> None:
    m, root = mounter
    _bind_src_on_data(m, tmp_path, "rbind", "rprivate", "rro", "rnoexec")
    assert _mounts(fake_kernel) == [
        ("mount", str(tmp_path / "src"), root + "/data", None, MS_BIND | MS_REC, None),
        ("mount", None, root + "/data", None, constants.MS_PRIVATE | MS_REC, None),
        ("mount_setattr", root + "/data", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC, 0, True, 0),
    ]


#: runc's rule (mountPropagate, finalizeRootfs): a read-only /dev or tmpfs is mounted
#: read-write, filled, and remounted read-only last; any other read-only mount at once.
_RO_DEV_AND_TMPFS = [
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "ro"]},
    {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nodev"]},
]


def test_read_only_dev_and_tmpfs_are_mounted_read_write_first(
    mounter, fake_kernel: RecordingKernel
) -> None:
    m, root = mounter
    m.mount_all(_RO_DEV_AND_TMPFS)
    assert _mounts(fake_kernel) == [
        ("mount", "tmpfs", root + "/dev", "tmpfs", MS_NOSUID, ""),
        ("mount", "tmpfs", root + "/scratch", "tmpfs", 0, ""),
        ("mount", "sysfs", root + "/sys", "sysfs", MS_RDONLY | MS_NODEV, ""),
    ]


def test_the_deferred_read_only_remounts_come_last_in_the_config_order(
    tmp_path: Path, fake_kernel: RecordingKernel
) -> None:
    for name in ("dev", "scratch", "sys"):
        (tmp_path / name).mkdir()
    entries = [*_RO_DEV_AND_TMPFS, {"destination": "//dev/", "type": "bind", "source": "/x"}]
    mounts.remount_readonly_last(entries, str(tmp_path))
    kept = os.statvfs(tmp_path).f_flag & mounts._PRESERVED_STATVFS_FLAGS
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | kept
    assert fake_kernel.only("mount") == [
        ("mount", None, str(tmp_path / "dev"), None, flags, None),
        ("mount", None, str(tmp_path / "scratch"), None, flags, None),
    ]  # not /sys (already read-only), nor a /dev entry without `ro`


def test_a_failed_deferred_remount_names_the_entry(tmp_path: Path, fake_kernel) -> None:
    (tmp_path / "dev").mkdir()
    fake_kernel.fail["mount"] = errno.EBUSY
    with pytest.raises(RuntimeFailure, match=r"^config.json: /mounts/0: remounting /dev read-o"):
        mounts.remount_readonly_last(_RO_DEV_AND_TMPFS[:1], str(tmp_path))


def test_a_bind_over_proc_is_refused_before_any_mount(mounter, fake_kernel) -> None:
    m, _ = mounter
    with pytest.raises(RuntimeFailure, match="/mounts/0/destination"):
        m.mount_all([{"destination": "/proc/sys", "type": "bind", "source": "/tmp",
                      "options": ["rbind"]}])  # fmt: skip
    assert _mounts(fake_kernel) == []


def test_a_refused_mount_names_the_entry(mounter, fake_kernel: RecordingKernel) -> None:
    m, _ = mounter
    fake_kernel.fail["mount"] = errno.EPERM
    with pytest.raises(
        RuntimeFailure,
        match=r'^config.json: /mounts/0: error mounting "tmpfs" to rootfs at "/run" '
        r"\(type tmpfs\): .*not permitted$",
    ):
        m.mount_all([{"destination": "/run", "type": "tmpfs", "source": "tmpfs"}])


@pytest.mark.parametrize(
    ("name", "flags"),
    [("", 0), ("private", constants.MS_PRIVATE), ("rslave", MS_SLAVE | MS_REC),
     ("shared", constants.MS_SHARED), ("rshared", constants.MS_SHARED | MS_REC)],
)  # fmt: skip
def test_rootfs_propagation_flags(name: str, flags: int) -> None:
    assert mounts.rootfs_propagation({"rootfsPropagation": name}) == flags


def test_isolate_root_makes_root_a_slave_then_binds_the_rootfs(
    tmp_path: Path, fake_kernel: RecordingKernel
) -> None:
    mounts.isolate_root(str(tmp_path), 0)
    calls = fake_kernel.only("mount")
    assert calls[0] == ("mount", None, "/", None, MS_SLAVE | MS_REC, None)
    assert calls[-1] == ("mount", str(tmp_path), str(tmp_path), None, MS_BIND | MS_REC, None)


def test_isolate_root_keeps_an_unbindable_root_for_later(tmp_path: Path, fake_kernel) -> None:
    """An unbindable / would forbid the rootfs bind: slave now, unbindable in finish_root."""
    propagation = mounts.rootfs_propagation({"rootfsPropagation": "unbindable"})
    mounts.isolate_root(str(tmp_path), propagation)
    assert fake_kernel.only("mount")[0] == ("mount", None, "/", None, MS_SLAVE | MS_REC, None)


def test_pivot_root_then_detach_the_old_root(
    tmp_path: Path, fake_kernel: RecordingKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # enter_rootfs ends in "/": give the test its cwd back
    mounts.enter_rootfs(str(tmp_path), no_pivot=False)
    assert fake_kernel.calls == [
        ("pivot_root", ".", "."),
        ("mount", None, ".", None, MS_SLAVE | MS_REC, None),  # no umount event to the host
        ("umount2", ".", MNT_DETACH),
    ]


def _mountinfo(root: str, mountpoint: str, fstype: str) -> str:
    return f"30 1 0:5 {root} {mountpoint} rw,nosuid shared:9 - {fstype} {fstype} rw"


@pytest.mark.parametrize("umount_errno", [0, errno.EINVAL])
def test_no_pivot_first_detaches_the_hosts_procfs_and_sysfs(
    tmp_path: Path, fake_kernel: RecordingKernel, umount_errno: int
) -> None:
    """runc's msMoveRoot: a whole procfs/sysfs outside the rootfs goes (or is covered by a
    tmpfs where it is locked); one inside the rootfs, a bind of a part, another type stay."""
    host = tmp_path / "host proc"
    for d in (host, tmp_path / "sys", tmp_path / "rootfs/proc", tmp_path / "tmp"):
        d.mkdir(parents=True)
    rootfs = str(tmp_path / "rootfs")
    escaped = str(host).replace(" ", "\\040")
    mountinfo = [
        _mountinfo("/", escaped, "proc"),
        _mountinfo("/", str(tmp_path / "sys"), "sysfs"),
        _mountinfo("/", str(tmp_path / "gone"), "proc"),  # under one detached already
        _mountinfo("/", rootfs + "/proc", "proc"),
        _mountinfo("/sys", str(tmp_path / "tmp"), "proc"),
        _mountinfo("/", str(tmp_path / "tmp"), "tmpfs"),
    ]
    if umount_errno:
        fake_kernel.fail["umount2"] = umount_errno
    mounts.hide_host_procfs(rootfs, mountinfo)

    def hidden(where: str) -> list[tuple]:
        slave = ("mount", None, where, None, MS_SLAVE | MS_REC, None)
        cover = [("mount", "tmpfs", where, "tmpfs", 0, None)] if umount_errno else []
        return [slave, ("umount2", where, MNT_DETACH), *cover]

    gone = ("mount", None, str(tmp_path / "gone"), None, MS_SLAVE | MS_REC, None)  # ENOENT
    assert fake_kernel.calls == [*hidden(str(host)), *hidden(str(tmp_path / "sys")), gone]


def test_masked_directory_gets_a_read_only_tmpfs(tmp_path: Path, fake_kernel) -> None:
    mounts.mask_paths([str(tmp_path), str(tmp_path / "absent")])
    assert fake_kernel.calls == [("mount", "tmpfs", str(tmp_path), "tmpfs", MS_RDONLY, None)]


def test_readonly_path_keeps_the_mounts_other_flags(tmp_path: Path, fake_kernel) -> None:
    here, absent = str(tmp_path), str(tmp_path / "absent")
    mounts.readonly_paths([here, absent])
    kept = os.statvfs(tmp_path).f_flag & mounts._PRESERVED_STATVFS_FLAGS
    assert kept & MS_NOSUID == os.statvfs(tmp_path).f_flag & os.ST_NOSUID
    assert fake_kernel.calls == [
        ("mount", here, here, None, MS_BIND | MS_REC, None),
        ("mount", None, here, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept, None),
        ("mount", absent, absent, None, MS_BIND | MS_REC, None),  # ENOENT: skipped, no remount
    ]


# --- namespaces: the order they are joined and created in -----------------------------


@pytest.fixture
def ns_files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for kind in namespaces.FLAGS:
        (tmp_path / kind).write_text("")
        paths[kind] = str(tmp_path / kind)
    return paths


def test_enter_joins_by_path_with_mount_last(ns_files, fake_kernel: RecordingKernel) -> None:
    namespaces.enter(dict(ns_files))
    assert fake_kernel.calls == [
        ("setns", ns_files["ipc"], CLONE_NEWIPC),
        ("setns", ns_files["uts"], CLONE_NEWUTS),
        ("setns", ns_files["network"], CLONE_NEWNET),
        ("setns", ns_files["cgroup"], CLONE_NEWCGROUP),
        ("setns", ns_files["mount"], CLONE_NEWNS),  # last: it changes what paths mean
    ]  # user, pid and time: not here (the userns stage and for_children)


def test_enter_creates_the_new_ones_in_one_unshare(fake_kernel: RecordingKernel) -> None:
    new = {kind: None for kind in namespaces.FLAGS}
    namespaces.enter(new)
    assert fake_kernel.calls == [
        ("unshare", CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)
    ]


def test_enter_joins_before_it_creates_and_honours_but(ns_files, fake_kernel) -> None:
    namespaces.enter({"network": ns_files["network"], "mount": None, "uts": None,
                      "cgroup": None}, but=("cgroup",))  # fmt: skip
    assert fake_kernel.calls == [
        ("setns", ns_files["network"], CLONE_NEWNET),
        ("unshare", CLONE_NEWNS | CLONE_NEWUTS),
    ]


def test_a_refused_setns_names_the_namespace(ns_files, fake_kernel: RecordingKernel) -> None:
    fake_kernel.fail["setns"] = errno.EPERM
    message = r"joining uts namespace .*/uts: setns: Operation not permitted"
    with pytest.raises(RuntimeFailure, match=message):
        namespaces.enter({"uts": ns_files["uts"]})


def test_join_is_in_the_order_asked(ns_files, fake_kernel: RecordingKernel) -> None:
    namespaces.join({"user": ns_files["user"], "network": None}, ("user", "network"))
    assert fake_kernel.calls == [("setns", ns_files["user"], CLONE_NEWUSER)]


def test_pid_then_time_for_children_for_good(fake_kernel: RecordingKernel) -> None:
    namespaces.enter_for_children_for_good({"time": None, "pid": None, "mount": None}, None)
    assert fake_kernel.calls == [("unshare", CLONE_NEWPID), ("unshare", CLONE_NEWTIME)]


def test_for_children_goes_back_to_its_own_pid_namespace(fake_kernel) -> None:
    own = os.readlink("/proc/self/ns/pid")
    with namespaces.for_children({"pid": None}, None):
        assert fake_kernel.calls == [("unshare", CLONE_NEWPID)]
    assert len(fake_kernel.calls) == 2
    name, path, flag = fake_kernel.calls[1]
    assert (name, flag) == ("setns", CLONE_NEWPID)
    assert path == own  # the fd it kept of /proc/self/ns/pid resolves to our namespace


# --- credentials: the order of bounding set, user switch, capabilities ---------------


@pytest.fixture
def caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "_last_cap", [40])


def _cap_sets(**sets: set[int]) -> dict[str, set[int]]:
    return {name: sets.get(name, set()) for name in capabilities.SET_NAMES}


def test_switch_user_order(caps, fake_kernel: RecordingKernel, monkeypatch) -> None:
    monkeypatch.setattr(posix, "umask", lambda mask: fake_kernel.calls.append(("umask", mask)))
    keep = {0, 21}
    settings.switch_user({"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o27},
                        _cap_sets(bounding=keep))  # fmt: skip
    drops = [("capbset_drop", cap) for cap in range(41) if cap not in keep]
    assert fake_kernel.calls == [
        *drops,  # needs CAP_SETPCAP: before the switch
        ("set_keepcaps", True),  # the permitted set survives setuid
        ("setgroups", [5, 6]),
        ("setgid", 100),
        ("setuid", 1000),  # last: after it, no more privilege to change groups
        ("umask", 0o27),
    ]


def test_switch_user_without_setgroups_in_a_user_namespace(caps, fake_kernel, monkeypatch):
    monkeypatch.setattr(posix, "umask", lambda mask: 0)
    fake_kernel.fail["setgroups"] = errno.EPERM
    settings.switch_user({"uid": 1, "gid": 1}, _cap_sets())
    assert fake_kernel.names()[-2:] == ["setgid", "setuid"]


def test_switch_user_refused_setgroups_with_groups_fails(caps, fake_kernel, monkeypatch):
    monkeypatch.setattr(posix, "umask", lambda mask: 0)
    fake_kernel.fail["setgroups"] = errno.EPERM
    with pytest.raises(RuntimeFailure, match="config.json: /process/user: uid=1 gid=1"):
        settings.switch_user({"uid": 1, "gid": 1, "additionalGids": [7]}, _cap_sets())
    assert "setuid" not in fake_kernel.names()


def test_apply_capabilities_order(caps, fake_kernel: RecordingKernel) -> None:
    sets = _cap_sets(effective={0}, permitted={0, 1}, inheritable={1}, ambient={1, 0})
    settings.apply_capabilities(sets, no_new_privileges=True)
    assert fake_kernel.calls == [
        ("set_capabilities", {0}, {0, 1}, {1}, 40),
        ("ambient_clear_all",),
        ("ambient_raise", 0),
        ("ambient_raise", 1),
        ("set_keepcaps", False),
        ("set_no_new_privs",),  # last: nothing after it needs a privilege
    ]


def test_no_new_privs_only_when_asked(caps, fake_kernel: RecordingKernel) -> None:
    settings.apply_capabilities(_cap_sets(), no_new_privileges=False)
    assert "set_no_new_privs" not in fake_kernel.names()


def test_ambient_capability_the_kernel_refuses_is_skipped(caps, fake_kernel) -> None:
    fake_kernel.fail["ambient_raise"] = errno.EPERM
    settings.apply_capabilities(_cap_sets(ambient={3}), no_new_privileges=False)
    assert fake_kernel.names()[-1] == "set_keepcaps"


def test_ambient_capability_other_errors_fail(caps, fake_kernel) -> None:
    fake_kernel.fail["ambient_raise"] = errno.EINVAL
    with pytest.raises(RuntimeFailure, match="process.capabilities"):
        settings.apply_capabilities(_cap_sets(ambient={3}), no_new_privileges=False)


def test_drop_bounding_leaves_what_is_already_gone(caps, fake_kernel) -> None:
    fake_kernel.bounding = {0, 1, 2}
    capabilities.drop_bounding({1})
    assert fake_kernel.calls == [("capbset_drop", 0), ("capbset_drop", 2)]


# --- process attributes and the keyring ----------------------------------------------


@pytest.mark.parametrize(("in_userns", "bit"), [(False, KEY_USR_SEARCH), (True, KEY_OTH_SEARCH)])
def test_session_keyring_lets_the_container_search_it(fake_kernel, monkeypatch, in_userns, bit):
    monkeypatch.setattr(settings, "_in_user_namespace", lambda: in_userns)
    settings.join_session_keyring("_ses.c1")
    assert fake_kernel.calls == [
        ("keyctl_join_session_keyring", "_ses.c1"),
        ("keyctl_describe", 4242),
        ("keyctl_setperm", 4242, 0x3F010000 | bit),
    ]


def test_session_keyring_unavailable_is_not_an_error(fake_kernel) -> None:
    fake_kernel.fail["keyctl_join_session_keyring"] = errno.ENOSYS
    settings.join_session_keyring("_ses.c1")
    assert fake_kernel.names() == ["keyctl_join_session_keyring"]


def test_exec_only_joins_the_keyring(fake_kernel) -> None:
    settings.join_session_keyring("_ses.c1", set_permissions=False)
    assert fake_kernel.names() == ["keyctl_join_session_keyring"]


def test_process_attributes_order_and_values(fake_kernel: RecordingKernel) -> None:
    attrs = procattrs.plan(
        {"scheduler": {"policy": "SCHED_BATCH", "nice": 5},
         "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4}},
        {"personality": {"domain": "LINUX32"}}, "/process", "/linux",
    )  # fmt: skip
    attrs.apply()
    assert fake_kernel.calls == [
        ("personality", 0x0008),  # PER_LINUX32
        ("sched_setattr", 3, 0, 5, 0),  # SCHED_BATCH, nice 5
        ("ioprio_set", 3 << 13 | 4),  # IOPRIO_PRIO_VALUE(IDLE, 4)
    ]


def test_a_refused_ioprio_names_the_field(fake_kernel: RecordingKernel) -> None:
    fake_kernel.fail["ioprio_set"] = errno.EPERM
    attrs = procattrs.plan({"ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 0}}, {},
                           "/process", "/linux")  # fmt: skip
    with pytest.raises(RuntimeFailure, match="/process/ioPriority: IOPRIO_CLASS_RT 0: ioprio_set"):
        attrs.apply()


# --- bpf(2) --------------------------------------------------------------------------


def test_device_program_load_asks_for_a_cgroup_device_program(fake_kernel) -> None:
    code = devices_bpf.encode([[0xB4, 0, 0, 0, 1], [0x95, 0, 0, 0, 0]])
    devices_bpf.load(code)
    [(name, cmd, attr)] = fake_kernel.calls
    assert (name, cmd) == ("bpf", devices_bpf.BPF_PROG_LOAD)
    prog_type, insn_count = struct.unpack_from("<II", attr)
    assert (prog_type, insn_count) == (devices_bpf.BPF_PROG_TYPE_CGROUP_DEVICE, 2)
    assert struct.unpack_from("<I", attr, 68)[0] == devices_bpf.BPF_CGROUP_DEVICE


def test_device_program_attach_allows_the_ancestors_programs(tmp_path: Path, fake_kernel):
    devices_bpf.attach(str(tmp_path), 77)
    [(name, cmd, attr)] = fake_kernel.calls
    assert (name, cmd) == ("bpf", devices_bpf.BPF_PROG_ATTACH)
    _, prog, attach_type, flags = struct.unpack_from("<IIII", attr)
    assert (prog, attach_type, flags) == (77, devices_bpf.BPF_CGROUP_DEVICE,
                                          devices_bpf.BPF_F_ALLOW_MULTI)  # fmt: skip


def test_the_real_layer_reports_errno_and_operation() -> None:
    """The real wrappers, on calls that fail harmlessly for anyone."""
    with pytest.raises(OSError) as e:
        sc.setns(-1, CLONE_NEWNET)
    assert e.value.errno == errno.EBADF and "setns" in str(e.value)
    with pytest.raises(OSError) as e:
        sc.openat2(-1, "x", os.O_RDONLY)
    assert e.value.errno == errno.EBADF and e.value.filename == "x"
    assert ctypes.sizeof(procattrs.SchedAttr) == 56  # SCHED_ATTR_SIZE_VER1


# -- threadwrite: the cgroup warm-up's write, from a thread outside Python --------------


def _threads() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def test_threadwrite_writes_once_in_its_own_thread_and_join_waits_for_its_end(tmp_path) -> None:
    from ociruntime.kernel import threadwrite

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = _threads()
    threadwrite.start(str(fifo), b"0")  # the thread blocks in open() until we read
    with pytest.raises(RuntimeError, match="under way"):
        threadwrite.start(str(fifo), b"1")  # one at a time
    assert _threads() == before + 1
    with open(fifo, "rb") as reader:
        assert reader.read() == b"0"  # written once, then closed (EOF)
    threadwrite.join()
    assert _threads() == before  # gone: a single-threaded process may setns again
    threadwrite.join()  # none left: returns at once


def test_threadwrite_ignores_a_path_it_cannot_open(tmp_path) -> None:
    from ociruntime.kernel import threadwrite

    threadwrite.start(str(tmp_path / "missing" / "cgroup.procs"), b"0")
    threadwrite.join()  # an optimisation: no error reaches the caller
    assert not (tmp_path / "missing").exists()
