"""Kubernetes' path to a runtime: containerd's cri plugin, driven over gRPC as a kubelet
drives it (tests/test_cri.py).

- `CRI_RUNTIME_ENTRY` is README's containerd recipe (Use it with containerd): the
  `ociruntime` runtimes entry a RuntimeClass's `handler: ociruntime` names, next to the
  `runc` entry the cri plugin needs to load at all. `CRI_PRIVATE_CNI` keeps the plugin
  off the host's CNI config (none is installed here; pods use the node's network).
- `CRIContainerd`: a private containerd (testkit/containerd.py) with the cri plugin on,
  that recipe (BinaryName: the caller's executable, e.g. a wrapper logging its calls;
  Root: a directory of the caller's, so the runtime's state can be checked), and a
  sandbox image of the caller's (no registry is reachable: the caller imports it).
- `load_api` compiles testkit/cri_runtime_v1.proto (a subset of k8s.io/cri-api's
  runtime/v1 api.proto, field numbers as upstream) with grpcio-tools into a directory of
  the caller's: nothing generated is kept in the repository.
- `CRIClient(address, api)("RunPodSandbox", config={...})`: one unary call by method
  name, the request built from keyword arguments (nested dicts for messages, enum
  values by name), the response message returned; a gRPC error raises grpc.RpcError.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from testkit.containerd import Containerd
from testkit.processes import remove_cgroup_subtrees

PROTO = Path(__file__).resolve().parent / "cri_runtime_v1.proto"
#: containerd's cri plugin keeps everything in this containerd namespace (fixed in 1.6).
CRI_NAMESPACE = "k8s.io"
#: The runtimes entry's name: what a RuntimeClass's `handler` (and a CRI client's
#: RunPodSandboxRequest.runtime_handler) names.
HANDLER = "ociruntime"

#: README's containerd CRI recipe (BinaryName formatted in). The runc entry is that of
#: `containerd config default`: a config with runtimes but not the default one
#: (default_runtime_name, "runc") makes the cri plugin fail to load.
CRI_RUNTIME_ENTRY = """\
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.ociruntime]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.ociruntime.options]
  BinaryName = "{binary}"
"""
#: Kept private: no CNI plugins or network config of the host's (none is installed here).
CRI_PRIVATE_CNI = """\
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{base}/cni/bin"
  conf_dir = "{base}/cni/net.d"
"""
#: The cri plugin's own settings: the pause image it runs as each pod's sandbox, and
#: whether to raise the OOM score adjustments it asks for (the sandbox's -998, those the
#: kubelet passes) to containerd's own: without CAP_SYS_RESOURCE (root here lacks it) no
#: runtime may lower a score, so runc and ociruntime refuse -998 (EACCES).
CRI_PLUGIN_SETTINGS = """\
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = {restrict_oom_score_adj}
"""
CAP_SYS_RESOURCE = 24
#: Added to the recipe's options by CRIContainerd only: the runtime's --root (the shim
#: adds /k8s.io), under the test's directory instead of containerd's private /run.
ROOT_OPTION = '  Root = "{root}"\n'


def cri_config(base: Path, binary: str | Path, sandbox_image: str, root: Path) -> str:
    """The cri plugin's config: settings, private CNI dirs, README's runtimes entry with
    `binary` as BinaryName and `root` as the runtime's state root."""
    restrict = "false" if has_capability(CAP_SYS_RESOURCE) else "true"
    return (
        CRI_PLUGIN_SETTINGS.format(sandbox_image=sandbox_image, restrict_oom_score_adj=restrict)
        + CRI_PRIVATE_CNI.format(base=base)
        + CRI_RUNTIME_ENTRY.format(binary=binary)
        + ROOT_OPTION.format(root=root)
    )


def has_capability(cap: int) -> bool:
    """Whether this process holds `cap` in its effective set (the caller's privileges are
    containerd's, the shim's and the runtime's)."""
    with open("/proc/self/status") as f:
        eff = next(line.split()[1] for line in f if line.startswith("CapEff:"))
    return bool(int(eff, 16) >> cap & 1)


class CRIContainerd(Containerd):
    """A private containerd serving the CRI API on its socket, its pods and containers
    run by `binary` through the `ociruntime` handler, their cgroups under
    `cgroup_parent` (what a kubelet passes as LinuxPodSandboxConfig.cgroup_parent), which
    `stop` removes (instead of a /k8s.io of the host's)."""

    def __init__(self, base: Path, binary: str | Path, sandbox_image: str,
                 cgroup_parent: str) -> None:  # fmt: skip
        self.runtime_root = Path(base) / "runtime-root"
        self.cgroup_parent = cgroup_parent
        config = cri_config(Path(base), binary, sandbox_image, self.runtime_root)
        super().__init__(base, CRI_NAMESPACE, [self.runtime_root], cri_config=config)

    def _remove_namespace_cgroups(self) -> list[str]:
        """The cgroup parent with what is below it: a container cgroup is a leftover."""
        return remove_cgroup_subtrees([self.cgroup_parent])

    def check_clean(self, ids: Iterable[str] = ()) -> list[str]:
        """What is left of the pods (containers, shims, runtime state, mounts, cgroups
        under the cgroup parent); removes it all (the parent too: a runtime creates it
        again for the next pod, as runc does)."""
        return super().check_clean(ids) + self._remove_namespace_cgroups()


def load_api(out_dir: Path) -> ModuleType:
    """The message classes of testkit/cri_runtime_v1.proto, compiled into `out_dir`."""
    from grpc_tools import protoc  # a test dependency (setup.cfg's `test` extra)

    argv = ["protoc", f"-I{PROTO.parent}", f"--python_out={out_dir}", PROTO.name]
    if protoc.main(argv) != 0:
        raise RuntimeError(f"protoc could not compile {PROTO}")
    name = PROTO.stem + "_pb2"
    spec = importlib.util.spec_from_file_location(name, Path(out_dir) / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CRIClient:
    """Unary CRI calls on containerd's socket, by method name, as a kubelet makes them."""

    def __init__(self, address: str, api: ModuleType, timeout: float = 120) -> None:
        import grpc

        self.api = api
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self._methods = {
            method.name: (f"/{service.full_name}/{method.name}", method)
            for service in api.DESCRIPTOR.services_by_name.values()
            for method in service.methods
        }

    def __call__(self, method: str, /, *, deadline: float | None = None, **fields: Any) -> Any:
        """`method`'s response to the request of `fields` (a request's own `timeout`
        field is one of them: the call's own limit is `deadline`, in seconds)."""
        path, descriptor = self._methods[method]
        request_type = getattr(self.api, descriptor.input_type.name)
        response_type = getattr(self.api, descriptor.output_type.name)
        rpc = self.channel.unary_unary(
            path,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return rpc(request_type(**fields), timeout=deadline or self.timeout)

    def ready(self) -> bool:
        """Whether the cri plugin answers: it refuses every call ("server is not
        initialized yet") for a while after containerd itself answers."""
        import grpc

        try:
            return bool(self("Version", version="v1", deadline=10).runtime_api_version)
        except grpc.RpcError:
            return False

    def close(self) -> None:
        self.channel.close()
