"""The systemd cgroup driver's pure parts, on any host (no systemd needed): runc's reading
of `linux.cgroupsPath` under `--systemd-cgroup`, systemd's slice expansion, and the unit
properties the resources become (cgroups/systemd.py). The driver against a real
systemd is tests/test_systemd_cgroup.py, in the systemd lane."""

from __future__ import annotations

import pytest

from ociruntime.cgroups import systemd
from ociruntime.cgroups.cgroupfs import Hierarchy
from ociruntime.errors import RuntimeFailure

pytestmark = pytest.mark.pure

INF = systemd.INFINITY


@pytest.mark.parametrize(
    ("name", "path"),
    [("system.slice", "/system.slice"), ("-.slice", "/"),
     ("a-b.slice", "/a.slice/a-b.slice"),
     ("test-a-b.slice", "/test.slice/test-a.slice/test-a-b.slice"),
     ("kubepods-besteffort-pod1_2.slice",
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1_2.slice")],
)  # fmt: skip
def test_expand_slice_nests_by_dashes(name: str, path: str) -> None:
    assert systemd.expand_slice(name) == path


@pytest.mark.parametrize("name", [".slice", "a", "a.scope", "a/b.slice", "a--b.slice",
                                  "-a.slice", "a-.slice", ""])  # fmt: skip
def test_expand_slice_refuses_what_systemd_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="invalid slice name"):
        systemd.expand_slice(name)


def test_empty_path_is_runcs_default() -> None:
    scope = systemd.parse_path("", "abc")
    assert (scope.slice, scope.unit) == ("system.slice", "runc-abc.scope")
    assert scope.cgroup == "/system.slice/runc-abc.scope"
    assert systemd.parse_path(None, "abc").unit == "runc-abc.scope"


@pytest.mark.parametrize(
    ("path", "slice_", "unit", "cgroup"),
    [("system.slice:docker:1234", "system.slice", "docker-1234.scope",
      "/system.slice/docker-1234.scope"),
     (":cri-containerd:ab", "system.slice", "cri-containerd-ab.scope",
      "/system.slice/cri-containerd-ab.scope"),
     ("kubepods-burstable-pod9.slice:cri-containerd:ab", "kubepods-burstable-pod9.slice",
      "cri-containerd-ab.scope",
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod9.slice"
      "/cri-containerd-ab.scope"),
     ("-.slice:p:n", "-.slice", "p-n.scope", "/p-n.scope"),
     ("machine.slice::n", "machine.slice", "n.scope", "/machine.slice/n.scope")],
)  # fmt: skip
def test_slice_prefix_name(path: str, slice_: str, unit: str, cgroup: str) -> None:
    scope = systemd.parse_path(path, "ignored")
    assert (scope.slice, scope.unit, scope.cgroup) == (slice_, unit, cgroup)


@pytest.mark.parametrize(
    ("path", "words"),
    [("/sys/fs/cgroup/x", 'expected cgroupsPath to be of format "slice:prefix:name" for '
                          'systemd cgroups, got "/sys/fs/cgroup/x" instead'),
     ("a:b", 'expected cgroupsPath to be of format "slice:prefix:name"'),
     ("a.slice:b:c:d", 'expected cgroupsPath to be of format "slice:prefix:name"'),
     ("system:p:n", "invalid slice name: 'system'"),
     ("a--b.slice:p:n", "invalid slice name"),
     ("system.slice:p:", "the name (after the second colon) is empty"),
     ("system.slice:p:x.slice", "must be a scope, not a slice"),
     ("system.slice:p:a/b", "is not a valid systemd unit name"),
     ("system.slice:p:a+b", "is not a valid systemd unit name")],
)  # fmt: skip
def test_bad_paths_name_the_field(path: str, words: str) -> None:
    with pytest.raises(RuntimeFailure) as e:
        systemd.parse_path(path, "id")
    message = str(e.value)
    assert message.startswith("config.json: /linux/cgroupsPath: ") and words in message
    assert "\n" not in message


def test_an_id_systemd_refuses_is_refused_up_front() -> None:
    """Container ids may hold `+` and `,`, unit names may not."""
    with pytest.raises(RuntimeFailure, match="not a valid systemd unit name"):
        systemd.parse_path("", "a+b")


def props(resources: dict, v2: bool = True, version: int = 252) -> dict:
    found = systemd.resource_properties(resources, v2, version)
    assert len(found) == len(dict(found))  # each property once
    return dict(found)


def test_v2_properties() -> None:
    resources = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20},
        "cpu": {"shares": 1024, "quota": 30000, "period": 100000, "cpus": "0-2,9",
                "mems": "0"},
        "blockIO": {"weight": 500},
        "pids": {"limit": 20},
    }  # fmt: skip
    assert props(resources) == {
        "MemoryMax": ("t", 64 << 20),
        "MemoryLow": ("t", 32 << 20),
        "MemorySwapMax": ("t", 32 << 20),  # memory+swap - memory
        "CPUWeight": ("t", 39),  # runc's formula: 1 + (1024 - 2) * 9999 / 262142
        "CPUQuotaPeriodUSec": ("t", 100000),
        "CPUQuotaPerSecUSec": ("t", 300000),
        "AllowedCPUs": ("ay", bytes([0b111, 0b10])),
        "AllowedMemoryNodes": ("ay", bytes([1])),
        "IOWeight": ("t", 4950),
        "TasksMax": ("t", 20),
    }


