"""`--systemd-cgroup` against a real systemd: the systemd lane (tools/vm-systemd-lane.sh,
systemd as PID 1 on a pure cgroup v2 guest) runs this file. What a user sees: the
container is a scope unit in `systemctl status` with its limits as the unit's properties
and enforced by the kernel (OOM, pids, a CPU quota measured from the cgroup's own
counters, as tests/test_cgroups.py does), `update` changes the unit's properties, pause,
`kill --all` and `events` work, `delete` removes the unit, and containerd's runc shim
with `SystemdCgroup = true` runs containers through us: with ctr (--runc-systemd-cgroup)
and through the cri plugin as Kubernetes configures it (a pod's slice as cgroup parent).

On a host that systemd did not boot (this development machine) only the refusals run:
a bad cgroupsPath and the missing systemd are one line, exit 1, nothing left.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OCIRUNTIME, REPO
from test_cgroups import (
    BUSY,
    MIB,
    EventStream,
    cpu_share,
    pids_of,
    stats,
    with_resources,
)

from ociruntime.cgroups import systemd
from testkit import containerd, cri, oci_image

BOOTED = systemd.booted()
needs_systemd = pytest.mark.skipif(
    not BOOTED, reason="systemd is not PID 1: the systemd lane (tools/vm-systemd-lane.sh) runs it"
)


def last_error(rt) -> str:  # noqa: ANN001 - conftest's Runtime
    """The last error line of the runtime's JSON --log."""
    with open(rt.log) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return next((r["msg"] for r in reversed(records) if r["level"] == "error"), "")


class SystemdRuntime:
    """The runtime fixture with --systemd-cgroup before every command."""

    def __init__(self, runtime) -> None:  # noqa: ANN001 - conftest's Runtime
        self.rt = runtime
        self.root = runtime.root

    def __call__(self, *args: str, **kw):  # noqa: ANN204 - a Result
        return self.rt("--systemd-cgroup", *args, **kw)

    def new_id(self) -> str:
        return self.rt.new_id()


@pytest.fixture
def sdrt(runtime) -> Iterator[SystemdRuntime]:  # noqa: ANN001
    """After the test (besides the runtime fixture's checks): no unit of its containers
    left, loaded or failed."""
    rt = SystemdRuntime(runtime)
    yield rt
    runtime.cleanup()
    if BOOTED:
        left = [u for u in units() if any(cid in u for cid in runtime.ids)]
        assert left == [], f"units left behind: {left}"


def units() -> list[str]:
    argv = ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--type=scope,slice"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def status(unit: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", "status", "--no-pager", "--full", unit],
                          capture_output=True, text=True)  # fmt: skip


