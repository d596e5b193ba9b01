"""`ociruntime.cgroups.resources`: linux.resources as cgroup writes on v1, v2 and hybrid hosts.

Pure translation, checked against runc's rules (libcontainer/cgroups/fs, fs2 and the
v1 -> v2 conversions in cgroups/utils.go): no container, no cgroup file system.
"""

from __future__ import annotations

import pytest

from ociruntime.cgroups import resources as r
from ociruntime.errors import RuntimeFailure

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
      "net_cls", "net_prio", "rdma")  # fmt: skip
V2 = ("cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc")


def where_v1(controller: str) -> str | None:
    return "v1" if controller in V1 else None


def where_v2(controller: str) -> str | None:
    return "v2" if not controller or controller in V2 else None


def where_hybrid(controller: str) -> str | None:
    """This machine: every controller on v1 except hugetlb, which only v2 has."""
    if controller in V1 and controller not in ("hugetlb", "net_cls", "net_prio", "rdma"):
        return "v1"
    return "v2" if controller == "hugetlb" else None


def no_files(controller: str, name: str) -> str | None:
    return None


def plan(resources: dict, where=where_v1, read=no_files, mode: str = "v1"):
    settings, warnings = r.plan(resources, where, read, mode)
    return [s.as_tuple() for s in settings], warnings


def writes_of(*lines: str) -> list[tuple[str, str, str]]:
    """`FILE=VALUE` lines as plan's (controller, file, value): the file's prefix names its
    controller."""
    return [(f.split(".", 1)[0], f, v) for f, v in (line.split("=", 1) for line in lines)]


# --- conversions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(0, 0), (2, 1), (1024, 39), (512, 20), (262144, 10000), (100, 4)],
)
def test_shares_to_weight_is_runcs_formula(shares: int, weight: int) -> None:
    assert r.shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(0, 0), (10, 1), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight_is_runcs_formula(blkio: int, io: int) -> None:
    assert r.blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(
    ("swap", "limit", "v2"),
    [
        (0, 0, 0),  # nothing set
        (0, -1, -1),  # unlimited memory, swap unset: unlimited swap too
        (-1, 1 << 26, -1),  # unlimited swap
        (0, 1 << 26, 0),  # swap unset: left alone
        (1 << 27, 1 << 26, 1 << 26),  # v2 swap excludes memory
        (1 << 26, 1 << 26, 0),  # memory+swap == memory: no swap at all
    ],
)
def test_swap_on_v2_is_memory_plus_swap_minus_memory(swap: int, limit: int, v2: int) -> None:
    assert r.swap_to_v2(swap, limit) == v2


