"""What a process inside the container observes: its PID, hostname, processes, mounts,
capabilities, identity, limits, and masked/read-only paths; and that a chroot inside it
cannot be used to escape to the host."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import CGROUP_V2_ONLY

from ociruntime.security.capabilities import CAP_NUMBERS
from testkit.build import static_binary
from testkit.runc import run_bundle


def run_in(runtime, bundle) -> str:
    """Run the bundle in the foreground; return what the container printed."""
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pid_1_and_hostname(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo $$; hostname"])
    bundle.config["hostname"] = "box-under-test"
    bundle.write()
    assert run_in(runtime, bundle).split() == ["1", "box-under-test"]


def test_host_processes_are_invisible(runtime, make_bundle):
    out = run_in(runtime, make_bundle(["sh", "-c", "ls /proc | grep -E '^[0-9]+$'"]))
    # Only PID 1 (sh) and its children (ls, grep) exist in the container's PID namespace.
    assert set(out.split()) <= {"1", "2", "3", "4"}
    assert "1" in out.split()


def test_mounts_are_only_the_configured_ones(runtime, make_bundle):
    bundle = make_bundle(["cat", "/proc/self/mountinfo"])
    mountpoints = {line.split()[4] for line in run_in(runtime, bundle).splitlines()}
    expected = {"/"} | {m["destination"] for m in bundle.config["mounts"]}
    expected |= set(bundle.config["linux"]["maskedPaths"])
    expected |= set(bundle.config["linux"]["readonlyPaths"])
    extra = {m for m in mountpoints - expected if not m.startswith("/sys/fs/cgroup/")}
    assert extra == set(), f"host mounts visible in the container: {extra}"
    with open("/proc/self/mountinfo") as f:
        host_only = {line.split()[4] for line in f} - expected - {"/"}
    host_only = {m for m in host_only if not m.startswith("/sys/fs/cgroup/")}
    assert mountpoints & host_only == set()


def cap_mask(names: list[str]) -> int:
    return sum(1 << CAP_NUMBERS[n] for n in names)


def status_caps(text: str) -> dict[str, int]:
    return {
        line.split(":")[0]: int(line.split()[1], 16)
        for line in text.splitlines()
        if line.startswith("Cap")
    }


def run_under_runc(bundle) -> str:
    """The reference: the same bundle under runc."""
    p = run_bundle(str(bundle.path))
    assert p.returncode == 0, p.stderr
    return p.stdout


CAPABILITY_CASES = {
    "runc-default": None,
    "root-custom": {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_NET_RAW"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_CHOWN"],
        "ambient": ["CAP_CHOWN"],
    },
    "user-ambient": {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    },
}


@pytest.mark.parametrize("case", CAPABILITY_CASES)
def test_capabilities(runtime, make_bundle, case):
    bundle = make_bundle(["cat", "/proc/self/status"])
    caps = CAPABILITY_CASES[case]
    if caps is not None:
        bundle.config["process"]["capabilities"] = caps
    if case == "user-ambient":
        bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.write()
    configured = bundle.config["process"]["capabilities"]
    ours = status_caps(run_in(runtime, bundle))
    # The bounding set survives execve unchanged: it must be exactly the configured one.
    assert ours["CapBnd"] == cap_mask(configured["bounding"])
    if case == "user-ambient":
        # A non-root process keeps exactly its ambient set across execve.
        assert ours["CapAmb"] == ours["CapEff"] == cap_mask(configured["ambient"])
        assert ours["CapInh"] == cap_mask(configured["inheritable"])
    # Everything else follows the kernel's execve rules: the reference must agree.
    assert ours == status_caps(run_under_runc(bundle))


def test_user_groups_umask_rlimits(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "id -u; id -g; id -G; umask; ulimit -n; ulimit -s"])
    bundle.config["process"]["user"] = {
        "uid": 1234, "gid": 2345, "additionalGids": [10, 20], "umask": 0o027
    }  # fmt: skip
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_STACK", "soft": 4096 * 1024, "hard": 8192 * 1024},
    ]
    bundle.write()
    uid, gid, groups, umask, nofile, stack = run_in(runtime, bundle).splitlines()
    assert (uid, gid) == ("1234", "2345")
    assert set(groups.split()) == {"2345", "10", "20"}
    assert umask == "0027"
    assert nofile == "321"
    assert stack == "4096"


def test_rlimit_infinity_and_a_refused_rlimit(runtime, make_bundle):
    """config.json's uint64 maximum is "unlimited" (RLIM64_INFINITY, as runc); a soft
    limit above the hard one is refused, naming the entry, and leaves nothing behind."""
    import resource  # the host's own limit, for the test only

    if resource.getrlimit(resource.RLIMIT_CORE)[1] != resource.RLIM_INFINITY:
        pytest.skip("the hard RLIMIT_CORE here is not unlimited (none may raise it)")
    bundle = make_bundle(["sh", "-c", "ulimit -c; ulimit -Hc"])
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 0, "hard": 2**64 - 1}]
    bundle.write()
    assert run_in(runtime, bundle).split() == ["0", "unlimited"]
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 20, "hard": 10}]
    bundle.write()
    cid = runtime.new_id()
    result = runtime("run", "--bundle", str(bundle.path), cid)
    assert result.returncode == 1
    assert "config.json: /process/rlimits/0: RLIMIT_NOFILE soft=20 hard=10" in result.stderr
    assert runtime("state", cid).returncode != 0  # rolled back


def test_readonly_and_masked_paths(runtime, make_bundle):
    bundle = make_bundle(
        ["sh", "-c",
         "touch /ro/x 2>/dev/null && echo ro-writable || echo ro-refused;"
         "cat /secret.txt; echo; ls -A /secretdir | wc -l; touch /rw/x && echo rw-ok"]
    )  # fmt: skip
    for d in ("ro", "secretdir", "rw"):
        (bundle.rootfs / d).mkdir()
    (bundle.rootfs / "secretdir" / "key").write_text("hidden")
    (bundle.rootfs / "secret.txt").write_text("TOPSECRET")
    bundle.config["root"]["readonly"] = False
    bundle.config["linux"]["readonlyPaths"] += ["/ro"]
    bundle.config["linux"]["maskedPaths"] += ["/secret.txt", "/secretdir"]
    bundle.write()
    out = run_in(runtime, bundle).split()
    assert out == ["ro-refused", "0", "rw-ok"]  # masked file reads empty, masked dir is empty


def test_readonly_root(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "touch /newfile 2>/dev/null && echo writable || echo ro"])
    assert bundle.config["root"]["readonly"] is True
    assert run_in(runtime, bundle).split() == ["ro"]


def test_sysctl_and_cwd_and_env(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; pwd; echo $GREETING"])
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.config["process"]["env"].append("GREETING=hello world")
    bundle.write()
    assert run_in(runtime, bundle).splitlines() == ["1", "/tmp", "hello world"]


def test_default_devices(runtime, make_bundle):
    bundle = make_bundle(
        ["sh", "-c", "cd /dev && for f in *; do stat -c '%n|%F|%t,%T|%a' $f; done"]
    )
    lines = run_in(runtime, bundle).splitlines()
    entries = {line.split("|")[0]: line.split("|")[1:] for line in lines}
    for name, dev in {"null": "1,3", "zero": "1,5", "full": "1,7", "random": "1,8",
                      "urandom": "1,9", "tty": "5,0"}.items():  # fmt: skip
        assert entries[name] == ["character special file", dev, "666"], name
    for link in ("fd", "stdin", "stdout", "stderr", "ptmx"):
        assert entries[link][0] == "symbolic link", link
    assert "console" not in entries  # only with a terminal


CHROOT_ESCAPE = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
/* The classic escape: chroot into a subdirectory while keeping the cwd outside it,
   climb with .., then chroot to where we ended up. */
int main(void) {
    mkdir(".out", 0755);
    if (chroot(".out") != 0) { perror("chroot .out"); return 2; }
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) { perror("chroot ."); return 2; }
    execl("/bin/sh", "sh", "-c", "ls /", (char *)0);
    perror("exec");
    return 3;
}
"""