def test_v1_properties() -> None:
    resources = {"memory": {"limit": 64 << 20, "reservation": 1}, "cpu": {"shares": 512},
                 "blockIO": {"weight": 500}, "pids": {"limit": -1}}  # fmt: skip
    assert props(resources, v2=False) == {
        "MemoryLimit": ("t", 64 << 20),
        "CPUShares": ("t", 512),
        "BlockIOWeight": ("t", 500),
        "TasksMax": ("t", INF),
    }


def test_unlimited_values_are_infinity() -> None:
    assert props({"memory": {"limit": -1}, "pids": {"limit": -1}}) == {
        "MemoryMax": ("t", INF),
        "MemorySwapMax": ("t", INF),  # unlimited memory, swap unset: unlimited too
        "TasksMax": ("t", INF),
    }
    assert props({"cpu": {"quota": -1, "period": 50000}}) == {
        "CPUQuotaPeriodUSec": ("t", 50000),
        "CPUQuotaPerSecUSec": ("t", INF),
    }


@pytest.mark.parametrize(
    ("quota", "period", "per_sec"),
    [(30000, 100000, 300000), (50000, 0, 500000), (1001, 100000, 20000),
     (123456, 1000000, 130000), (0, 100000, INF), (-1, 0, INF)],
)  # fmt: skip
def test_quota_rounds_up_to_systemds_percent(quota: int, period: int, per_sec: int) -> None:
    assert systemd.quota_per_sec(quota, period) == per_sec


def test_old_systemd_gets_no_property_it_lacks() -> None:
    """CPUQuotaPeriodUSec (242), AllowedCPUs/AllowedMemoryNodes (244): the files still
    get the values."""
    resources = {"cpu": {"quota": 30000, "period": 100000, "cpus": "0"}}
    assert props(resources, version=241) == {"CPUQuotaPerSecUSec": ("t", 300000)}
    assert "AllowedCPUs" in props(resources, version=244)


def test_a_bad_cpu_list_names_the_field() -> None:
    with pytest.raises(RuntimeFailure, match=r"/linux/resources/cpu/mems: 0-x"):
        props({"cpu": {"mems": "0-x"}})


PROC_DEVICES = """Character devices:
  1 mem
  4 /dev/vc/0
  5 /dev/tty
136 pts

Block devices:
  8 sd
259 blkext
"""


def test_device_rules_become_a_strict_allow_list() -> None:
    rules = [(False, "a *:* rwm"), (True, "c 1:3 rwm"), (True, "c 136:* rwm"),
             (True, "b 8:* r"), (True, "c *:* m")]  # fmt: skip
    assert systemd.device_properties(rules, PROC_DEVICES) == [
        ("DevicePolicy", ("s", "strict")),
        ("DeviceAllow", ("a(ss)", [("block-sd", "r"), ("char-*", "m"),
                                   ("/dev/char/1:3", "rwm"), ("char-pts", "rwm")])),
    ]  # fmt: skip