def show(unit: str, *names: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={n}" for n in names)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def start(rt, bundle, cid: str | None = None) -> str:  # noqa: ANN001
    cid = cid or rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    return cid


def recorded(rt, cid: str) -> dict:  # noqa: ANN001
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        return json.load(f)


def assert_gone(unit: str, directory: str) -> None:
    """No unit of that name (not even failed) and no cgroup directory."""
    s = status(unit)
    assert s.returncode == 4 and "could not be found" in s.stderr, s
    assert not os.path.exists(directory)


# --- the scope unit ------------------------------------------------------------------------


@needs_systemd
def test_container_is_a_scope_in_systemctl_status_and_delete_removes_it(sdrt, make_bundle):
    cid = start(sdrt, make_bundle(["sleep", "1000"]))
    unit = f"runc-{cid}.scope"
    pid = sdrt.rt.state(cid)["pid"]
    s = status(unit)
    assert s.returncode == 0, s
    assert "Active: active (running)" in s.stdout, s.stdout
    assert f"CGroup: /system.slice/{unit}" in s.stdout and f"{pid} sleep 1000" in s.stdout
    assert f"ociruntime container {cid}" in s.stdout
    assert show(unit, "Delegate", "Slice") == {"Delegate": "yes", "Slice": "system.slice"}
    directory = f"/sys/fs/cgroup/system.slice/{unit}"
    assert recorded(sdrt, cid)["cgroup_paths"] == {"": directory}
    with open(f"/proc/{pid}/cgroup") as f:
        assert f.read() == f"0::/system.slice/{unit}\n"
    sdrt("kill", cid, "KILL", check=True)
    sdrt("delete", cid, check=True)
    assert_gone(unit, directory)


@needs_systemd
def test_slice_prefix_name_and_nested_slices(sdrt, make_bundle):
    cid = sdrt.new_id()
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["linux"]["cgroupsPath"] = f"ocitest-a.slice:ocitest:{cid}"
    start(sdrt, bundle.write(), cid)
    unit = f"ocitest-{cid}.scope"
    cgroup = f"/ocitest.slice/ocitest-a.slice/{unit}"
    assert f"CGroup: {cgroup}" in status(unit).stdout
    assert show(unit, "Slice") == {"Slice": "ocitest-a.slice"}
    sdrt("delete", "--force", cid, check=True)
    assert_gone(unit, "/sys/fs/cgroup" + cgroup)
    subprocess.run(["systemctl", "stop", "ocitest.slice"], check=True)  # what systemd made


# --- limits: enforced, and the unit's properties ----------------------------------------------


@needs_systemd
def test_memory_limit_oom_kills_and_is_the_units_memory_max(sdrt, make_bundle, event_streams):
    bundle = with_resources(make_bundle, ["sleep", "1000"],
                            {"memory": {"limit": 64 * MIB, "swap": 64 * MIB}})  # fmt: skip
    cid = start(sdrt, bundle)
    unit = f"runc-{cid}.scope"
    assert show(unit, "MemoryMax", "MemorySwapMax") == {
        "MemoryMax": str(64 * MIB), "MemorySwapMax": "0"
    }  # fmt: skip
    assert stats(sdrt, cid)["memory"]["usage"]["limit"] == 64 * MIB
    events = EventStream(sdrt.rt, cid, "100ms")
    event_streams.append(events)
    events.next_of("stats")
    r = sdrt("exec", cid, "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1")
    assert r.returncode == 137, r  # SIGKILL, from the OOM killer
    assert events.next_of("oom") == {"type": "oom", "id": cid}
    # systemd < 253 (Debian 12's 252) then stops the whole scope itself (a scope's
    # OOMPolicy was "stop" and fixed), concurrently with this delete: it must not mind.
    sdrt("delete", "--force", cid, check=True)
    assert events.wait() == 0
    assert_gone(unit, f"/sys/fs/cgroup/system.slice/{unit}")


@needs_systemd
def test_pids_limit_holds_and_is_the_units_tasks_max(sdrt, make_bundle):
    cid = start(sdrt, with_resources(make_bundle, ["sleep", "1000"], {"pids": {"limit": 20}}))
    assert show(f"runc-{cid}.scope", "TasksMax") == {"TasksMax": "20"}
    loop = "n=0; while [ $n -lt 100 ]; do sleep 1000 & n=$((n+1)); done; echo all forked"
    r = sdrt("exec", cid, "sh", "-c", loop)
    assert r.returncode != 0 and "can't fork" in r.stderr and "all forked" not in r.stdout, r
    pids = stats(sdrt, cid)["pids"]
    assert pids["limit"] == 20 and 10 < pids["current"] <= 20, pids
    assert len(pids_of(sdrt, cid)) <= 20


@needs_systemd
def test_cpu_quota_caps_busy_loops_and_update_changes_the_unit(sdrt, make_bundle, event_streams):
    bundle = with_resources(make_bundle, ["sh", "-c", f"({BUSY}) & {BUSY}"],
                            {"cpu": {"quota": 30000, "period": 100000}})  # fmt: skip
    cid = start(sdrt, bundle)
    unit = f"runc-{cid}.scope"
    assert show(unit, "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec") == {
        "CPUQuotaPerSecUSec": "300ms", "CPUQuotaPeriodUSec": "100ms"
    }  # fmt: skip
    events = EventStream(sdrt.rt, cid, "200ms")
    event_streams.append(events)
    share, throttled = cpu_share(events)
    assert 0.2 <= share <= 0.34 and throttled > 0.5, (share, throttled)

    sdrt("update", "--cpu-quota", "60000", cid, check=True)
    assert show(unit, "CPUQuotaPerSecUSec") == {"CPUQuotaPerSecUSec": "600ms"}
    with open(f"/sys/fs/cgroup/system.slice/{unit}/cpu.max") as f:
        assert f.read() == "60000 100000\n"
    # A new stream: the first one's samples from before the update are still queued.
    events = EventStream(sdrt.rt, cid, "200ms")
    event_streams.append(events)
    share, throttled = cpu_share(events)
    assert 0.36 <= share <= 0.66, (share, throttled)


@needs_systemd
def test_update_sets_the_units_properties(sdrt, make_bundle):
    bundle = with_resources(make_bundle, ["sleep", "1000"],
                            {"memory": {"limit": 64 * MIB}, "pids": {"limit": 100}})  # fmt: skip
    cid = start(sdrt, bundle)
    unit = f"runc-{cid}.scope"
    sdrt("update", "--memory", "128m", "--pids-limit", "50", "--cpu-share", "512", cid,
         check=True)  # fmt: skip
    assert show(unit, "MemoryMax", "TasksMax", "CPUWeight") == {
        "MemoryMax": str(128 * MIB), "TasksMax": "50", "CPUWeight": "20"
    }  # fmt: skip
    data = stats(sdrt, cid)
    assert data["memory"]["usage"]["limit"] == 128 * MIB and data["pids"]["limit"] == 50
    # A value the kernel refuses: the error names it, and the unit keeps the old values.
    r = sdrt("update", "--cpuset-cpus", "63", cid)
    assert r.returncode == 1 and "/linux/resources/cpu/cpus" in last_error(sdrt.rt), r
    assert show(unit, "MemoryMax")["MemoryMax"] == str(128 * MIB)


# --- pause, kill --all, events ----------------------------------------------------------------


@needs_systemd
def test_pause_resume_kill_all_and_events(sdrt, make_bundle):
    cid = start(sdrt, make_bundle(["sh", "-c", "sleep 1000 & sleep 1000 & wait"]))
    assert len(pids_of(sdrt, cid)) == 3
    sdrt("pause", cid, check=True)
    assert sdrt.rt.state(cid)["status"] == "paused"
    with open(f"/sys/fs/cgroup/system.slice/runc-{cid}.scope/cgroup.freeze") as f:
        assert f.read() == "1\n"
    sdrt("resume", cid, check=True)
    assert sdrt.rt.state(cid)["status"] == "running"
    assert stats(sdrt, cid)["pids"]["current"] == 3
    sdrt("kill", "--all", cid, "KILL", check=True)
    deadline = time.monotonic() + 30
    while pids_of(sdrt, cid):
        assert time.monotonic() < deadline, pids_of(sdrt, cid)
        time.sleep(0.1)
    sdrt("delete", cid, check=True)


# --- failures: one line, nothing left --------------------------------------------------------


@needs_systemd
def test_a_create_failing_halfway_stops_the_unit(sdrt, make_bundle, tmp_path):
    """A createRuntime hook that fails comes after the scope is started: the rollback
    stops it."""
    cid = sdrt.new_id()
    bundle = make_bundle(["true"])
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    r = sdrt("run", "--bundle", str(bundle.write().path), cid)
    assert r.returncode == 1, r
    assert_gone(f"runc-{cid}.scope", f"/sys/fs/cgroup/system.slice/runc-{cid}.scope")


@pytest.mark.parametrize(
    ("path", "words"),
    [("/abs/path", 'expected cgroupsPath to be of format "slice:prefix:name"'),
     ("nope:p:n", "invalid slice name: 'nope'"),
     ("system.slice:p:a+b", "is not a valid systemd unit name")],
)  # fmt: skip
def test_bad_cgroups_path_is_one_line_and_leaves_nothing(sdrt, make_bundle, path, words):
    bundle = make_bundle(["true"])
    bundle.config["linux"]["cgroupsPath"] = path
    cid = sdrt.new_id()
    r = sdrt("run", "--bundle", str(bundle.write().path), cid)
    assert r.returncode == 1 and r.stdout == "", r
    line = last_error(sdrt.rt)
    assert line.startswith("config.json: /linux/cgroupsPath: ") and words in line, line
    assert not os.path.exists(os.path.join(sdrt.root, cid))


@pytest.mark.skipif(BOOTED, reason="systemd runs here")
def test_without_systemd_the_flag_is_refused_in_one_line(sdrt, make_bundle):
    cid = sdrt.new_id()
    r = sdrt("run", "--bundle", str(make_bundle(["true"]).path), cid)
    assert r.returncode == 1, r
    assert "systemd support for managing cgroups is not available" in last_error(sdrt.rt)
    assert not os.path.exists(os.path.join(sdrt.root, cid))


# --- the socket: system bus, or systemd's private one -----------------------------------------


@needs_systemd
def test_without_the_system_bus_root_uses_systemds_private_socket(sdrt, make_bundle):
    """dbus-daemon hidden (a tmpfs over /run/dbus in a private mount namespace): the
    runtime talks to /run/systemd/private, and the container is a scope all the same."""
    assert os.path.exists("/run/dbus/system_bus_socket")  # the lane's normal path
    bundle = make_bundle(["sleep", "1000"])
    cid = sdrt.new_id()
    hide = 'mount -t tmpfs tmpfs /run/dbus && exec "$@"'
    base = [OCIRUNTIME, "--root", sdrt.root, "--log", sdrt.rt.log, "--log-format", "json",
            "--systemd-cgroup"]  # fmt: skip
    for args in (["run", "-d", "--bundle", str(bundle.path), cid], ["delete", "--force", cid]):
        # No pipe for the output: the container's init would hold it open.
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", hide, "sh",
                            *base, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip
        assert r.returncode == 0, last_error(sdrt.rt)
        if args[0] == "run":
            assert status(f"runc-{cid}.scope").returncode == 0
    assert_gone(f"runc-{cid}.scope", f"/sys/fs/cgroup/system.slice/runc-{cid}.scope")


# --- containerd: the runc shim with SystemdCgroup = true ----------------------------------------


@pytest.fixture
def systemd_containerd(rootfs_template: Path, tmp_path: Path) -> Iterator:
    subprocess.run([str(REPO / "tools" / "install-clients.sh"), "containerd"], check=True)
    image = "localhost/ocitest/busybox:latest"
    archive = oci_image.build_oci_archive(rootfs_template, tmp_path / "busybox.tar", image)
    ctd = containerd.Containerd(tmp_path / "ctd", "ocitest-systemd", [tmp_path / "rt-root"],
                                host_run=("systemd", "dbus"))  # fmt: skip
    (tmp_path / "ctd").mkdir()
    ctd.start()
    try:
        ctd.import_image(archive.path, image)
        yield ctd, image
    finally:
        leftovers = ctd.stop()
        assert leftovers == [], f"left behind: {leftovers}"


@needs_systemd
def test_containerd_with_systemd_cgroup_runs_a_container_through_us(systemd_containerd, tmp_path):
    """The shim passes --systemd-cgroup (the runc option SystemdCgroup = true, which ctr
    sets with --runc-systemd-cgroup) and the cgroupsPath ctr is given: the container is
    that scope, with ctr's memory limit as its MemoryMax; killed and deleted through
    ctr, nothing of it is left."""
    ctd, image = systemd_containerd
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "ociruntime-wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nexec '{OCIRUNTIME}' \"$@\"\n")
    wrapper.chmod(0o755)
    cid = "ctd-sd-" + os.urandom(4).hex()
    unit = f"ocitest-{cid}.scope"
    r = ctd.ctr(*ctd.run_args(wrapper, tmp_path / "rt-root", "-d", "--runc-systemd-cgroup",
                              "--cgroup", f"system.slice:ocitest:{cid}",
                              "--memory-limit", str(64 * MIB), image, cid, "sleep", "1000"),
                timeout=120)  # fmt: skip
    assert r.returncode == 0, (r, ctd.log_tail())
    try:
        assert "--systemd-cgroup" in log.read_text().split("\n")[0], log.read_text()
        pid = int(ctd.ctr("tasks", "ls").stdout.split(cid, 1)[1].split()[0])
        with open(f"/proc/{pid}/cgroup") as f:
            assert f.read() == f"0::/system.slice/{unit}\n"
        assert status(unit).returncode == 0
        assert show(unit, "MemoryMax") == {"MemoryMax": str(64 * MIB)}
    finally:
        ctd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        deadline = time.monotonic() + 60
        while "RUNNING" in ctd.ctr("tasks", "ls").stdout:
            assert time.monotonic() < deadline, ctd.ctr("tasks", "ls")
            time.sleep(0.2)
        ctd.ctr("tasks", "delete", cid)
        ctd.ctr("containers", "delete", cid)
    assert f"delete {cid}" in log.read_text() or f"delete --force {cid}" in log.read_text()
    assert_gone(unit, f"/sys/fs/cgroup/system.slice/{unit}")