def test_chroot_escape_stays_in_container(runtime, make_bundle, tmp_path):
    source = tmp_path / "escape.c"
    source.write_text(CHROOT_ESCAPE)
    binary = static_binary(source, tmp_path)
    bundle = make_bundle(["/escape"])
    shutil.copy(binary, bundle.rootfs / "escape")
    (bundle.rootfs / "CONTAINER_ROOT_MARKER").write_text("")
    caps = ["CAP_SYS_CHROOT", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]  # chroot is all it needs
    bundle.config["process"]["capabilities"] = {"bounding": caps, "effective": caps,
                                                "permitted": caps}  # fmt: skip
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.write()
    listing = set(run_in(runtime, bundle).split())
    assert {"CONTAINER_ROOT_MARKER", "escape"} <= listing
    host_only = set(os.listdir("/")) - {p.name for p in bundle.rootfs.iterdir()}
    assert host_only, "the test needs a host root with entries the container lacks"
    assert listing & host_only == set(), "the escape reached the host's root"


def test_spec_output_runs(runtime, tmp_path, rootfs_template):
    """`ociruntime spec` writes a config that ociruntime itself accepts and runs."""
    bundle = tmp_path / "specbundle"
    bundle.mkdir()
    runtime("spec", "--bundle", str(bundle), check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    (bundle / "config.json").write_text(json.dumps(config))
    shutil.copytree(rootfs_template, bundle / "rootfs", symlinks=True)
    result = runtime("run", "--bundle", str(bundle), runtime.new_id())
    assert result.returncode == 0, result.stderr


def test_cgroup_namespace_roots_at_the_container_cgroup(runtime, make_bundle):
    """Inside, /proc/self/cgroup says `/` and /sys/fs/cgroup shows the container's own
    cgroup: v1's memory hierarchy, or on a pure v2 host the unified one (whose memory
    files the root's subtree_control delegates)."""
    memory_dir, memory_file = (
        ("/sys/fs/cgroup", "memory.max") if CGROUP_V2_ONLY
        else ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
    )  # fmt: skip
    bundle = make_bundle(["sh", "-c", f"cat /proc/self/cgroup; ls {memory_dir}"])
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.write()
    lines = run_in(runtime, bundle).splitlines()
    cgroup_lines = [line for line in lines if line.count(":") >= 2]
    assert cgroup_lines and all(line.endswith(":/") for line in cgroup_lines), cgroup_lines
    assert memory_file in lines  # the container's own memory cgroup is mounted


def test_no_pivot_still_confines(runtime, make_bundle):
    bundle = make_bundle(["ls", "/"])
    (bundle.rootfs / "CONTAINER_ROOT_MARKER").write_text("")
    result = runtime("run", "--no-pivot", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
    assert "CONTAINER_ROOT_MARKER" in result.stdout.split()


def test_time_namespace_offsets(runtime, make_bundle):
    bundle = make_bundle(["cat", "/proc/uptime"])
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 1000000, "nanosecs": 0}}
    bundle.write()
    with open("/proc/uptime") as f:
        host_before = float(f.read().split()[0])
    inside = float(run_in(runtime, bundle).split()[0])
    with open("/proc/uptime") as f:
        host_after = float(f.read().split()[0])
    assert host_before + 1000000 <= inside <= host_after + 1000000


