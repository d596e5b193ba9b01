"""Our JSON Schemas, the generated fast validator and ociruntime.container.validation.

The reference is the official runtime-spec v1.3.0 schema set in shared/ (read only, never
copied into the project): every upstream fixture and every generated document must get the
same verdict from our schemas (through jsonschema), from the official schemas, and from the
generated validator that `create` runs without importing jsonschema.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT4

from ociruntime.container import _config_validator as fast
from ociruntime.container import schema_runtime
from ociruntime.container.validation import (
    ConfigInvalid,
    FeaturesInvalid,
    StateInvalid,
    check_config,
    check_features,
    check_state,
    schema_dir,
)
from ociruntime.errors import cut

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"


SPEC_CANDIDATES = [
    os.environ.get("OCI_RUNTIME_SPEC_DIR", ""),
    str(REPO.parent / "shared" / "oci-runtime-spec" / "v1.3.0"),
    "/work/shared/oci-runtime-spec/v1.3.0",
]
#: Said when the official schemas are missing: where they were looked for and how to get them.
SPEC_MISSING = (
    "official runtime-spec v1.3.0 schemas not found (no config-schema.json in "
    + ", ".join(dict.fromkeys(c for c in SPEC_CANDIDATES if c))
    + "): they are the schema/ directory of https://github.com/opencontainers/runtime-spec"
    " at tag v1.3.0 (schemas and test/ fixtures), e.g. `git clone --depth 1 -b v1.3.0"
    " https://github.com/opencontainers/runtime-spec /tmp/runtime-spec` and then"
    " OCI_RUNTIME_SPEC_DIR=/tmp/runtime-spec/schema"
)


def _find_spec_dir() -> Path | None:
    """$OCI_RUNTIME_SPEC_DIR, else shared/ beside the checkout (CI) or at /work/shared
    (developer machines)."""
    return next(
        (Path(c) for c in SPEC_CANDIDATES if c and Path(c, "config-schema.json").is_file()), None
    )


SPEC = _find_spec_dir()
if SPEC is None:  # the reference data ships with every workplace; say so if it is missing
    pytest.skip(SPEC_MISSING, allow_module_level=True)

KINDS = ("config", "state", "features")
OFFICIAL_ROOT = {k: f"{k}-schema.json" for k in KINDS}
OUR_ROOT = {k: f"{k}.json" for k in KINDS}
FAST = {k: getattr(fast, f"is_valid_{k}") for k in KINDS}
CHECK = {"config": check_config, "state": check_state, "features": check_features}
DOCUMENT_NAME = {"config": "config.json", "state": "state", "features": "features"}


# --------------------------------------------------------------------------- validators


def _registry(docs: dict[str, dict]) -> Registry:
    return Registry().with_resources((n, DRAFT4.create_resource(d)) for n, d in docs.items())


def _load_dir(directory: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def _validator(docs: dict[str, dict], root: str) -> Draft4Validator:
    return Draft4Validator({"$ref": root}, registry=_registry(docs))


def _official_errata(docs: dict[str, dict]) -> dict[str, dict]:
    """The official schemas with the two upstream slips our schemas deliberately fix.

    1. defs.json ArrayOfUint32 refers to "#definitions/uint32" (no slash): unresolvable, so
       jsonschema raises on any non-empty vm.hwConfig.irqs instead of giving a verdict.
    2. config-vm.json gives vm.hwConfig.iomems the tuple form of "items", which checks only
       the first entry although config-vm.md describes every entry the same way.
    """
    docs = copy.deepcopy(docs)
    docs["defs.json"]["definitions"]["ArrayOfUint32"]["items"] = {"$ref": "#/definitions/uint32"}
    iomems = docs["config-vm.json"]["vm"]["properties"]["hwConfig"]["properties"]["iomems"]
    iomems["items"] = iomems["items"][0]
    return docs


OFFICIAL_DOCS = _load_dir(SPEC)
OFFICIAL = {k: _validator(OFFICIAL_DOCS, OFFICIAL_ROOT[k]) for k in KINDS}
OFFICIAL_FIXED = {k: _validator(_official_errata(OFFICIAL_DOCS), OFFICIAL_ROOT[k]) for k in KINDS}
OURS = {k: _validator(_load_dir(SCHEMAS), OUR_ROOT[k]) for k in KINDS}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schemas_generate", SCHEMAS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generator()


# --------------------------------------------------------------------------- upstream fixtures


def _fixtures() -> Iterator[tuple[str, bool, Path]]:
    for kind in KINDS:
        for verdict in ("good", "bad"):
            for path in sorted((SPEC / "test" / kind / verdict).glob("*.json")):
                yield kind, verdict == "good", path


FIXTURES = list(_fixtures())


def _fixture_id(fixture: tuple[str, bool, Path]) -> str:
    kind, good, path = fixture
    return f"{kind}-{'good' if good else 'bad'}-{path.stem}"


def test_fixtures_were_found() -> None:
    assert len(FIXTURES) == 19, FIXTURES  # the v1.3.0 release ships 19
    assert {kind for kind, _, _ in FIXTURES} == set(KINDS)


@pytest.mark.parametrize("fixture", FIXTURES, ids=_fixture_id)
def test_fixture_verdict(fixture: tuple[str, bool, Path]) -> None:
    """Good fixtures pass and bad ones fail: ours, official, fast and check_*()."""
    kind, good, path = fixture
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        assert not good, f"{path} is a good fixture but not JSON"
        return
    assert OFFICIAL[kind].is_valid(doc) is good, "the official schema disagrees with upstream"
    assert OURS[kind].is_valid(doc) is good
    assert FAST[kind](doc) is good
    if good:
        CHECK[kind](doc)
    else:
        with pytest.raises(ConfigInvalid):
            CHECK[kind](doc)


def test_invalid_json_fixtures_exist() -> None:
    """The invalid-json fixtures really fail at parse time (tested above by skipping them)."""
    broken = [p for _, _, p in FIXTURES if p.stem == "invalid-json"]
    assert broken
    for path in broken:
        with pytest.raises(ValueError):
            json.loads(path.read_text())


# --------------------------------------------------------------------------- base documents

# A config that uses every property the v1.3.0 schemas know, with valid values, so that
# mutating it reaches every constraint (the upstream examples leave many sections out).
#: config.md's hooks, in the order they run.
HOOK_NAMES = "prestart createRuntime createContainer startContainer poststart poststop".split()
KITCHEN_SINK: dict = {
    "ociVersion": "1.3.0",
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
        {
            "destination": "/data",
            "type": "bind",
            "source": "/srv/data",
            "options": ["rbind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        },
    ],
    "process": {
        "terminal": False,
        "consoleSize": {"height": 24, "width": 80},
        "cwd": "/",
        "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
        "args": ["sh", "-c", "true"],
        "commandLine": "sh -c true",
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
        "apparmorProfile": "docker-default",
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"],
            "inheritable": [],
            "permitted": ["CAP_KILL", "CAP_CHOWN"],
            "ambient": ["CAP_KILL"],
        },
        "noNewPrivileges": True,
        "oomScoreAdj": 100,
        "scheduler": {
            "policy": "SCHED_DEADLINE",
            "nice": 0,
            "priority": 0,
            "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM"],
            "runtime": 10000000,
            "deadline": 20000000,
            "period": 30000000,
        },
        "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675",
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "execCPUAffinity": {"initial": "0-3,7", "final": "1, 2"},
        "user": {
            "uid": 1000,
            "gid": 1000,
            "umask": 18,
            "additionalGids": [5, 6],
            "username": "someone",
        },
    },
    "hostname": "box",
    "domainname": "example.org",
    "hooks": {
        name: [{"path": "/usr/bin/hook", "args": ["hook", name], "env": ["A=b"], "timeout": 5}]
        for name in HOOK_NAMES
    },
    "annotations": {"org.example.key": "value"},
    "linux": {
        "namespaces": [
            {"type": t} for t in ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")
        ]
        + [{"type": "time", "path": "/proc/1/ns/time"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "timeOffsets": {
            "boottime": {"secs": -10, "nanosecs": 5},
            "monotonic": {"secs": 3600, "nanosecs": 0},
        },
        "devices": [
            {
                "type": "c",
                "path": "/dev/fuse",
                "major": 10,
                "minor": 229,
                "fileMode": 438,
                "uid": 0,
                "gid": 0,
            }
        ],
        "netDevices": {"eth1": {"name": "net1"}, "ens4": {}},
        "cgroupsPath": "/myRuntime/myContainer",
        "resources": {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
            ],
            "memory": {
                "limit": 536870912,
                "reservation": 536870912,
                "swap": 536870912,
                "kernel": -1,
                "kernelTCP": -1,
                "swappiness": 0,
                "disableOOMKiller": False,
                "useHierarchy": True,
                "checkBeforeUpdate": True,
            },
            "cpu": {
                "shares": 1024,
                "quota": 1000000,
                "burst": 1000000,
                "period": 500000,
                "realtimeRuntime": 950000,
                "realtimePeriod": 1000000,
                "cpus": "2-3",
                "mems": "0-7",
                "idle": 0,
            },
            "blockIO": {
                "weight": 10,
                "leafWeight": 10,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 300}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 200}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
            "pids": {"limit": 32771},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
            "unified": {"io.weight": "10", "memory.high": "max"},
        },
        "intelRdt": {
            "closID": "guaranteed_group",
            "schemata": ["L3:0=7f0"],
            "l3CacheSchema": "L3:0=7f0;1=1f",
            "memBwSchema": "MB:0=20;1=70",
            "enableMonitoring": True,
        },
        "memoryPolicy": {
            "mode": "MPOL_INTERLEAVE",
            "nodes": "2-3",
            "flags": ["MPOL_F_STATIC_NODES"],
        },
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "listenerPath": "/run/seccomp-agent.socket",
            "listenerMetadata": "metadata",
            "syscalls": [
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "errnoRet": 5,
                    "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
        "rootfsPropagation": "slave",
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811",
        "personality": {"domain": "LINUX32", "flags": []},
    },
    "solaris": {
        "milestone": "svc:/milestone/container:default",
        "limitpriv": "default",
        "maxShmMemory": "512m",
        "cappedCPU": {"ncpus": "8"},
        "cappedMemory": {"physical": "512m", "swap": "512m"},
        "anet": [
            {
                "linkname": "net0",
                "lowerLink": "net2",
                "allowedAddress": "172.17.0.2/16",
                "configureAllowedAddress": "true",
                "defrouter": "172.17.0.1/16",
                "linkProtection": "mac-nospoof, ip-nospoof",
                "macAddress": "02:42:f8:52:c7:16",
            }
        ],
    },
    "windows": {
        "layerFolders": ["C:\\layers\\layer1", "C:\\layers\\base"],
        "devices": [{"id": "24E552D7-6523-47F7-A647-D3465BF1F5CA", "idType": "class"}],
        "resources": {
            "memory": {"limit": 2097152},
            "cpu": {
                "count": 2,
                "shares": 1024,
                "maximum": 5000,
                "affinity": {"mask": 3, "group": 0},
            },
            "storage": {"iops": 50, "bps": 100, "sandboxSize": 10},
        },
        "network": {
            "endpointList": ["7a010682-17e0-4455-a838-02e5d9655fe6"],
            "allowUnqualifiedDNSQuery": True,
            "DNSSearchList": ["a.com"],
            "networkSharedContainerName": "other",
            "networkNamespace": "ns",
        },
        "credentialSpec": {"any": "thing"},
        "servicing": False,
        "ignoreFlushesDuringBoot": True,
        "hyperv": {"utilityVMPath": "C:\\path\\to\\uvm"},
    },
    "vm": {
        "hypervisor": {"path": "/usr/bin/qemu-kvm", "parameters": ["-no-reboot"]},
        "kernel": {"path": "/boot/vmlinuz", "parameters": ["console=ttyS0"], "initrd": "/i"},
        "image": {"path": "/images/rootfs.img", "format": "raw"},
        "hwConfig": {
            "deviceTree": "/dt.dtb",
            "vcpus": 2,
            "memory": 4096,
            "dtdevs": ["/amba/ethernet@c0000"],
            "iomems": [
                {"firstGFN": 1, "firstMFN": 2, "nrMFNs": 3},
                {"firstMFN": 4, "nrMFNs": 5},
            ],
            "irqs": [5, 7],
        },
    },
    "zos": {"namespaces": [{"type": "pid"}, {"type": "uts", "path": "/x"}]},
    "freebsd": {
        "devices": [{"path": "null", "mode": 438}],
        "jail": {
            "parent": "outer",
            "host": "new",
            "vnet": "inherit",
            "ip4": "new",
            "ip4Addr": ["10.0.0.2"],
            "ip6": "disable",
            "ip6Addr": [],
            "interface": "em0",
            "vnetInterfaces": ["epair0b"],
            "sysvmsg": "new",
            "sysvsem": "inherit",
            "sysvshm": "disable",
            "enforceStatfs": 2,
            "allow": {
                "setHostname": True,
                "rawSockets": False,
                "chflags": False,
                "mount": ["nullfs", "tmpfs"],
                "quotas": False,
                "socketAf": False,
                "mlock": True,
                "reservedPorts": False,
                "suser": True,
            },
        },
    },
}

FEATURES_SINK: dict = {
    "ociVersionMin": "1.0.0",
    "ociVersionMax": "1.3.0",
    "hooks": ["prestart", "poststop"],
    "mountOptions": ["bind", "ro"],
    "annotations": {"org.example.runtime": "ociruntime"},
    "potentiallyUnsafeConfigAnnotations": ["com.example.unsafe"],
    "linux": {
        "namespaces": ["pid", "time"],
        "capabilities": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        "cgroup": {"v1": False, "v2": True, "systemd": True, "systemdUser": True, "rdma": True},
        "seccomp": {
            "enabled": True,
            "actions": ["SCMP_ACT_ALLOW"],
            "operators": ["SCMP_CMP_EQ"],
            "archs": ["SCMP_ARCH_X86_64"],
            "knownFlags": ["SECCOMP_FILTER_FLAG_LOG"],
            "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG"],
        },
        "apparmor": {"enabled": True},
        "selinux": {"enabled": False},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": True}},
        "netDevices": {"enabled": True},
    },
}


def _good_fixtures(kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for k, good, p in FIXTURES if k == kind and good]


BASES = {
    "config": [KITCHEN_SINK, *_good_fixtures("config")],  # KITCHEN_SINK first: shrinks to it
    "state": _good_fixtures("state"),
    "features": [FEATURES_SINK, *_good_fixtures("features")],
}


@pytest.mark.parametrize("kind", KINDS)
def test_base_documents_are_valid(kind: str) -> None:
    """The mutation bases must start valid, or 'same verdict' would prove little."""
    for doc in BASES[kind]:
        assert OFFICIAL_FIXED[kind].is_valid(doc)
        assert OURS[kind].is_valid(doc) and FAST[kind](doc)


# --------------------------------------------------------------------------- strategies


def _walk(node: object, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def _samples_by_key(docs: list[dict]) -> dict[str, list]:
    """Every value seen under each member name: plausible fragments to insert elsewhere."""
    seen: dict[str, list] = {}
    for doc in docs:
        for path, value in _walk(doc):
            if path and isinstance(path[-1], str):
                seen.setdefault(path[-1], []).append(value)
    return seen


SAMPLES = _samples_by_key([d for docs in BASES.values() for d in docs])
KNOWN_KEYS = sorted(SAMPLES)

BOUNDARY_INTS = [
    -(2**63) - 1,
    -(2**63),
    -(2**31) - 1,
    -(2**31),
    -1,
    0,
    1,
    255,
    256,
    511,
    512,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
]
# Near misses for the enum and pattern constraints, plus non-absolute paths and
# odd capability names (which the spec leaves to the runtime, so they must pass).
TRICKY_STRINGS = [
    "",
    "x",
    "rootfs",
    "relative/path",
    "/abs/path",
    "RLIMIT_NOFILE",
    "RLIMIT_nofile",
    "rlimit_nofile",
    "RLIMIT_",
    "RLIMIT_CPU\n",
    "CAP_SYS_ADMIN",
    "cap_sys_admin",
    "CAP_",
    "SYS_ADMIN",
    "2MB",
    "64kB",
    "0GB",
    "1TB",
    "MB:0=100",
    "MB:0=1\n2",
    "L3:0=ff",
    "0-3,7",
    "0-3;7",
    "c",
    "b",
    "u",
    "p",
    "cb",
    "pid",
    "PID",
    "net",
    "network",
    "time",
    "private",
    "rprivate",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_ALLOW ",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_RISCV32",
    "SCMP_CMP_MASKED_EQ",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_NEW_LISTENER",
    "SCHED_FIFO",
    "SCHED_FLAG_RECLAIM",
    "IOPRIO_CLASS_NONE",
    "MPOL_BIND",
    "MPOL_F_STATIC_NODES",
    "LINUX",
    "LINUX64",
    "new",
    "disable",
    "inherit",
    "class",
    "qcow2",
    "qcow3",
    "running",
    "paused",
]
WRONG_TYPES = [None, True, False, 0, 7, -1, 1.0, 0.5, 1e20, "", "7", [], [1], ["x"], {}, {"a": 1}]

scalars = st.one_of(
    st.sampled_from(WRONG_TYPES),
    st.sampled_from(BOUNDARY_INTS),
    st.sampled_from(TRICKY_STRINGS),
    st.integers(),
    st.text(alphabet="ACGLMPRSTX_/:-,0123456789 \n~", max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


def _string_variants(s: str) -> st.SearchStrategy:
    return st.sampled_from([s.lower(), s.upper(), s + "X", s[:-1], " " + s, s + "\n", "/" + s])


def _near_miss(value: str | int) -> st.SearchStrategy:
    """A value of the same type that may just cross a limit, enum or pattern."""
    if isinstance(value, str):
        return st.sampled_from(TRICKY_STRINGS) | _string_variants(value)
    return st.sampled_from(BOUNDARY_INTS) | st.integers(value - 2, value + 2)


def _replacement(key: object, value: object) -> st.SearchStrategy:
    """Values to put where value was: anything, or something seen under the same name."""
    choices = [st.sampled_from(WRONG_TYPES), json_values]
    if isinstance(key, str) and key in SAMPLES:
        choices.append(st.sampled_from(SAMPLES[key]))
    if isinstance(value, list):
        choices.append(st.just(value + value[:1]))
    return st.one_of(choices)


def _parent(doc: object, path: tuple) -> object:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _is_container(node: object) -> bool:
    return isinstance(node, (dict, list))


def _is_scalar(node: object) -> bool:
    return isinstance(node, (str, int)) and not isinstance(node, bool)


# action -> which nodes it can apply to; actions are drawn first so rare targets
# (e.g. the two arrays with minItems) are not drowned out by the many strings.
ACTIONS: dict[str, Callable[[tuple, object], bool]] = {
    "delete": lambda path, node: bool(path),
    "replace": lambda path, node: True,
    "insert": lambda path, node: _is_container(node),
    "clear": lambda path, node: _is_container(node) and bool(node),
    "near-miss": lambda path, node: _is_scalar(node) and bool(path),
}


@st.composite
def _mutate(draw: st.DrawFn, doc: object) -> object:
    """One random edit somewhere in doc (which it changes in place); returns the result."""
    action = draw(st.sampled_from(sorted(ACTIONS)))
    targets = [(p, n) for p, n in _walk(doc) if ACTIONS[action](p, n)]
    if not targets:
        return doc
    path, node = draw(st.sampled_from(targets))

    def fresh(strategy: st.SearchStrategy) -> object:
        # Drawn values may be shared (samples, constants): never let a later edit touch them.
        return copy.deepcopy(draw(strategy))

    if action == "insert" and isinstance(node, dict):
        key = draw(st.sampled_from(KNOWN_KEYS) | st.text(max_size=4))
        node[key] = fresh(st.sampled_from(SAMPLES.get(key, [None])) | _replacement(key, None))
    elif action == "insert":
        node.append(fresh(st.sampled_from(node) if node else json_values))
    elif action == "clear":
        node.clear()
    elif action == "delete":
        del _parent(doc, path)[path[-1]]
    elif not path:
        doc = fresh(st.sampled_from(WRONG_TYPES))
    elif action == "near-miss":
        _parent(doc, path)[path[-1]] = fresh(_near_miss(node))
    else:
        _parent(doc, path)[path[-1]] = fresh(_replacement(path[-1], node))
    return doc


def documents(kind: str, max_edits: int = 3) -> st.SearchStrategy:
    """A valid base document of kind with up to max_edits random edits."""

    @st.composite
    def build(draw: st.DrawFn) -> object:
        # The first base (the richest) half of the time, or any other.
        bases = BASES[kind]
        doc = copy.deepcopy(draw(st.sampled_from(bases[:1] * len(bases) + bases)))
        for _ in range(draw(st.integers(0, max_edits))):
            doc = draw(_mutate(doc))
        return doc

    return build()


# --------------------------------------------------------------------------- agreement

AGREEMENT = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _resolve_pointer(doc: object, pointer: str) -> object:
    if pointer == "/":
        return doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _assert_agreement(kind: str, doc: object) -> None:
    official = OFFICIAL_FIXED[kind].is_valid(doc)
    assert OURS[kind].is_valid(doc) == official, "our schema and the official one disagree"
    assert FAST[kind](doc) == official, "the generated validator and jsonschema disagree"
    try:
        CHECK[kind](doc)
    except ConfigInvalid as e:
        assert not official
        # the message as errors.cut shows it (control characters escaped, values cut)
        assert str(e) == cut(f"{DOCUMENT_NAME[kind]}: {e.pointer}: {e.reason}")
        _resolve_pointer(doc, e.pointer)  # the pointer names a real location
    else:
        assert official


@AGREEMENT
@given(documents("config"))
def test_generated_configs_same_verdict(doc: object) -> None:
    _assert_agreement("config", doc)


@settings(AGREEMENT, max_examples=200)
@given(
    st.sampled_from(["state", "features"]).flatmap(lambda k: st.tuples(st.just(k), documents(k)))
)
def test_generated_state_and_features_same_verdict(case: tuple[str, object]) -> None:
    _assert_agreement(*case)


# find() only has to show that such documents come up; shrinking them would only cost time.
SEARCH = settings(max_examples=3000, database=None, derandomize=True, phases=[Phase.generate])


@pytest.mark.parametrize(
    "keyword",
    ["type", "required", "enum", "pattern", "minimum", "maximum", "minItems"],
)
def test_generated_configs_reach_every_kind_of_constraint(keyword: str) -> None:
    """The strategy produces documents that break each kind of constraint."""

    def breaks(doc: object) -> bool:
        return any(e.validator == keyword for e in OFFICIAL_FIXED["config"].iter_errors(doc))

    find(documents("config"), breaks, settings=SEARCH)


def test_generated_configs_include_valid_edits() -> None:
    def edited_but_valid(doc: object) -> bool:
        return doc not in BASES["config"] and OFFICIAL_FIXED["config"].is_valid(doc)

    find(documents("config"), edited_but_valid, settings=SEARCH)


# --------------------------------------------------------------------------- exhaustive sweep
# Random edits rarely hit one exact bound (e.g. 2**32 in one uint32 field), so every node of
# the kitchen sink also gets every boundary/near-miss edit, deterministically. To keep that
# fast each edit is made in a copy pruned to the branch leading to the node.

_DELETE = object()  # an edit that removes the member or element
FEW_WRONG_TYPES = [None, True, 1, 1.0, "x", [], {}]
SMALL_SIBLING = 80  # JSON length up to which siblings stay (required ones are all small)


def _prune(doc: object, path: tuple) -> tuple[object, tuple]:
    """doc cut down to the branch holding path (plus small siblings); the path in it."""
    if not path:
        return copy.deepcopy(doc), ()
    head, rest = path[0], path[1:]
    sub, sub_path = _prune(doc[head], rest)
    if isinstance(doc, list):
        return [sub], (0, *sub_path)
    small = {k: v for k, v in doc.items() if k != head and len(json.dumps(v)) <= SMALL_SIBLING}
    return {**copy.deepcopy(small), head: sub}, (head, *sub_path)


def _enum_values() -> list[str]:
    values = set()
    for doc in [*OFFICIAL_DOCS.values(), *_load_dir(SCHEMAS).values()]:
        for path, node in _walk(doc):
            if path and path[-1] == "enum" and isinstance(node, list):
                values.update(node)
    return sorted(values)


# Every enum member either schema set knows: tried wherever the kitchen sink holds one, so
# that a member missing from (or added to) one of our enums shows up.
ENUM_VALUES = _enum_values()


def _edits(node: object) -> list[object]:
    if isinstance(node, str):
        near = [node.lower(), node + "X", node[:-1], node + "\n"]
        return TRICKY_STRINGS + near + FEW_WRONG_TYPES + (ENUM_VALUES * (node in ENUM_VALUES))
    if isinstance(node, int) and not isinstance(node, bool):
        return BOUNDARY_INTS + FEW_WRONG_TYPES
    return FEW_WRONG_TYPES + ([type(node)()] if _is_container(node) else [])


def _sweep(doc: dict, section: str) -> Iterator[tuple[tuple, object, list[object]]]:
    """(path, pruned valid base, edited copies) for every node under doc[section]."""
    for path, node in _walk(doc[section], (section,)):
        base, where = _prune(doc, path)
        edited = []
        for value in [_DELETE, *_edits(node)]:
            copied = copy.deepcopy(base)
            if value is _DELETE:
                del _parent(copied, where)[where[-1]]
            else:
                _parent(copied, where)[where[-1]] = copy.deepcopy(value)
            edited.append(copied)
        yield path, base, edited


@pytest.mark.parametrize("section", sorted(KITCHEN_SINK))
def test_every_edit_of_every_node_same_verdict(section: str) -> None:
    verdicts = set()
    for path, base, edited in _sweep(KITCHEN_SINK, section):
        assert OFFICIAL_FIXED["config"].is_valid(base), f"pruning {path} broke the base"
        for doc in edited:
            official = OFFICIAL_FIXED["config"].is_valid(doc)
            if FAST["config"](doc) != official:  # our schemas, compiled (agreement: above)
                ours = OURS["config"].is_valid(doc)
                pytest.fail(f"{path}: official {official}, ours {ours}: {json.dumps(doc)[:300]}")
            verdicts.add(official)
    assert verdicts == {True, False}


# --------------------------------------------------------------------------- deliberate differences


def _vm(hw: dict) -> dict:
    return {"ociVersion": "1.3.0", "vm": {"kernel": {"path": "/k"}, "hwConfig": hw}}


def test_irqs_are_uint32_where_upstream_cannot_resolve_its_ref() -> None:
    with pytest.raises(Unresolvable):
        OFFICIAL["config"].is_valid(_vm({"irqs": [1]}))
    assert FAST["config"](_vm({"irqs": [0, 4294967295]}))
    assert not FAST["config"](_vm({"irqs": [-1]}))
    assert not OURS["config"].is_valid(_vm({"irqs": ["7"]}))


def test_every_iomems_entry_is_checked() -> None:
    doc = _vm({"iomems": [{"firstMFN": 1, "nrMFNs": 1}, {"firstMFN": 1}]})
    assert OFFICIAL["config"].is_valid(doc), "upstream only checks the first entry"
    assert not OURS["config"].is_valid(doc) and not FAST["config"](doc)


# --------------------------------------------------------------------------- messages


def _spec_example() -> dict:
    return json.loads((SPEC / "test" / "config" / "good" / "spec-example.json").read_text())


def _edit(path: str, value: object) -> dict:
    doc = _spec_example()
    *parents, last = path.split("/")[1:]
    node = _resolve_pointer(doc, "/" + "/".join(parents)) if parents else doc
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("/ociVersion", _DELETE, "config.json: /: 'ociVersion' is a required property"),
        ("/process/args", "sh", "config.json: /process/args: 'sh' is not of type 'array'"),
        ("/process/cwd", _DELETE, "config.json: /process: 'cwd' is a required property"),
        (
            "/process/user/uid",
            -1,
            "config.json: /process/user/uid: -1 is less than the minimum of 0",
        ),
        ("/process/user/gid", 1.0, "config.json: /process/user/gid: 1.0 is not of type 'integer'"),
        (
            "/process/rlimits/0/type",
            "RLIMIT_nofile",
            "config.json: /process/rlimits/0/type: "
            "'RLIMIT_nofile' does not match '^RLIMIT_[A-Z]+$'",
        ),
        (
            "/linux/seccomp/syscalls/0/names",
            [],
            "config.json: /linux/seccomp/syscalls/0/names: [] should be non-empty",
        ),
        (
            "/linux/rootfsPropagation",
            "rprivate",
            "config.json: /linux/rootfsPropagation: 'rprivate' is not one of "
            "['private', 'shared', 'slave', 'unbindable']",
        ),
        (
            "/linux/netDevices",
            {"a/b~c": {"name": 1}},
            "config.json: /linux/netDevices/a~1b~0c/name: 1 is not of type 'string'",
        ),
    ],
)
def test_check_config_message(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        check_config(_edit(path, value))
    assert str(raised.value) == message
    pointer, _, reason = message.removeprefix("config.json: ").partition(": ")
    assert (raised.value.pointer, raised.value.reason) == (pointer, reason)


def test_check_config_rejects_non_objects() -> None:
    with pytest.raises(ConfigInvalid, match=r"^config.json: /: \[\] is not of type 'object'$"):
        check_config([])


def test_state_and_features_messages() -> None:
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "paused", "bundle": "/b", "pid": 1}
    with pytest.raises(StateInvalid) as raised:
        check_state(state)
    assert str(raised.value).startswith("state: /status: 'paused' is not one of ")
    with pytest.raises(FeaturesInvalid) as raised:
        check_features({"ociVersionMin": "1.0.0"})
    assert str(raised.value) == "features: /: 'ociVersionMax' is a required property"
    assert isinstance(raised.value, ConfigInvalid)


# --------------------------------------------------------------------------- the generator


def test_generated_module_is_fresh() -> None:
    """Fails when schemas/*.json changed without re-running schemas/generate.py."""
    assert Path(fast.__file__).read_text() == generate.render(), (
        "ociruntime/container/_config_validator.py is stale: "
        "run .venv/bin/python schemas/generate.py"
    )


def test_schema_dir_is_the_repo_schemas() -> None:
    assert schema_dir().resolve() == SCHEMAS


def _render_modified(tmp_path: Path, edit: Callable[[dict[str, dict]], None]) -> str:
    docs = _load_dir(SCHEMAS)
    edit(docs)
    for name, doc in docs.items():
        (tmp_path / name).write_text(json.dumps(doc))
    return generate.render(tmp_path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["state.json"]["properties"]["id"].update(oneOf=[{}]),  # unknown keyword
        lambda d: d["state.json"]["properties"]["id"].update(minimum=1),  # wrong type for it
        lambda d: d["state.json"]["properties"]["id"].update({"$ref": "#definitions/x"}),
        lambda d: d["state.json"]["properties"]["id"].update(type="number"),
        lambda d: d["state.json"]["properties"]["id"].update(items=[{}]),
        lambda d: d["state.json"]["properties"]["id"].update(pattern="[a-"),
    ],
    ids=["oneOf", "minimum-on-string", "bad-pointer", "number", "tuple-items", "bad-pattern"],
)
def test_generator_refuses_what_it_cannot_compile(tmp_path: Path, edit: Callable) -> None:
    with pytest.raises(generate.SchemaError):
        _render_modified(tmp_path, edit)


def test_generator_output_follows_schema_edits(tmp_path: Path) -> None:
    """A tightened schema yields a validator that rejects what the old one accepted."""

    def require_pid(docs: dict[str, dict]) -> None:
        docs["state.json"]["required"].append("pid")

    namespace: dict = {"__name__": "edited"}
    exec(compile(_render_modified(tmp_path, require_pid), "edited", "exec"), namespace)
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "bundle": "/b"}
    assert fast.is_valid_state(state)
    assert not namespace["is_valid_state"](state)


def test_valid_config_does_not_import_jsonschema() -> None:
    """The hot path: importing validation and checking a valid config stays light."""
    code = (
        "import json, sys\n"
        "from ociruntime.container.validation import check_config\n"
        f"check_config(json.load(open({str(SPEC / 'test/config/good/spec-example.json')!r})))\n"
        "heavy = {'jsonschema', 'referencing'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --------------------------------------------------------------------------- patterns without re
# The generated module decides each "pattern" with a _Seq (greedy steps, no re) when
# schemas/generate.py can prove that exact, else with a _Lazy (re, imported on first use).


def _schema_patterns() -> set[str]:
    """Every "pattern" and patternProperties key in our schema files."""
    found = set()
    for doc in _load_dir(SCHEMAS).values():
        for path, node in _walk(doc):
            if path and path[-1] == "pattern" and isinstance(node, str):
                found.add(node)
            if path and path[-1] == "patternProperties" and isinstance(node, dict):
                found.update(node)
    return found


SCHEMA_PATTERNS = sorted(_schema_patterns())
#: pattern -> its matcher in the generated module
GENERATED_MATCHERS = {
    m.pattern: m
    for m in vars(fast).values()
    if isinstance(m, (schema_runtime.Seq, schema_runtime.Lazy))
}


#: the generated module's names for schema_runtime's (it imports only those it uses)
RUNTIME = {alias: getattr(schema_runtime, name) for alias, name in generate.RUNTIME_NAMES.items()}


def _matcher(pattern: str) -> schema_runtime.Seq | schema_runtime.Lazy:
    """What the generator would emit for pattern, built with the generated module's names."""
    callee, args = generate.compile_pattern(pattern)
    return eval(f"{callee}({', '.join(args)})", dict(RUNTIME))


def _agrees(pattern: str, matcher: schema_runtime.Seq | schema_runtime.Lazy, s: str) -> None:
    expected = re.search(pattern, s) is not None
    assert matcher.search(s) is expected, f"{pattern!r} on {s!r}: re says {expected}"


def test_generated_matchers_are_the_schema_patterns() -> None:
    assert SCHEMA_PATTERNS
    assert sorted(GENERATED_MATCHERS) == SCHEMA_PATTERNS


@pytest.mark.parametrize("pattern", SCHEMA_PATTERNS)
def test_schema_patterns_need_no_re(pattern: str) -> None:
    """Our patterns are all simple enough for _Seq.

    One that is not would become a _Lazy and still be right, but would put `re` back on the
    path of every document using it: extend compile_pattern, or exempt it here on purpose.
    """
    assert isinstance(GENERATED_MATCHERS[pattern], schema_runtime.Seq)
    assert generate.compile_pattern(pattern)[0] == "_Seq"


# Characters in and around our patterns' classes and literals, "\n" (which `$` may precede
# and `.` never matches) and some others.
PATTERN_ALPHABET = "".join(
    sorted(set("".join(SCHEMA_PATTERNS)) | set("RLIMIT_CAPMB:KGcbup09AZ@[`{/ ,-\n\r\tx\x00é"))
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_schema_patterns_same_verdict_as_re(data: st.DataObject) -> None:
    """Each generated matcher agrees with re.search on strings near and far from a match."""
    pattern = data.draw(st.sampled_from(SCHEMA_PATTERNS))
    near = st.from_regex(pattern).flatmap(
        lambda s: st.sampled_from([s, s + "\n", s + "\n\n", "\n" + s, s[:-1], s + "x"])
    )
    strings = st.lists(st.text(PATTERN_ALPHABET, max_size=12) | near, min_size=1, max_size=20)
    for s in data.draw(strings):
        _agrees(pattern, GENERATED_MATCHERS[pattern], s)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        (
            "^RLIMIT_[A-Z]+$",
            ["RLIMIT_CPU", "RLIMIT_CPU\n"],
            ["RLIMIT_", "RLIMIT_CPU\n\n", " RLIMIT_A"],
        ),
        (".", ["x", "\nx", "\n\nx\n"], ["", "\n", "\n\n"]),
        ("^[0-9, -]*$", ["", "\n", "0-3, 7"], ["\n\n", "0;3", "1\n2"]),
        ("^MB:[^\\n]*$", ["MB:", "MB:0=20\n"], ["MB:0\n1", "MB:0\n\n", " MB:"]),
        ("^[1-9][0-9]*[KMG]B$", ["2MB", "64KB\n", "100GB"], ["0MB", "2mB", "2TB", "MB"]),
    ],
)
def test_schema_pattern_corners(pattern: str, yes: list[str], no: list[str]) -> None:
    """`$` also matches before one final newline, `.` never matches one."""
    matcher = GENERATED_MATCHERS[pattern]
    assert [s for s in yes if not matcher.search(s)] == []
    assert [s for s in no if matcher.search(s)] == []
    for s in yes + no:
        _agrees(pattern, matcher, s)


@pytest.mark.parametrize(
    ("pattern", "callee"),
    [
        ("", "_Seq"),
        ("^$", "_Seq"),
        ("abc", "_Seq"),
        ("^a\\.b\\$$", "_Seq"),  # escaped `.` and `$` are literals
        ("\\\\$", "_Seq"),  # an escaped backslash, then the `$` anchor
        ("^[]a]+$", "_Seq"),  # `]` first in a class is a literal
        ("^[^]a]?a$", "_Seq"),
        ("[a-][-b]", "_Seq"),  # so is `-` first or last
        ("^[^a]*a", "_Seq"),
        ("^a*b+c?d$", "_Seq"),
        ("^[^\\n]*$", "_Seq"),  # may take the final "\n" too: `$` matches after it as well
        ("a*a", "_Lazy"),  # a repeated step overlapping the next: would need backtracking
        ("^[^a]*b", "_Lazy"),
        ("^a*b*a", "_Lazy"),  # b* may take nothing, so a* is followed by a
        (".*x", "_Lazy"),
        ("^[^a]*[^b]", "_Lazy"),
        ("(a|b)", "_Lazy"),  # outside the grammar
        ("a|b", "_Lazy"),
        ("a{2}", "_Lazy"),
        ("a*?b", "_Lazy"),
        ("a*+b", "_Lazy"),
        ("\\d+", "_Lazy"),
        ("\\bx", "_Lazy"),
        ("a$b", "_Lazy"),
        ("[a&&b]", "_Lazy"),  # re warns of a possible set operation
        ("[[a]", "_Lazy"),  # or of a possible nested set
        ("[\u0100-\u01ff]", "_Lazy"),  # too large to write out
    ],
)
@pytest.mark.filterwarnings("ignore:Possible:FutureWarning")
def test_compile_pattern(pattern: str, callee: str) -> None:
    assert generate.compile_pattern(pattern)[0] == callee
    matcher = _matcher(pattern)
    for s in ["", "\n", "a", "b", "ab", "ba\n", "aab", "a.b$", "\\", "]", "-", "x", "ā", "ab\nc"]:
        _agrees(pattern, matcher, s)


# Random patterns in (and around) the grammar, over a small alphabet so that the steps
# overlap often: wherever the generator emits a _Seq, greedy matching must be exact.
PATTERN_ATOMS = ["a", "b", "-", "\n", "\\n", ".", "\\.", "[ab]", "[^a]", "[^\\n]", "[a-b]", "[-a]"]
random_patterns = st.builds(
    lambda start, steps, end: start + "".join(steps) + end,
    st.sampled_from(["", "^"]),
    st.lists(
        st.builds(
            str.__add__, st.sampled_from(PATTERN_ATOMS), st.sampled_from(["", "*", "+", "?"])
        ),
        max_size=5,
    ),
    st.sampled_from(["", "$"]),
)


@settings(max_examples=1000, deadline=None)
@given(random_patterns, st.lists(st.text("ab-.\nc", max_size=8), min_size=1, max_size=20))
def test_random_patterns_same_verdict_as_re(pattern: str, strings: list[str]) -> None:
    matcher = _matcher(pattern)
    for s in strings:
        _agrees(pattern, matcher, s)


def test_random_patterns_often_need_no_re() -> None:
    """The property above is not vacuous: plenty of those patterns become a _Seq."""
    find(
        random_patterns,
        lambda p: generate.compile_pattern(p)[0] == "_Seq" and p.count("*") + p.count("+") >= 2,
        settings=SEARCH,
    )


def test_lazy_pattern_imports_re_on_first_use() -> None:
    matcher = _matcher("^(ab)+$")
    assert isinstance(matcher, schema_runtime.Lazy) and matcher.regex is None
    assert matcher.search("abab\n") and not matcher.search("aba")
    assert matcher.regex is not None


@pytest.mark.parametrize(
    "config",
    [REPO / "bundles" / "busybox" / "config.json", SPEC / "test/config/good/spec-example.json"],
    ids=["busybox", "spec-example"],
)
def test_valid_config_does_not_import_re(config: Path) -> None:
    """Importing validation and checking a typical config never imports re.

    -I -S: no site module (which may import re itself); the doc is read with jsonlite, as
    the runtime reads it (json imports re).
    """
    path = [str(REPO), sysconfig.get_paths()["purelib"]]
    code = (
        "import sys\n"
        f"sys.path[:0] = {path!r}\n"
        "from ociruntime import jsonlite\n"
        "from ociruntime.container.validation import check_config\n"
        f"check_config(jsonlite.loads(open({str(config)!r}).read()))\n"
        "heavy = {'re', 'jsonschema'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True, cwd=REPO)