@pytest.mark.parametrize(
    ("swap", "limit", "message"),
    [(1 << 25, 1 << 26, "at least the memory limit"), (1 << 25, 0, "needs a memory limit"),
     (1 << 25, -1, "needs a memory limit")],
)  # fmt: skip
def test_swap_on_v2_refuses_what_runc_refuses(swap: int, limit: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        r.swap_to_v2(swap, limit)


def test_cpu_max() -> None:
    assert r.cpu_max(30000, 100000) == "30000 100000"
    assert r.cpu_max(-1, 100000) == "max 100000"
    assert r.cpu_max(30000, 0) == "30000"  # the kernel keeps its period
    assert r.cpu_max(0, 50000) == "max 50000"


def test_v1_memory_and_swap_order_keeps_limit_below_memsw() -> None:
    """v1 refuses memory.limit > memsw.limit at any moment: growing swap goes first."""
    assert r.swap_first(current_limit=1 << 26, limit=1 << 27, swap=1 << 28)
    assert r.swap_first(current_limit=1 << 30, limit=1 << 27, swap=-1)
    assert not r.swap_first(current_limit=1 << 30, limit=1 << 26, swap=1 << 27)


# --- plans -----------------------------------------------------------------------------


def test_v1_plan_writes_the_values_as_they_are() -> None:
    writes, warnings = plan({
        "memory": {"limit": 1 << 26, "reservation": 1 << 25, "swappiness": 10,
                   "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 30000, "period": 100000, "cpus": "0", "mems": "0",
                "realtimeRuntime": 1000, "realtimePeriod": 1000000, "idle": 1, "burst": 500},
        "pids": {"limit": 20},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    })  # fmt: skip
    assert warnings == []
    assert writes == writes_of(
        "pids.max=20",
        "memory.limit_in_bytes=67108864",
        "memory.soft_limit_in_bytes=33554432",
        "memory.oom_control=1",
        "memory.swappiness=10",
        "cpu.shares=512",
        "cpu.cfs_period_us=100000",
        "cpu.cfs_burst_us=500",
        "cpu.cfs_quota_us=30000",
        "cpu.idle=1",
        "cpu.rt_period_us=1000000",
        "cpu.rt_runtime_us=1000",
        "cpuset.cpus=0",
        "cpuset.mems=0",
        "hugetlb.2MB.limit_in_bytes=2097152",
        "net_cls.classid=1048577",
        "net_prio.ifpriomap=eth0 5",
        "rdma.max=mlx5_1 hca_handle=3 hca_object=10000",
    )


def test_v1_unlimited_values() -> None:
    writes, _ = plan({"pids": {"limit": -1}, "cpu": {"quota": -1}, "memory": {"limit": -1}})
    assert writes == [
        ("pids", "pids.max", "max"),
        ("memory", "memory.memsw.limit_in_bytes", "-1"),  # as runc: swap follows memory,
        ("memory", "memory.limit_in_bytes", "-1"),  # lifted first: memory <= memsw always
        ("cpu", "cpu.cfs_quota_us", "-1"),
    ]


def test_v1_swap_goes_first_when_it_grows_past_the_current_limit() -> None:
    def read(controller: str, name: str) -> str | None:
        return "9223372036854771712\n" if name == "memory.limit_in_bytes" else None

    writes, _ = plan({"memory": {"limit": 1 << 26, "swap": 1 << 27}}, read=read)
    assert [w[1] for w in writes] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]

    def read_small(controller: str, name: str) -> str | None:
        return "1048576\n" if name == "memory.limit_in_bytes" else None

    writes, _ = plan({"memory": {"limit": 1 << 26, "swap": 1 << 27}}, read=read_small)
    assert [w[1] for w in writes] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_block_io_falls_back_to_bfq_files() -> None:
    settings, _ = r.plan(
        {"blockIO": {"weight": 500, "leafWeight": 300,
                     "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 10}],
                     "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                     "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]}},
        where_v1, no_files, "v1",
    )  # fmt: skip
    assert [s.as_tuple() for s in settings] == [
        ("blkio", "blkio.weight", "500"),
        ("blkio", "blkio.leaf_weight", "300"),
        ("blkio", "blkio.weight_device", "8:0 600"),
        ("blkio", "blkio.leaf_weight_device", "8:0 10"),
        ("blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio", "blkio.throttle.write_iops_device", "8:16 100"),
    ]
    assert settings[0].fallback.as_tuple() == ("blkio", "blkio.bfq.weight", "500")
    assert settings[2].fallback.as_tuple() == ("blkio", "blkio.bfq.weight_device", "8:0 600")


def test_v2_plan_converts_v1_values() -> None:
    writes, warnings = plan(
        {
            "memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25},
            "cpu": {"shares": 1024, "quota": 30000, "period": 100000, "burst": 1000,
                    "cpus": "0-1", "idle": 0},
            "pids": {"limit": 20},
            "hugepageLimits": [{"pageSize": "1GB", "limit": 0}],
        },
        where=where_v2, mode="v2",
    )  # fmt: skip
    assert warnings == []
    assert writes == writes_of(
        "pids.max=20",
        "memory.swap.max=67108864",
        "memory.max=67108864",
        "memory.low=33554432",
        "cpu.weight=39",
        "cpu.idle=0",
        "cpu.max=30000 100000",
        "cpu.max.burst=1000",
        "cpuset.cpus=0-1",
        "hugetlb.1GB.max=0",
    )


def test_v2_swap_equal_to_memory_disables_swap() -> None:
    writes, _ = plan({"memory": {"limit": 1 << 26, "swap": 1 << 26}}, where=where_v2, mode="v2")
    assert writes == [("memory", "memory.swap.max", "0"), ("memory", "memory.max", "67108864")]


def test_v2_unlimited_memory_means_unlimited_swap() -> None:
    settings, _ = r.plan({"memory": {"limit": -1}}, where_v2, no_files, "v2")
    assert [s.as_tuple() for s in settings] == [
        ("memory", "memory.swap.max", "max"),
        ("memory", "memory.max", "max"),
    ]
    assert settings[0].flags & r.OPTIONAL  # no swap accounting: nothing to lift