def test_join_namespaces_by_path(runtime, make_bundle):
    """A second container joins the first one's network and IPC namespaces (a pod)."""
    first = runtime.new_id()
    runtime("run", "-d", "--bundle", str(make_bundle(["sleep", "1000"]).path), first,
            check=True)  # fmt: skip
    pid = runtime.state(first)["pid"]
    bundle = make_bundle(["sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc"])
    for ns in bundle.config["linux"]["namespaces"]:
        if ns["type"] in ("network", "ipc"):
            ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else 'ipc'}"
    bundle.write()
    joined = run_in(runtime, bundle).split()
    assert joined == [os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{pid}/ns/ipc")]
    assert joined[0] != os.readlink("/proc/self/ns/net")


def test_device_cgroup_denies_unlisted_devices(runtime, make_bundle):
    """runc's device policy: deny all, allow the config's rules, the created devices and
    runc's defaults. A node the container makes for another device cannot be opened."""
    bundle = make_bundle(
        ["sh", "-c", "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null && echo opened;"
         "echo x > /dev/null && echo null-ok"]
    )  # fmt: skip
    caps = bundle.config["process"]["capabilities"]
    for key in ("bounding", "effective", "permitted"):
        caps[key] = [*caps[key], "CAP_MKNOD", "CAP_SYS_RAWIO"]
    bundle.config["root"]["readonly"] = False
    bundle.write()
    out = run_in(runtime, bundle).split()
    assert "opened" not in out and "null-ok" in out


@pytest.mark.skipif(CGROUP_V2_ONLY, reason="devices.list is cgroup v1's; v2 has no list to compare")
def test_device_cgroup_list_matches_runc(runtime, make_bundle):
    bundle = make_bundle(["cat", "/sys/fs/cgroup/devices/devices.list"])
    ours = set(run_in(runtime, bundle).splitlines())
    assert ours == set(run_under_runc(bundle).splitlines())
    assert "a *:* rwm" not in ours
