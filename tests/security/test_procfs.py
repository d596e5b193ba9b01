"""Issue #9 finding 3 (CVE-2025-52881 class): the runtime's writes under /proc must reach
the real procfs, whatever the config (or a hook) mounted over /proc.

Two layers: mounts over /proc are refused at `create` (runc's allow-list of lxcfs files
aside), and every write goes through ociruntime.security.procfs, whose private procfs no mount in
the container can reshape. The hook tests show the second layer alone: a createContainer
hook may mount anything over the rootfs's /proc, and the writes must still land in the
kernel's files, not in the hook's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ociruntime.kernel.constants import PROC_SUPER_MAGIC
from ociruntime.kernel.syscalls import fstatfs_type
from ociruntime.security.capabilities import CAP_NUMBERS

from .common import add_mount, bind, one_line_error

REFUSED = "mounting over /proc is not allowed"
LAST_CAP = Path("/proc/sys/kernel/cap_last_cap").read_text()


def cap_mask(names: list[str]) -> int:
    return sum(1 << CAP_NUMBERS[n] for n in names)


def _fake_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_bind_over_proc_sys_does_not_receive_sysctls(runtime, make_bundle):
    """A config that binds its own tree over /proc/sys would get the runtime's sysctl
    writes (before: the write landed in the bundle's file). Refused at create now."""
    bundle = make_bundle(["true"])
    fake = _fake_tree(
        bundle.path / "fakesys",
        {"kernel/domainname": "untouched\n", "kernel/cap_last_cap": LAST_CAP},
    )
    bundle.config["linux"]["sysctl"] = {"kernel.domainname": "redirected"}
    index = add_mount(bundle, bind(fake, "/proc/sys", "rbind"))
    line = one_line_error(runtime("create", "--bundle", str(bundle.path), runtime.new_id()))
    assert line.endswith(f"config.json: /mounts/{index}/destination: /proc/sys: {REFUSED}")
    assert (fake / "kernel" / "domainname").read_text() == "untouched\n"


@pytest.mark.parametrize(
    "destination, kind",
    [
        ("/proc/self", "dir"),  # before: create exited 0 with a dead container
        ("/proc/1/attr", "dir"),  # LSM labels
        ("/proc/sys/kernel/core_pattern", "file"),
        ("/proc/sys/kernel", "dir"),
        ("/proc/thread-self/attr", "dir"),
        ("/proc/sysrq-trigger", "file"),
    ],
)
def test_mounts_over_proc_are_refused(runtime, make_bundle, destination, kind):
    bundle = make_bundle(["true"])
    source = bundle.path / "src"
    if kind == "dir":
        source.mkdir()
    else:
        source.write_text("x\n")
    index = add_mount(bundle, bind(source, destination))
    cid = runtime.new_id()
    line = one_line_error(runtime("create", "--bundle", str(bundle.path), cid))
    assert f"config.json: /mounts/{index}/destination: {destination}" in line
    assert line.endswith(REFUSED)
    assert runtime("state", cid).returncode == 1  # nothing was recorded


@pytest.mark.parametrize("how", ["symlink", "dotdot", "symlink-in-proc"])
def test_destinations_reaching_proc_through_the_rootfs_are_refused(runtime, make_bundle, how):
    """The check is on where the destination resolves inside the rootfs, not its text."""
    bundle = make_bundle(["true"])
    if how == "symlink":
        os.symlink("/proc/sys", bundle.rootfs / "sneaky")
        destination = "/sneaky/kernel"
    elif how == "dotdot":
        destination = "/tmp/../proc/sys/../sys/kernel"
    else:
        os.symlink("../proc/self", bundle.rootfs / "tmp" / "me")
        destination = "/tmp/me"  # /proc/self -> /proc/1 in the container's procfs
    (bundle.path / "src").mkdir()
    index = add_mount(bundle, bind(bundle.path / "src", destination))
    line = one_line_error(runtime("create", "--bundle", str(bundle.path), runtime.new_id()))
    assert f"config.json: /mounts/{index}/destination: {destination}" in line
    assert "resolves to /proc/" in line
    assert line.endswith(REFUSED)


def test_bind_over_proc_root_needs_a_procfs(runtime, make_bundle):
    """/proc itself takes a proc mount (the default) or a bind of a procfs; a bind of
    anything else would give the container a fake /proc."""
    bundle = make_bundle(["true"])
    (bundle.path / "src").mkdir()
    index = add_mount(bundle, bind(bundle.path / "src", "/proc"))
    line = one_line_error(runtime("create", "--bundle", str(bundle.path), runtime.new_id()))
    assert f"config.json: /mounts/{index}/destination: /proc: " in line
    assert "not a procfs" in line


def test_runc_allow_list_still_works(runtime, make_bundle):
    """lxcfs-style binds of single files over /proc/cpuinfo, /proc/uptime... (runc's
    checkProcMount allow-list) keep working."""
    bundle = make_bundle(["sh", "-c", "cat /proc/uptime /proc/meminfo"])
    (bundle.path / "uptime").write_text("42.00 17.00\n")
    (bundle.path / "meminfo").write_text("MemTotal: 1 kB\n")
    add_mount(bundle, bind(bundle.path / "uptime", "/proc/uptime"))
    add_mount(bundle, bind(bundle.path / "meminfo", "/proc/meminfo"))
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["42.00 17.00", "MemTotal: 1 kB"]


# --- the second layer: writes through the trusted procfs ---------------------------------


def _hook_mount(bundle, source: Path, inside: str) -> None:
    """A createContainer hook (container mount namespace, before pivot_root) that binds
    `source` over `inside` in the rootfs: mounts the config check never sees."""
    target = bundle.rootfs / inside.lstrip("/")
    script = f"mount --bind '{source}' '{target}'"
    hooks = bundle.config.setdefault("hooks", {})
    hook = {"path": "/bin/sh", "args": ["sh", "-c", script]}
    hooks.setdefault("createContainer", []).append(hook)
    bundle.write()


def _created_pid(runtime, bundle) -> tuple[str, int]:
    cid = runtime.new_id()
    result = runtime("create", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    return cid, runtime.state(cid)["pid"]


def _in_uts_ns(pid: int, path: str) -> str:
    done = subprocess.run(["nsenter", "-t", str(pid), "-u", "cat", path],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_sysctl_lands_in_the_real_procfs_under_a_hook_mount(runtime, make_bundle):
    bundle = make_bundle(["true"])
    fake = _fake_tree(
        bundle.path / "fakekernel", {"domainname": "untouched\n", "cap_last_cap": LAST_CAP}
    )
    bundle.config["linux"]["sysctl"] = {"kernel.domainname": "written-by-runtime"}
    _hook_mount(bundle, fake, "/proc/sys/kernel")
    cid, pid = _created_pid(runtime, bundle)
    try:
        assert (fake / "domainname").read_text() == "untouched\n"
        assert _in_uts_ns(pid, "/proc/sys/kernel/domainname") == "written-by-runtime"
    finally:
        runtime("delete", "--force", cid)


def test_capability_bound_is_read_from_the_real_procfs(runtime, make_bundle):
    """The bounding set is trimmed up to the kernel's cap_last_cap: a fake one saying 0
    would leave every capability above CAP_CHOWN in the container's bounding set (before
    the fix, without --log: CapBnd 1fffefffffe, CAP_SYS_ADMIN included)."""
    bundle = make_bundle(["grep", "CapBnd", "/proc/self/status"])
    fake = _fake_tree(bundle.path / "fakekernel", {"cap_last_cap": "0\n"})
    _hook_mount(bundle, fake, "/proc/sys/kernel")
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
    wanted = cap_mask(bundle.config["process"]["capabilities"]["bounding"])
    assert int(result.stdout.split()[1], 16) == wanted


def test_oom_score_adj_lands_in_the_real_procfs_under_a_hook_mount(runtime, make_bundle):
    bundle = make_bundle(["true"])
    (bundle.path / "fake_oom").write_text("0\n")
    bundle.config["process"]["oomScoreAdj"] = 123
    _hook_mount(bundle, bundle.path / "fake_oom", "/proc/1/oom_score_adj")
    cid, pid = _created_pid(runtime, bundle)
    try:
        assert (bundle.path / "fake_oom").read_text() == "0\n"
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "123"
    finally:
        runtime("delete", "--force", cid)


def test_apparmor_label_is_not_written_into_a_hook_mount(runtime, make_bundle):
    """The LSM attribute files: an apparmorProfile written into a plain file would let the
    container run unconfined, silently. Here (no AppArmor on this host) the write must
    reach the kernel, which refuses it: the create fails as runc's does."""
    bundle = make_bundle(["true"])
    names = ("current", "exec", "prev", "fscreate", "keycreate", "sockcreate")
    fake = _fake_tree(bundle.path / "fakeattr", {n: "" for n in names})
    for lsm in ("apparmor", "selinux", "smack"):
        _fake_tree(fake / lsm, {n: "" for n in names})
    bundle.config["process"]["apparmorProfile"] = "ociruntime-test-profile"
    _hook_mount(bundle, fake, "/proc/1/attr")
    _hook_mount(bundle, fake, "/proc/1/task/1/attr")
    result = runtime("create", "--bundle", str(bundle.path), runtime.new_id())
    line = one_line_error(result)
    assert "apparmor failed to apply profile" in line
    assert not any((fake / n).read_text() for n in names)
    assert not any((fake / "apparmor" / n).read_text() for n in names)


def test_init_holds_no_private_procfs_once_created(runtime, make_bundle):
    """A process `exec` runs in a created container could open the init's fds through
    /proc/1/fd: none of them may be the private procfs (no masks, a writable /proc/sys).
    The init's fds are listed from the host: a procfs fd shows as a path on a procfs
    whose mount the container does not have."""
    bundle = make_bundle(["true"])
    cid, pid = _created_pid(runtime, bundle)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            fd = os.open(f"/proc/{pid}/fd/{name}", os.O_PATH)
            try:
                on_proc = fstatfs_type(fd) == PROC_SUPER_MAGIC
            finally:
                os.close(fd)
            if on_proc:  # only the container's own /proc/1/fd (the exec fifo's way back)
                assert os.readlink(f"/proc/{pid}/fd/{name}") == "/proc/1/fd", name
    finally:
        runtime("delete", "--force", cid)


def test_container_without_proc_mount_runs(runtime, make_bundle):
    bundle = make_bundle(["true"])
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/proc"]
    bundle.config["linux"]["maskedPaths"] = []
    bundle.config["linux"]["readonlyPaths"] = []
    bundle.write()
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