# --- Kubernetes' path: the cri plugin with SystemdCgroup = true -------------------------------


class SystemdCRIContainerd(cri.CRIContainerd):
    """testkit/cri.py's containerd with README's ociruntime entry plus `SystemdCgroup =
    true` in its options (a node whose kubelet uses the systemd cgroup driver), the
    host's /run/systemd and /run/dbus visible to the shim and the runtime; the pods'
    cgroup parent is a slice, as the kubelet's systemd driver names them."""

    def __init__(self, base: Path, binary: Path, sandbox_image: str, slice_: str) -> None:
        self.runtime_root = base / "runtime-root"
        self.cgroup_parent = slice_
        config = cri.cri_config(base, binary, sandbox_image, self.runtime_root)
        containerd.Containerd.__init__(
            self, base, cri.CRI_NAMESPACE, [self.runtime_root],
            cri_config=config + "  SystemdCgroup = true\n", host_run=("systemd", "dbus"),
        )  # fmt: skip

    def _remove_namespace_cgroups(self) -> list[str]:
        """The pods' slices are systemd's: stopped, from the top one (ocitestpods.slice);
        a pod's scope still there is a leftover."""
        left = [u for u in units() if u.startswith("cri-containerd-")]
        top = self.cgroup_parent.split("-", 1)[0] + ".slice"
        subprocess.run(["systemctl", "stop", top], capture_output=True)
        return [f"unit {u}" for u in left]


