"""The same attacks against runc 1.1.5, to record (not to fail on) what the reference does.

runc 1.1.5 predates CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 (fixed in runc
1.2.8, 1.3.3 and 1.4.0-rc.3). Each test runs one attack under runc and asserts the outcome
observed on this host, so RESULTS-procfs.md stays honest: if runc changes, the test says
so. The ociruntime side of each row is asserted by test_procfs, test_masks and
test_console.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.recvtty import ConsoleSocket

from .common import add_mount, bind
from .test_console import (
    ATTEMPTS,
    FLIPPER,
    console_fstype,
    console_symlink_bundle,
    racy_pts_bundle,
)
from .test_masks import dev_from_bundle
from .test_procfs import LAST_CAP, _fake_tree, _hook_mount, cap_mask

REFUSED = "refused"


def run_fg(runc, bundle) -> subprocess.CompletedProcess:
    return runc("run", "--bundle", str(bundle.path), runc.new_id())


def created(runc, bundle) -> tuple[str, int | None, str]:
    cid = runc.new_id()
    done = runc("create", "--bundle", str(bundle.path), cid)
    return cid, (runc.pid(cid) if done.returncode == 0 else None), done.stderr


@pytest.mark.parametrize(
    "destination, kind, outcome",
    [
        ("/proc/sys", "dir", REFUSED),
        ("/proc/self", "dir", REFUSED),
        ("/proc/1/attr", "dir", REFUSED),
        ("/proc/sys/kernel/core_pattern", "file", REFUSED),
        ("/sneaky/kernel", "symlink", REFUSED),  # rootfs /sneaky -> /proc/sys
    ],
)
def test_runc_mounts_over_proc(runc, make_bundle, destination, kind, outcome):
    bundle = make_bundle(["true"])
    source = bundle.path / "src"
    if kind == "symlink":
        os.symlink("/proc/sys", bundle.rootfs / "sneaky")
        kind = "dir"
        _fake_tree(source, {"domainname": "untouched\n", "cap_last_cap": LAST_CAP})
    elif kind == "dir":
        _fake_tree(source, {"kernel/domainname": "untouched\n", "kernel/cap_last_cap": LAST_CAP})
    else:
        source.write_text("x\n")
    bundle.config["linux"]["sysctl"] = {"kernel.domainname": "redirected"}
    add_mount(bundle, bind(source, destination))
    result = run_fg(runc, bundle)
    seen = REFUSED if result.returncode else "ran"
    print(f"runc 1.1.5, mount over {destination}: {seen}: {result.stderr.strip()[-200:]}")
    assert seen == outcome
    for fake in source.rglob("domainname"):
        assert fake.read_text() == "untouched\n"


def test_runc_sysctl_under_a_hook_mount(runc, make_bundle):
    bundle = make_bundle(["true"])
    fake = _fake_tree(bundle.path / "fakekernel", {"domainname": "untouched\n",
                                                   "cap_last_cap": LAST_CAP})  # fmt: skip
    bundle.config["linux"]["sysctl"] = {"kernel.domainname": "written-by-runtime"}
    _hook_mount(bundle, fake, "/proc/sys/kernel")
    _, pid, err = created(runc, bundle)
    seen = (fake / "domainname").read_text().strip()
    print(f"runc 1.1.5, sysctl under a hook mount: create {pid and 'ok'}, fake file: {seen} {err}")
    assert seen == "written-by-runtime"  # vulnerable: the write landed in the hook's file


def test_runc_oom_score_adj_under_a_hook_mount(runc, make_bundle):
    bundle = make_bundle(["true"])
    (bundle.path / "fake_oom").write_text("0\n")
    bundle.config["process"]["oomScoreAdj"] = 123
    _hook_mount(bundle, bundle.path / "fake_oom", "/proc/1/oom_score_adj")
    _, pid, err = created(runc, bundle)
    assert pid, err
    real = Path(f"/proc/{pid}/oom_score_adj").read_text().strip()
    fake = (bundle.path / "fake_oom").read_text().strip()
    print(f"runc 1.1.5, oom_score_adj under a hook mount: real {real}, fake file {fake}")
    assert (real, fake) == ("123", "0")  # runc writes it from outside, by the host's /proc


def test_runc_cap_last_cap_under_a_hook_mount(runc, make_bundle):
    bundle = make_bundle(["grep", "CapBnd", "/proc/self/status"])
    fake = _fake_tree(bundle.path / "fakekernel", {"cap_last_cap": "0\n"})
    _hook_mount(bundle, fake, "/proc/sys/kernel")
    result = run_fg(runc, bundle)
    assert result.returncode == 0, result.stderr
    wanted = cap_mask(bundle.config["process"]["capabilities"]["bounding"])
    got = int(result.stdout.split()[1], 16)
    print(f"runc 1.1.5, cap_last_cap under a hook mount: CapBnd {got:x} (config {wanted:x})")
    assert got == wanted  # runc reads cap_last_cap before the container's mounts


def test_runc_apparmor_under_a_hook_mount(runc, make_bundle):
    bundle = make_bundle(["true"])
    names = ("current", "exec", "prev", "fscreate", "keycreate", "sockcreate")
    fake = _fake_tree(bundle.path / "fakeattr", {n: "" for n in names})
    bundle.config["process"]["apparmorProfile"] = "ociruntime-test-profile"
    _hook_mount(bundle, fake, "/proc/1/attr")  # runc writes /proc/self/attr
    _hook_mount(bundle, fake, "/proc/1/task/1/attr")
    _, pid, err = created(runc, bundle)
    written = (fake / "exec").read_text()
    print(f"runc 1.1.5, apparmor under a hook mount: create {'ok' if pid else err}, "
          f"fake exec attr: {written!r}")  # fmt: skip
    assert pid is None  # on this host (no AppArmor) runc skips the write and refuses


def test_runc_masked_path_through_symlinked_dev_null(runc, make_bundle):
    bundle = make_bundle(["cat", "/proc/timer_list"])
    dev_from_bundle(bundle, "symlink")
    result = run_fg(runc, bundle)
    print(f"runc 1.1.5, masked /proc/timer_list, /dev/null -> ostype: {result.stdout!r}")
    assert result.returncode == 0 and result.stdout.strip() == "Linux"  # vulnerable


def test_runc_console_symlink(runc, make_bundle, tmp_path):
    bundle = console_symlink_bundle(make_bundle)
    with ConsoleSocket(str(tmp_path / "c.sock")) as listener:
        cid = runc.new_id()
        done = runc("create", "--console-socket", listener.path, "--bundle",
                    str(bundle.path), cid)  # fmt: skip
        assert done.returncode == 0, done.stderr
        console = listener.accept()
        mounts_of = Path(f"/proc/{runc.pid(cid)}/mountinfo").read_text()
        console.close()
    over_ostype = [line for line in mounts_of.splitlines()
                   if line.split()[4] == "/etc/hostname"]  # fmt: skip
    print(f"runc 1.1.5, /dev/console -> /etc/hostname: mounted there: {over_ostype}")
    assert over_ostype and " - devpts " in over_ostype[0]  # the bind followed the symlink


def test_runc_console_race(runc, make_bundle, tmp_path):
    bundle = make_bundle(["true"])
    pts = racy_pts_bundle(bundle)
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, str(pts)])
    seen = []
    try:
        for n in range(ATTEMPTS * 2):
            with ConsoleSocket(str(tmp_path / f"c{n}.sock")) as listener:
                cid = runc.new_id()
                done = runc("create", "--console-socket", listener.path, "--bundle",
                            str(bundle.path), cid)  # fmt: skip
                if done.returncode:
                    seen.append(REFUSED)
                    continue
                console = listener.accept()
                seen.append(console_fstype(runc.pid(cid)))
                console.close()
                runc("delete", "--force", cid)
    finally:
        flipper.send_signal(signal.SIGKILL)
        flipper.wait()
    counts = {k: seen.count(k) for k in sorted(set(seen))}
    print(f"runc 1.1.5, console slave race, {len(seen)} creates: {counts}")
    assert set(seen) != {"devpts"}  # runc opens and binds the slave by its path too