def test_v2_block_io_prefers_bfq_then_converted_io_weight() -> None:
    bio = {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
           "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
           "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}]}  # fmt: skip
    settings, _ = r.plan({"blockIO": bio}, where_v2, no_files, "v2")
    assert [s.as_tuple() for s in settings] == [
        ("io", "io.bfq.weight", "500"),
        ("io", "io.weight", "8:0 910"),  # no per-device BFQ: io.weight, converted
        ("io", "io.max", "8:0 rbps=1048576"),
        ("io", "io.max", "8:0 wbps=max"),  # v1's rate 0 is "no limit"
    ]
    assert settings[0].fallback.as_tuple() == ("io", "io.weight", "4950")

    def bfq(controller: str, name: str) -> str | None:
        return "default 100\n" if name == "io.bfq.weight" else None

    settings, _ = r.plan({"blockIO": bio}, where_v2, bfq, "v2")
    assert settings[1].as_tuple() == ("io", "io.bfq.weight", "8:0 100")


def test_v2_warns_about_what_it_cannot_do() -> None:
    writes, warnings = plan(
        {"memory": {"swappiness": 10, "disableOOMKiller": True, "kernel": 1 << 20},
         "cpu": {"realtimeRuntime": 1000}, "blockIO": {"leafWeight": 100},
         "network": {"classID": 7}},
        where=where_v2, mode="v2",
    )  # fmt: skip
    assert writes == []
    assert len(warnings) == 6 and all(w.endswith("; ignored") for w in warnings)
    assert warnings[0].startswith("config.json: /linux/resources/memory/kernel: 1048576: ")


def test_unified_only_on_v2_hosts() -> None:
    writes, _ = plan({"unified": {"memory.high": "1G", "io.weight": "50"}}, where_v2, mode="v2")
    assert writes == [("", "memory.high", "1G"), ("", "io.weight", "50")]
    for mode, where in (("v1", where_v1), ("hybrid", where_hybrid)):
        with pytest.raises(
            RuntimeFailure,
            match=f"/unified: .*: invalid configuration: cannot use unified on cgroup v1 .*{mode}",
        ):
            plan({"unified": {"memory.high": "1G"}}, where, mode=mode)
    with pytest.raises(RuntimeFailure, match="no slashes"):
        plan({"unified": {"../memory.high": "1G"}}, where_v2, mode="v2")


def test_hybrid_routes_each_controller_where_it_is() -> None:
    writes, _ = plan(
        {"memory": {"limit": 1 << 26}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]},
        where=where_hybrid, mode="hybrid",
    )  # fmt: skip
    assert writes == [
        ("memory", "memory.limit_in_bytes", "67108864"),
        ("hugetlb", "hugetlb.2MB.max", "0"),
    ]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"memory": {"swappiness": 101}}, "/linux/resources/memory/swappiness: 101: valid range"),
        ({"memory": {"limit": 1 << 26, "swap": 1 << 25}},
         "/linux/resources/memory/swap: 33554432: memory\\+swap must be at least memory.limit"),
        ({"memory": {"swap": 1 << 25}}, "/memory/swap: 33554432: a swap limit needs a memory"),
        ({"network": {"classID": 5}}, "/network/classID: 5: the net_cls cgroup controller is not"),
        ({"rdma": {"mlx": {"hcaHandles": 1}}}, "/rdma/mlx: mlx hca_handle=1: the rdma cgroup"),
    ],
)  # fmt: skip
def test_bad_values_name_field_and_value(resources: dict, message: str) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        plan(resources, where=where_hybrid, mode="hybrid")


def test_check_before_update_refuses_limits_at_or_below_usage() -> None:
    def read(controller: str, name: str) -> str | None:
        return {"memory.usage_in_bytes": "50000000\n", "memory.current": "50000000\n"}.get(name)

    for where, mode in ((where_v1, "v1"), (where_v2, "v2")):
        mem = {"limit": 40000000, "checkBeforeUpdate": True}
        with pytest.raises(RuntimeFailure, match="/memory/limit: 40000000: not above the current"):
            plan({"memory": mem}, where, read, mode)
        plan({"memory": dict(mem, limit=60000000)}, where, read, mode)  # above: fine
        plan({"memory": dict(mem, checkBeforeUpdate=False)}, where, read, mode)  # kernel decides


def test_unset_values_write_nothing() -> None:
    """As in runc, 0 is "not set" for the numeric limits."""
    empty = {"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0, "cpus": ""},
             "pids": {"limit": 0}, "blockIO": {"weight": 0}, "network": {"classID": 0}}  # fmt: skip
    assert plan(empty) == ([], [])
    assert plan(empty, where=where_v2, mode="v2") == ([], [])