def test_allow_all_is_policy_auto_and_a_deny_list_is_left_to_our_rules() -> None:
    assert systemd.device_properties([(True, "a *:* rwm")], PROC_DEVICES) == [
        ("DevicePolicy", ("s", "auto")),
        ("DeviceAllow", ("a(ss)", [])),
    ]
    assert systemd.device_properties([(True, "a *:* rwm"), (False, "c 1:3 w")], "") == []


def test_device_group_from_proc_devices() -> None:
    assert systemd.device_group(PROC_DEVICES, "char", 5) == "char-/dev/tty"
    assert systemd.device_group(PROC_DEVICES, "block", 259) == "block-blkext"
    assert systemd.device_group(PROC_DEVICES, "block", 1) is None


def test_unit_properties_put_the_pid_in_a_delegated_scope() -> None:
    scope = systemd.parse_path("machine.slice:p:n", "id")
    found = dict(systemd.unit_properties(scope, 1234, v2=True))
    assert found["Slice"] == ("s", "machine.slice") and found["PIDs"] == ("au", [1234])
    assert found["Delegate"] == ("b", True) and found["DefaultDependencies"] == ("b", False)
    assert found["IOAccounting"] == ("b", True)
    assert "BlockIOAccounting" in dict(systemd.unit_properties(scope, 1, v2=False))


def test_placement_on_v2_hybrid_and_v1_hosts() -> None:
    """The scope's directory in every hierarchy: below the v2 root, and below PID 1's
    v1 cgroup without its init.scope (runc's getSubsystemPath), e.g. in a container
    whose PID 1 is systemd in /docker/abc/init.scope."""
    scope = systemd.parse_path("a-b.slice:p:n", "id")
    found = [
        Hierarchy("/sys/fs/cgroup/unified", frozenset(), "/"),
        Hierarchy("/sys/fs/cgroup/memory", frozenset({"memory"}), "/"),
        Hierarchy("/sys/fs/cgroup/cpu,cpuacct", frozenset({"cpu", "cpuacct"}), "/"),
    ]
    roots = {frozenset({"memory"}): "/", frozenset({"cpu", "cpuacct"}): "/docker/abc"}
    assert [d for _, d in systemd.placement(scope, found, roots)] == [
        "/sys/fs/cgroup/unified/a.slice/a-b.slice/p-n.scope",
        "/sys/fs/cgroup/memory/a.slice/a-b.slice/p-n.scope",
        "/sys/fs/cgroup/cpu,cpuacct/docker/abc/a.slice/a-b.slice/p-n.scope",
    ]
    root_slice = systemd.parse_path("-.slice:p:n", "id")
    assert [d for _, d in systemd.placement(root_slice, found[:1], {})] == [
        "/sys/fs/cgroup/unified/p-n.scope"
    ]


def test_system_bus_address_from_the_environment(monkeypatch) -> None:  # noqa: ANN001
    from ociruntime.cgroups import dbus

    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    assert dbus._system_bus_path() == "/run/dbus/system_bus_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:guid=x,path=/tmp/bus;tcp:host=h")
    assert dbus._system_bus_path() == "/tmp/bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "tcp:host=h,port=1")
    assert dbus._system_bus_path() == "/run/dbus/system_bus_socket"


def test_no_systemd_to_reach_is_one_line_naming_each_socket(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    from ociruntime.cgroups import dbus

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/bus")
    monkeypatch.setattr(dbus, "PRIVATE", f"{tmp_path}/private")
    with pytest.raises(RuntimeFailure) as e:
        dbus.Systemd()
    message = str(e.value)
    assert message.startswith("--systemd-cgroup: cannot reach systemd over D-Bus (")
    assert f"{tmp_path}/bus: No such file or directory" in message and "\n" not in message


def test_a_layout_under_slices_not_made_yet_finds_the_v2_root(tmp_path) -> None:  # noqa: ANN001
    """create checks the limits before systemd makes the pod's slices: the controllers
    are still the hierarchy's (a fake one here: a directory with cgroup.controllers)."""
    from ociruntime.cgroups.cgroupfs import Layout

    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    leaf = root / "a.slice" / "a-b.slice" / "p-n.scope"
    layout = Layout({"": str(leaf)})
    assert layout.v2_root() == str(root)
    assert layout.where("cpu") == "v2" and layout.where("rdma") is None
