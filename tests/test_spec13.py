"""Spec 1.3 fields that were validated and then ignored (issue #11 item 22).

`linux.memoryPolicy` is applied with set_mempolicy(2) by the init (and by exec's child:
the policy is the container's, and an exec'd process does not descend from the init).
Real containers read it back from /proc/self/numa_maps: the kernel prints the task's
policy for every mapping without one of its own ("bind:0", "prefer:0", "interleave:0",
"local", "default", with "=static" or "=relative" for the node flags). This host has
one NUMA node, so node 0 is the only one a policy can name. runc 1.1.5 predates the
field (it shows "default"); the refusals follow runc 1.4's conversion and the kernel's
EINVAL rules (see ociruntime/process/mempolicy.py).

`linux.intelRdt` is refused on a host without resctrl, in runc's words after the pointer
(runc 1.1.5's for l3CacheSchema and memBwSchema, compared here; runc 1.2's for the rest,
which 1.1.5 ignores).
"""

from __future__ import annotations

import os

import pytest
from test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    expect_error,
    no_leftover_processes,
)
from test_isolation import run_under_runc

from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import constants as k
from ociruntime.process import mempolicy
from testkit.runc import run_bundle

NUMA_MAPS = ["head", "-n", "1", "/proc/self/numa_maps"]
WHERE = "config.json: /linux/memoryPolicy"


def policy_of(numa_maps_line: str) -> str:
    """The policy field of a numa_maps line: "5600... bind:0 file=/bin/busybox ..."."""
    return numa_maps_line.split()[1]


def bundle_with_policy(make_bundle, policy: dict | None, args: list[str] | None = None):
    bundle = make_bundle(args or NUMA_MAPS)
    if policy is not None:
        bundle.config["linux"]["memoryPolicy"] = policy
    return bundle.write()


# --- pure: the plan ------------------------------------------------------------------


