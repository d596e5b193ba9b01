"""Kubernetes' path (issue #13 item 5): a CRI client calls containerd's cri plugin, which
runs the pod through the `ociruntime` runtime handler, README's recipe.

The client is what a kubelet is to containerd: gRPC calls of the CRI runtime.v1 API
(testkit/cri.py, its messages compiled from a subset of upstream's api.proto) on a
private containerd 1.6 (testkit/containerd.py) whose cri plugin has README's runtimes
entry, BinaryName a wrapper that logs each call and execs the checkout's ociruntime. A
pod (RuntimeClass handler `ociruntime`) uses the node's network (no CNI here) and a pod
PID and IPC namespace; its sandbox runs a locally built pause image, since no registry
is reachable. Asserted: what the client gets back (states, ExecSync output, stats, the
container's log) and that our runtime ran the sandbox and the container (its state
root, the calls the shim made); after each test nothing of the pod is left.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import CGROUP_V2_ONLY, OCIRUNTIME, REPO

from testkit import cri, oci_image

#: OCITEST_CRI_RUNTIME=/usr/sbin/runc: the same pods under runc (the reference behaviour).
RUNTIME = os.environ.get("OCITEST_CRI_RUNTIME", OCIRUNTIME)
PAUSE_IMAGE = "localhost/ocitest/pause:latest"
IMAGE = "localhost/ocitest/busybox:latest"
#: The pause image's process: the sandbox's init, PID 1 of the pod's PID namespace.
PAUSE_CMD = ["sleep", "2147483647"]
POD_NAMESPACES = {"network": "NODE", "pid": "POD", "ipc": "POD"}
MiB = 1024 * 1024
#: Runtime options whose value is a path (left out of Node.calls).
PATH_OPTIONS = ("--bundle", "--pid-file", "--process", "--console-socket")
#: The heading of CLIENTS.md's section that lists the calls.
CLIENTS_MD_SECTION = "\n## containerd's cri plugin (Kubernetes)\n"

WRAPPER_TEMPLATE = """\
#!/bin/sh
# The cri plugin's runc shim runs this as its runc: record the command line, run ours.
printf '%s\\n' "$*" >> '{log}'
exec '{runtime}' "$@"
"""


class Node:
    """The module's containerd with its CRI client: what a kubelet would talk to."""

    def __init__(self, base: Path, api: ModuleType) -> None:
        self.base = base
        self.calls_log = base / "runtime-argv.log"
        wrapper = base / "ociruntime-wrapper.sh"
        wrapper.write_text(WRAPPER_TEMPLATE.format(log=self.calls_log, runtime=RUNTIME))
        wrapper.chmod(0o755)
        parent = f"/ocitest-cri-{uuid.uuid4().hex[:8]}"
        self.ctd = cri.CRIContainerd(base, wrapper, PAUSE_IMAGE, cgroup_parent=parent)
        self.api = api
        self.call = cri.CRIClient(self.ctd.address, api)  # connects at its first call

    def calls(self, cid: str) -> list[str]:
        """The runtime commands the shim ran about `cid`, without the global options,
        paths and the id: "create", "exec --detach", "kill 15", "delete --force"..."""
        lines = self.calls_log.read_text().splitlines() if self.calls_log.exists() else []
        words = [c.split(" --log-format json ", 1)[1].split() for c in lines if cid in c.split()]
        return [" ".join(w for w in cmd if w != cid and not w.startswith("/") and w not in
                         PATH_OPTIONS) for cmd in words]  # fmt: skip

    def runtime(self, *args: str) -> dict:
        """`ociruntime ARGS` (JSON output) in the state root the handler's options name."""
        root = self.ctd.runtime_root / cri.CRI_NAMESPACE
        p = subprocess.run([RUNTIME, "--root", str(root), *args],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def runtime_state(self, cid: str) -> dict:
        return self.runtime("state", cid)


def until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll `check` until it returns something true (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return value


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(rootfs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cri-images")
    pause = oci_image.build_oci_archive(rootfs_template, out / "pause.tar", PAUSE_IMAGE,
                                        cmd=PAUSE_CMD)  # fmt: skip
    busybox = oci_image.build_oci_archive(rootfs_template, out / "busybox.tar", IMAGE)
    return [pause.path, busybox.path]


@pytest.fixture(scope="module")
def node(containerd_installed: None, images: list[Path], tmp_path_factory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("cri")
    node = Node(base, cri.load_api(tmp_path_factory.mktemp("cri-api")))
    try:
        node.ctd.start(timeout=60)
        until("the cri plugin answers", node.call.ready)
        for archive, name in zip(images, (PAUSE_IMAGE, IMAGE), strict=True):
            node.ctd.import_image(archive, name)
            # The cri plugin learns of an image from containerd's events: wait for it.
            until(f"the cri plugin sees {name}",
                  lambda n=name: node.call("ImageStatus", image={"image": n}).image.id)  # fmt: skip
        yield node
    finally:
        node.call.close()
        leftovers = node.ctd.stop()
        assert leftovers == [], f"left behind: {leftovers}"


class Pod:
    """One pod, set up as a kubelet sets it up: its sandbox config (the node's network,
    a pod PID and IPC namespace, the cgroup parent, a log directory) and its containers."""

    def __init__(self, node: Node, name: str) -> None:
        self.node = node
        self.call = node.call
        uid = uuid.uuid4().hex[:8]
        self.logs = node.base / "pod-logs" / f"{name}_{uid}"
        self.logs.mkdir(parents=True)
        self.config = {
            "metadata": {"name": name, "uid": uid, "namespace": "ocitest"},
            "log_directory": str(self.logs),
            "linux": {
                "cgroup_parent": node.ctd.cgroup_parent,
                "security_context": {"namespace_options": POD_NAMESPACES},
            },
        }
        self.id = ""

    def run(self) -> None:
        """RunPodSandbox with the RuntimeClass's handler, as the kubelet passes it."""
        reply = self.call("RunPodSandbox", config=self.config, runtime_handler=cri.HANDLER)
        self.id = reply.pod_sandbox_id

    def start_container(self, name: str, script: str, resources: dict | None = None) -> str:
        """CreateContainer + StartContainer: `sh -c script` from the busybox image."""
        config = {
            "metadata": {"name": name},
            "image": {"image": IMAGE},
            "command": ["sh", "-c", script],
            "log_path": f"{name}.log",
            "linux": {
                "resources": resources or {},
                "security_context": {"namespace_options": POD_NAMESPACES},
            },
        }
        created = self.call("CreateContainer", pod_sandbox_id=self.id, config=config,
                            sandbox_config=self.config)  # fmt: skip
        self.call("StartContainer", container_id=created.container_id)
        return created.container_id

    def exec(self, cid: str, script: str) -> tuple[int, str, str]:
        """ExecSync `sh -c script`: exit code, stdout, stderr."""
        r = self.call("ExecSync", container_id=cid, cmd=["sh", "-c", script], timeout=60)
        return r.exit_code, r.stdout.decode(), r.stderr.decode()

    def log(self, name: str) -> str:
        """The container's log as the cri plugin writes it (`<time> stdout F <line>`)."""
        path = self.logs / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def remove(self) -> None:
        """StopPodSandbox + RemovePodSandbox (both idempotent, as the kubelet relies on)."""
        if self.id in [p.id for p in self.call("ListPodSandbox").items]:
            self.call("StopPodSandbox", pod_sandbox_id=self.id)
            self.call("RemovePodSandbox", pod_sandbox_id=self.id)


@pytest.fixture
def pod(node: Node) -> Iterator[Pod]:
    """A running pod; afterwards it is removed and nothing of it may be left."""
    pod = Pod(node, "ocitest-pod")
    try:
        pod.run()
        yield pod
    finally:
        pod.remove()
        leftovers = node.ctd.check_clean()
        assert leftovers == [], f"left behind: {leftovers}"


# --- the pod's life ------------------------------------------------------------------------


def test_pod_runs_under_ociruntime(node: Node, pod: Pod) -> None:
    """A pod of RuntimeClass handler `ociruntime`: its sandbox and container are run by
    our runtime, the container in the sandbox's PID, IPC and UTS namespaces and the node's
    network; its output reaches the pod's log; stop and remove end both."""
    api = node.api
    status = node.call("PodSandboxStatus", pod_sandbox_id=pod.id).status
    assert (status.state, status.runtime_handler) == (api.SANDBOX_READY, "ociruntime")
    cid = pod.start_container("hello", "echo hello from the pod; exec sleep 1000")
    assert node.call("ContainerStatus", container_id=cid).status.state == api.CONTAINER_RUNNING
    until("the container's output in its log", lambda: " stdout F hello from the pod\n" in
          pod.log("hello"))  # fmt: skip
    sandbox, container = node.runtime_state(pod.id), node.runtime_state(cid)
    assert (sandbox["status"], container["status"]) == ("running", "running")
    assert_in_sandbox_namespaces(pod, cid, sandbox["pid"])
    assert pod.exec(cid, "echo out; echo err >&2; exit 3") == (3, "out\n", "err\n")

    node.call("StopContainer", container_id=cid, timeout=30)
    stopped = node.call("ContainerStatus", container_id=cid).status
    assert (stopped.state, stopped.exit_code) == (api.CONTAINER_EXITED, 128 + 15)  # SIGTERM
    node.call("RemoveContainer", container_id=cid)
    assert cid not in [c.id for c in node.call("ListContainers").containers]
    node.call("StopPodSandbox", pod_sandbox_id=pod.id)
    assert node.call("PodSandboxStatus", pod_sandbox_id=pod.id).status.state == (
        api.SANDBOX_NOTREADY
    )
    node.call("RemovePodSandbox", pod_sandbox_id=pod.id)
    assert pod.id not in [p.id for p in node.call("ListPodSandbox").items]
    # The shim ran our runtime for both, as it runs runc: StopContainer's SIGTERM, then
    # what is left in the container killed and the container deleted.
    calls = node.calls(cid)
    assert calls[:5] == ["create", "start", "exec --detach", "exec --detach", "kill 15"], calls
    assert_ends_with_cleanup(calls[5:])
    calls = node.calls(pod.id)
    assert calls[:3] == ["create", "start", "kill 9"], calls  # StopPodSandbox: SIGKILL
    assert_ends_with_cleanup(calls[3:])


def assert_ends_with_cleanup(calls: list[str]) -> None:
    """`kill --all 9` and `delete`, and maybe already the shim's `delete --force`: it runs
    once containerd has seen the shim go, which may be after the CRI call returned."""
    assert (
        {"kill --all 9", "delete"} <= set(calls) <= {"kill --all 9", "delete", "delete --force"}
    ), calls


def assert_in_sandbox_namespaces(pod: Pod, cid: str, sandbox_pid: int) -> None:
    """What the container sees: the pause process as PID 1, the sandbox's PID, IPC and
    UTS namespaces (links compared with the sandbox init's, read on the host), the
    node's network namespace and a mount namespace of its own."""
    script = "tr '\\0' ' ' < /proc/1/cmdline; echo; for n in pid ipc uts net mnt; do"
    script += " readlink /proc/self/ns/$n; done"
    code, out, err = pod.exec(cid, script)
    assert (code, err) == (0, ""), out
    pid1, *links = out.splitlines()
    assert pid1.split() == PAUSE_CMD
    seen = dict(zip(("pid", "ipc", "uts", "net", "mnt"), links, strict=True))

    def sandbox(ns: str) -> str:
        return os.readlink(f"/proc/{sandbox_pid}/ns/{ns}")

    def node_ns(ns: str) -> str:
        return os.readlink(f"/proc/self/ns/{ns}")

    assert [seen[n] == sandbox(n) for n in ("pid", "ipc", "uts")] == [True] * 3, seen
    assert [seen[n] != node_ns(n) for n in ("pid", "ipc")] == [True] * 2, seen
    assert seen["net"] == node_ns("net"), seen
    assert seen["mnt"] not in (sandbox("mnt"), node_ns("mnt")), seen


# --- resources: ContainerStats, UpdateContainerResources -----------------------------------


def cgroup_limits(pod: Pod, cid: str) -> tuple[int, int]:
    """(memory limit, CFS quota) as the container reads them in its own v1 cgroups."""
    script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    code, out, err = pod.exec(cid, script)
    assert (code, err) == (0, ""), out
    memory, quota = out.split()
    return int(memory), int(quota)


@pytest.mark.skipif(CGROUP_V2_ONLY, reason="reads v1 cgroup files (memory, cpu hierarchies)")
def test_stats_and_resource_update(node: Node, pod: Pod) -> None:
    """ContainerStats reports the cgroups our runtime put the container in (16 MiB it
    wrote to its tmpfs /dev/shm show in its working set, as in `ociruntime events
    --stats`); UpdateContainerResources reaches it through `update` and the container
    sees the new limits."""
    script = f"head -c {16 * MiB} /dev/zero > /dev/shm/ballast && echo ready; exec sleep 1000"
    cid = pod.start_container("stats", script, {"memory_limit_in_bytes": 256 * MiB})
    until("the container's ballast", lambda: " stdout F ready\n" in pod.log("stats"))
    assert cgroup_limits(pod, cid) == (256 * MiB, -1)

    stats = node.call("ContainerStats", container_id=cid).stats
    assert stats.attributes.id == cid
    assert stats.memory.working_set_bytes.value >= 16 * MiB, stats.memory
    assert stats.cpu.usage_core_nano_seconds.value > 0, stats.cpu
    ours = node.runtime("events", "--stats", cid)["data"]["memory"]["usage"]
    assert ours["usage"] >= 16 * MiB and ours["limit"] == 256 * MiB, ours

    limits = {"memory_limit_in_bytes": 128 * MiB, "cpu_period": 100_000, "cpu_quota": 50_000}
    node.call("UpdateContainerResources", container_id=cid, linux=limits)
    assert cgroup_limits(pod, cid) == (128 * MiB, 50_000)
    assert "update --resources -" in node.calls(cid), node.calls(cid)


# --- what is documented --------------------------------------------------------------------


def readme_blocks(language: str) -> list[str]:
    """README's fenced blocks of `language`."""
    parts = (REPO / "README.md").read_text().split(f"```{language}\n")[1:]
    return [part.split("```", 1)[0] for part in parts]


@pytest.mark.pure
def test_readme_recipe_is_the_tested_one() -> None:
    """README's containerd entry is the one CRIContainerd runs (its BinaryName aside), and
    README's RuntimeClass names it as the handler the test's pods ask for."""
    entry = next(b for b in readme_blocks("toml") if "runtimes.ociruntime" in b)
    documented = tomllib.loads(entry)["plugins"]["io.containerd.grpc.v1.cri"]
    tested = tomllib.loads(cri.CRI_RUNTIME_ENTRY.format(binary="/usr/local/bin/ociruntime"))
    assert documented == tested["plugins"]["io.containerd.grpc.v1.cri"]
    runtime_class = next(b for b in readme_blocks("yaml") if "kind: RuntimeClass" in b)
    handler = re.search(r"^handler: *(\S+)", runtime_class, re.M)
    assert handler is not None and handler[1] == cri.HANDLER
    assert cri.HANDLER in documented["containerd"]["runtimes"]


def normalize(line: str, node: Node) -> str:
    """One runtime command line with ids and paths replaced by CLIENTS.md's placeholders."""
    line = line.replace(f"{node.ctd.runtime_root}/{cri.CRI_NAMESPACE}", "<root>")
    task_dir = f"{node.ctd.base}/state/io.containerd.runtime.v2.task/{cri.CRI_NAMESPACE}/"
    line = re.sub(re.escape(task_dir) + r"[0-9a-f]{64}", "<bundle>", line)
    line = re.sub(r"<bundle>/(?!init\.pid|log\.json)[^ /]+\.pid", "<bundle>/<exec-id>.pid", line)
    line = re.sub(r"/\S*/runc-process\d+", "<process.json>", line)
    return re.sub(r"\b[0-9a-f]{64}\b", "<id>", line)


def test_clients_md_lists_every_call(node: Node) -> None:
    """Every command line the shim ran for the module's pods is listed in CLIENTS.md's
    section on the cri plugin (run last; OCITEST_CRI_ARGV_OUT=FILE writes them)."""
    lines = node.calls_log.read_text().splitlines() if node.calls_log.exists() else []
    seen = sorted({normalize(line, node) for line in lines})
    out = os.environ.get("OCITEST_CRI_ARGV_OUT")
    if out:
        Path(out).write_text("".join(f"{c}\n" for c in seen))
    assert seen, "the shim never called the runtime"
    section = (REPO / "conformance" / "CLIENTS.md").read_text().split(CLIENTS_MD_SECTION, 1)
    assert len(section) == 2, f"no {CLIENTS_MD_SECTION!r} in CLIENTS.md"
    listed = set(re.findall(r"^\| `(--root <root> [^`]*)`", section[1].split("\n## ")[0], re.M))
    assert [c for c in seen if c not in listed] == []