@needs_systemd
def test_cri_pod_with_systemd_cgroup_runs_as_scopes(rootfs_template, tmp_path):
    """As Kubernetes configures it: the kubelet (here our CRI client) passes a slice as
    the pod's cgroup parent, the cri plugin (SystemdCgroup = true) gives the runtime
    `--systemd-cgroup` and cgroupsPath `SLICE:cri-containerd:ID`: the sandbox and the
    container are scopes in the pod's slice, the container's memory limit its
    MemoryMax; removing the pod removes both units."""
    subprocess.run([str(REPO / "tools" / "install-clients.sh"), "containerd"], check=True)
    pause, image = "localhost/ocitest/pause:latest", "localhost/ocitest/busybox:latest"
    oci_image.build_oci_archive(rootfs_template, tmp_path / "pause.tar", pause,
                                cmd=["sleep", "2147483647"])  # fmt: skip
    oci_image.build_oci_archive(rootfs_template, tmp_path / "busybox.tar", image)
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "ociruntime-wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nexec '{OCIRUNTIME}' \"$@\"\n")
    wrapper.chmod(0o755)
    uid = os.urandom(4).hex()
    slice_ = f"ocitestpods-pod{uid}.slice"
    base = tmp_path / "cri"
    base.mkdir()
    ctd = SystemdCRIContainerd(base, wrapper, pause, slice_)
    call = cri.CRIClient(ctd.address, cri.load_api(tmp_path))
    ctd.start(timeout=60)
    try:
        _until(call.ready)
        for name in (pause, image):
            ctd.import_image(tmp_path / f"{name.split('/')[-1].split(':')[0]}.tar", name)
            _until(lambda n=name: call("ImageStatus", image={"image": n}).image.id)
        _pod_with_a_scope(call, slice_, uid, image)
    finally:
        call.close()
        leftovers = ctd.stop()
    assert leftovers == [], f"left behind: {leftovers}"
    assert "--systemd-cgroup" in log.read_text(), log.read_text()