@pytest.mark.pure
@pytest.mark.parametrize(
    ("spec", "mode", "nodes"),
    [
        ({"mode": "MPOL_BIND", "nodes": "0"}, k.MPOL_BIND, [0]),
        ({"mode": "MPOL_INTERLEAVE", "nodes": "0-1,3"}, k.MPOL_INTERLEAVE, [0, 1, 3]),
        ({"mode": "MPOL_PREFERRED", "nodes": ""}, k.MPOL_PREFERRED, []),
        ({"mode": "MPOL_LOCAL"}, k.MPOL_LOCAL, []),
        ({"mode": "MPOL_DEFAULT"}, k.MPOL_DEFAULT, []),
        (
            {"mode": "MPOL_BIND", "nodes": "1", "flags": ["MPOL_F_STATIC_NODES"]},
            k.MPOL_BIND | k.MPOL_F_STATIC_NODES,
            [1],
        ),
        (
            {"mode": "MPOL_PREFERRED_MANY", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
            k.MPOL_PREFERRED_MANY | k.MPOL_F_NUMA_BALANCING,
            [0],
        ),
        # relative nodes index the allowed set (folded): any number is valid
        (
            {"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "7", "flags": ["MPOL_F_RELATIVE_NODES"]},
            k.MPOL_WEIGHTED_INTERLEAVE | k.MPOL_F_RELATIVE_NODES,
            [7],
        ),
    ],
)
def test_plan_turns_names_into_the_syscalls_arguments(spec, mode, nodes) -> None:
    planned = mempolicy.plan(spec, WHERE, online={0, 1, 2, 3})
    assert (planned.mode, planned.nodes) == (mode, nodes)


#: (spec, the pointer, runc's or the kernel's words after it)
REFUSED = {
    "unknown-mode": ({"mode": "MPOL_FOO"}, "/mode", 'invalid memory policy mode "MPOL_FOO"'),
    "unknown-flag": (
        {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_X"]},
        "/flags/1",
        'invalid memory policy flag "MPOL_F_X"',
    ),
    "bad-nodes": (
        {"mode": "MPOL_BIND", "nodes": "0-x"},
        "/nodes",
        'invalid memory policy nodes "0-x"',
    ),
    "node-not-online": ({"mode": "MPOL_BIND", "nodes": "0,5"}, "/nodes", "node 5 is not online"),
    "nodes-for-local": (
        {"mode": "MPOL_LOCAL", "nodes": "0"},
        "/nodes",
        "MPOL_LOCAL takes no nodes",
    ),
    "nodes-for-default": (
        {"mode": "MPOL_DEFAULT", "nodes": "0"},
        "/nodes",
        "MPOL_DEFAULT takes no nodes",
    ),
    "flags-for-local": (
        {"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]},
        "/flags",
        "MPOL_LOCAL takes no flags",
    ),
    "bind-without-nodes": ({"mode": "MPOL_BIND"}, "/nodes", "MPOL_BIND needs at least one node"),
    "interleave-empty-nodes": (
        {"mode": "MPOL_INTERLEAVE", "nodes": ""},
        "/nodes",
        "MPOL_INTERLEAVE needs at least one node",
    ),
    "static-and-relative": (
        {
            "mode": "MPOL_BIND",
            "nodes": "0",
            "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"],
        },
        "/flags",
        "exclude each other",
    ),
    "balancing-without-bind": (
        {"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
        "/flags",
        "MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY",
    ),
}


@pytest.mark.pure
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_plan_refuses_naming_the_field(case: str) -> None:
    spec, at, words = REFUSED[case]
    with pytest.raises(RuntimeFailure) as e:
        mempolicy.plan(spec, WHERE, online={0})
    message = str(e.value)
    assert message.startswith(f"{WHERE}{at}: "), message
    assert words in message, message


@pytest.mark.pure
def test_kernel_refusals_use_the_kernels_words_as_runc_reports_them() -> None:
    with pytest.raises(RuntimeFailure, match="set_mempolicy: invalid argument: MPOL_LOCAL"):
        mempolicy.plan({"mode": "MPOL_LOCAL", "nodes": "0"}, WHERE, online={0})


@pytest.mark.pure
def test_online_nodes_reads_the_kernel_list(tmp_path) -> None:
    path = tmp_path / "online"
    path.write_text("0-2,4\n")
    assert mempolicy.online_nodes(str(path)) == {0, 1, 2, 4}
    assert mempolicy.online_nodes(str(tmp_path / "absent")) is None  # no NUMA: unchecked


@pytest.mark.pure
def test_apply_calls_set_mempolicy_with_mode_flags_and_nodes(monkeypatch) -> None:
    from kernelfake import install

    fake = install(monkeypatch)
    spec = {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}
    mempolicy.plan(spec, WHERE, online={0}).apply()
    assert ("set_mempolicy", k.MPOL_BIND | k.MPOL_F_STATIC_NODES, [0]) in fake.calls


# --- real containers -----------------------------------------------------------------


def _one_node() -> None:
    if not os.path.exists("/proc/self/numa_maps"):
        pytest.skip("kernel without NUMA (no /proc/self/numa_maps)")


@pytest.mark.parametrize(
    ("policy", "shown"),
    [
        (None, "default"),
        ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
        ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
        ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
        ({"mode": "MPOL_LOCAL"}, "local"),
        ({"mode": "MPOL_DEFAULT"}, "default"),
        ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
        (
            {"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]},
            "prefer=relative:0",
        ),  # fmt: skip
    ],
)
def test_the_container_process_runs_under_the_policy(runtime, make_bundle, policy, shown):
    """Before: every container showed "default" whatever the config asked."""
    _one_node()
    bundle = bundle_with_policy(make_bundle, policy)
    r = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=True)
    assert policy_of(r.stdout) == shown, r.stdout


def test_an_exec_d_process_runs_under_the_policy_too(runtime, make_bundle):
    _one_node()
    bundle = bundle_with_policy(make_bundle, {"mode": "MPOL_BIND", "nodes": "0"}, ["sleep", "1000"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    r = runtime("exec", cid, *NUMA_MAPS, check=True)
    assert policy_of(r.stdout) == "bind:0", r.stdout
    r = runtime("exec", cid, "head", "-n", "1", "/proc/1/numa_maps", check=True)
    assert policy_of(r.stdout) == "bind:0", r.stdout  # the init's


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_run_refuses_before_anything_is_made(runtime, make_bundle, case):
    """Each refusal is create's, before a state dir, cgroup or process exists (the
    fixtures check that nothing is left behind). An unknown mode or flag is the schema's
    refusal first: it names the same field."""
    spec, at, words = REFUSED[case]
    bundle = bundle_with_policy(make_bundle, spec)
    needles = [f"/linux/memoryPolicy{at}"]
    if not case.startswith("unknown-"):
        needles.append(words)
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()], *needles)


def test_runc_1_1_5_ignores_the_field(make_bundle):
    """The reference predates spec 1.3's memoryPolicy: it runs the container under the
    default policy (so the target is runc 1.4's semantics, not 1.1.5's)."""
    _one_node()
    bundle = bundle_with_policy(make_bundle, {"mode": "MPOL_BIND", "nodes": "0"})
    assert policy_of(run_under_runc(bundle)) == "default"


# --- intelRdt ------------------------------------------------------------------------


def _runc_error(bundle) -> str:
    """runc's refusal of the bundle: the message of its one error record."""
    p = run_bundle(str(bundle.path))
    assert p.returncode != 0, p
    return p.stderr.strip().split("runc run failed: ", 1)[1].rstrip('"')


@pytest.fixture
def no_resctrl() -> None:
    if os.path.isdir("/sys/fs/resctrl/info"):
        pytest.skip("this host has resctrl: ociruntime refuses intelRdt there for another reason")


@pytest.mark.parametrize("key", ["l3CacheSchema", "memBwSchema"])
def test_intel_rdt_schemas_are_refused_in_runc_s_words(runtime, make_bundle, no_resctrl, key):
    bundle = make_bundle(["true"])
    bundle.config["linux"]["intelRdt"] = {key: "L3:0=7f0" if key[0] == "l" else "MB:0=20"}
    bundle.write()
    args = ["run", "--bundle", str(bundle.path), runtime.new_id()]
    message = expect_error(runtime, args, f"config.json: /linux/intelRdt/{key}: ")
    assert message.endswith(_runc_error(bundle)), message


@pytest.mark.parametrize(
    "rdt", [{"closID": "x"}, {"schemata": ["L3:0=7f0"]}, {"enableMonitoring": True}]
)
def test_intel_rdt_is_refused_without_resctrl(runtime, make_bundle, no_resctrl, rdt):
    """runc 1.1.5 runs these silently outside any resctrl group; runc 1.2 and later
    refuse them on a host without RDT, in these words."""
    bundle = make_bundle(["true"])
    bundle.config["linux"]["intelRdt"] = rdt
    bundle.write()
    expect_error(
        runtime,
        ["run", "--bundle", str(bundle.path), runtime.new_id()],
        "config.json: /linux/intelRdt: intelRdt is specified in config, "
        "but Intel RDT is not enabled",
    )


# --- the audit: fields applied without a test of their own until now ------------------


def test_domainname_is_set_as_the_spec_says(runtime, make_bundle):
    """Applied (runc 1.2 and later too); runc 1.1.5 accepts it and leaves "(none)"."""
    bundle = make_bundle(["cat", "/proc/sys/kernel/domainname"])
    bundle.config["domainname"] = "example.org"
    bundle.write()
    r = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=True)
    assert r.stdout.strip() == "example.org"
    assert run_under_runc(bundle).strip() == "(none)"


def test_a_device_gets_its_file_mode_uid_and_gid_as_with_runc(runtime, make_bundle):
    bundle = make_bundle(["stat", "-c", "%a %u %g %t %T", "/dev/mydev"])
    device = {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
              "uid": 7, "gid": 8}  # fmt: skip
    bundle.config["linux"]["devices"] = [device]
    bundle.write()
    r = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=True)
    assert r.stdout.split() == ["640", "7", "8", "1", "3"], r.stdout
    assert run_under_runc(bundle) == r.stdout