def _until(check, timeout: float = 60):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.2)
    return value


def _pod_with_a_scope(call, slice_: str, uid: str, image: str) -> None:  # noqa: ANN001
    namespaces = {"network": "NODE", "pid": "POD", "ipc": "POD"}
    config = {
        "metadata": {"name": "sd-pod", "uid": uid, "namespace": "ocitest"},
        "linux": {"cgroup_parent": slice_,
                  "security_context": {"namespace_options": namespaces}},
    }  # fmt: skip
    pod = call("RunPodSandbox", config=config, runtime_handler="ociruntime").pod_sandbox_id
    try:
        container = {
            "metadata": {"name": "c"}, "image": {"image": image},
            "command": ["sleep", "1000"],
            "linux": {"resources": {"memory_limit_in_bytes": 64 * MIB},
                      "security_context": {"namespace_options": namespaces}},
        }  # fmt: skip
        cid = call("CreateContainer", pod_sandbox_id=pod, config=container,
                   sandbox_config=config).container_id  # fmt: skip
        call("StartContainer", container_id=cid)
        cgroup_of = f"/ocitestpods.slice/{slice_}/cri-containerd-"
        for unit_id in (pod, cid):
            s = status(f"cri-containerd-{unit_id}.scope")
            assert s.returncode == 0 and f"CGroup: {cgroup_of}{unit_id}.scope" in s.stdout, s
        assert show(f"cri-containerd-{cid}.scope", "MemoryMax") == {"MemoryMax": str(64 * MIB)}
        r = call("ExecSync", container_id=cid, cmd=["cat", "/proc/self/cgroup"], timeout=60)
        assert r.exit_code == 0, r
    finally:
        call("StopPodSandbox", pod_sandbox_id=pod)
        call("RemovePodSandbox", pod_sandbox_id=pod)
    # The shim's last delete may come after RemovePodSandbox returned (tests/test_cri.py).
    for unit_id in (pod, cid):
        _until(lambda u=unit_id: status(f"cri-containerd-{u}.scope").returncode == 4)
