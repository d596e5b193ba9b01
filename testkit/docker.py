"""A private dockerd (Debian 12's docker.io 20.10) that runs runtimes of our choosing,
driven through the `docker` CLI as a user would: for the docker scenarios of
bench/bench.py and, later, a test (issue #13).

- dockerd runs with its own --data-root, --exec-root, unix socket (-H), --pidfile and
  --config-file under a directory of the caller's; the config file names its trust key
  there too (`deprecated-key-path`: else dockerd 20.10 writes /etc/docker/key.json). It
  starts and supervises its own containerd (socket, state and root under the exec and
  data roots).
- Like testkit/containerd.py, it runs in a private mount namespace with a tmpfs on /run:
  the runc v2 shim puts its sockets in /run/containerd/s whatever the configuration, and
  dockerd would use the system's containerd if one answered on
  /run/containerd/containerd.sock. Image layers and container rootfs are mounted in that
  namespace only.
- No bridge and no iptables (`--bridge=none --iptables=false --ip6tables=false`): there is
  no bridge networking here; every `docker run` here wants `--network none`.
- Each runtime is registered with `--add-runtime NAME=PATH` and chosen per container by
  `docker run --runtime NAME`. dockerd 20.10 gives them all one state root,
  EXEC_ROOT/runtime-runc/moby (the shim's Root option).
- Container cgroups go under `--cgroup-parent` (/NAME in every hierarchy), which a
  runtime never removes: `stop()` does.
- `stop()` removes what is left (containers, shims, mounts, runtime state, the cgroup
  parent, dockerd and its containerd) and returns a description of each leftover it
  found: a caller asserts it is empty (a test) or reports it (the bench).

Usage:

    d = Dockerd(base, {"ociruntime": ".venv/bin/ociruntime"}, cgroup_parent="mytest-dkr")
    d.start()
    try:
        d.load_image(archive, "localhost/ocitest/busybox:latest")  # oci_image, docker_manifest
        d.docker(*d.run_args("ociruntime", "--rm", IMAGE, "true"))
    finally:
        leftovers = d.stop()
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from testkit.processes import (
    Result,
    cgroup_hierarchies,
    command_lines,
    die_with_parent,
    kill_pid,
    remove_cgroup_subtrees,
    run_to_files,
    state_dirs,
    wait_pids_gone,
)

#: What a private dockerd needs on $PATH, besides a docker client (docker_cli()).
TOOLS = ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "unshare")
#: The client packaged with Debian's dockerd; another `docker` on $PATH may be newer
#: (it negotiates the API version down), and is used only if this one is missing.
DEBIAN_CLIENT = "/usr/bin/docker"
#: The namespace dockerd uses in its containerd.
NAMESPACE = "moby"


class DockerError(Exception):
    """dockerd did not start, or refused what it was asked to set up."""


def docker_cli() -> str | None:
    if os.access(DEBIAN_CLIENT, os.X_OK):
        return DEBIAN_CLIENT
    return shutil.which("docker")


def missing_tools() -> list[str]:
    """What is missing to start a private dockerd (empty: it can be started)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return missing + ([] if docker_cli() else ["docker (client)"])


def version() -> str:
    """dockerd's version ("20.10.24+dfsg1"), or "" if it cannot be run."""
    try:
        p = subprocess.run(["dockerd", "--version"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # "Docker version 20.10.24+dfsg1, build 5d6db84"
    words = p.stdout.replace(",", " ").split()
    return words[2] if p.returncode == 0 and len(words) > 2 else ""


class Dockerd:
    """A private dockerd under `base` (which must exist; it is kept, what dockerd put in
    it is removed by `stop`), with `runtimes` ({name: executable}) added, its containers'
    cgroups under /`cgroup_parent`."""

    def __init__(self, base: Path, runtimes: dict[str, str | Path], cgroup_parent: str) -> None:
        self.base = Path(base)
        self.runtimes = {name: str(path) for name, path in runtimes.items()}
        self.cgroup_parent = cgroup_parent.strip("/")
        self.data_root = self.base / "data"
        self.exec_root = self.base / "exec"
        self.address = str(self.base / "docker.sock")
        self.containerd_address = str(self.exec_root / "containerd" / "containerd.sock")
        self.config = self.base / "daemon.json"
        self.log_path = self.base / "dockerd.log"
        self.cli = docker_cli() or "docker"
        # The client's own config dir (it reads ~/.docker otherwise), no DOCKER_HOST.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env["DOCKER_CONFIG"] = str(self.base / "client")
        self.proc: subprocess.Popen | None = None
        self._stopped = False
        self._host_paths = {p: os.path.exists(p) for p in ("/etc/docker", "/var/lib/docker")}

    # --- start and stop -------------------------------------------------------------------

    def dockerd_argv(self) -> list[str]:
        argv = [
            shutil.which("dockerd") or "dockerd",
            "--config-file", str(self.config),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.base / "dockerd.pid"),
            "-H", f"unix://{self.address}",
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
            "--userland-proxy=false",
            "--cgroup-parent", f"/{self.cgroup_parent}",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
        ]  # fmt: skip
        for name, path in self.runtimes.items():
            argv += ["--add-runtime", f"{name}={path}"]
        return argv

    def start(self, timeout: float = 30) -> None:
        """Start dockerd and wait until it answers. On any failure (or interruption)
        nothing is left running: DockerError, with the end of dockerd's log."""
        (self.base / "client").mkdir(exist_ok=True)
        self.config.write_text(json.dumps({"deprecated-key-path": str(self.base / "key.json")}))
        try:
            with open(self.log_path, "w") as log:
                # The private /run (see the module's docstring); `mount -n`: no
                # /run/mount/utab in the host's /run. `unshare` and `sh` exec: the pid is
                # dockerd's. Its own session: a Ctrl-C meant for the caller does not reach
                # it (the caller stops it, in order).
                self.proc = subprocess.Popen(
                    ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                     "mount -n -t tmpfs -o mode=0755,size=16m private-run /run"
                     ' && exec "$@"', "sh", *self.dockerd_argv()],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=die_with_parent(),
                )  # fmt: skip
            self._wait_until_serving(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_serving(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DockerError(
                    f"dockerd exited ({self.proc.returncode}) at startup:\n{self.log_tail()}"
                )
            if os.path.exists(self.address):
                v = self.docker("version", "--format", "{{.Server.Version}}", timeout=10)
                if v.returncode == 0 and v.stdout.strip():
                    return
            if time.monotonic() > deadline:
                raise DockerError(
                    f"dockerd did not answer on {self.address} in {timeout} s:\n" + self.log_tail()
                )
            time.sleep(0.05)  # nothing to wait on before the socket exists

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> list[str]:
        """Remove every container, stop dockerd (it stops its containerd), kill the shims
        left, remove the cgroup parent, the runtime state and what dockerd wrote under
        `base`. Returns what was left behind before that (empty: all was clean).
        Idempotent."""
        if self._stopped:
            return []
        self._stopped = True
        leftovers: list[str] = []
        if self.proc is not None:
            if self.running():
                leftovers += [f"container {c}" for c in self.containers()]
                self.remove_everything()
            alive = wait_pids_gone(self.shim_pids(), timeout=5)
            leftovers += [f"shim pid {p}" for p in alive]
            for pid in alive:  # ours: their command line names our containerd
                kill_pid(pid)
            leftovers += [f"mount {m}" for m in self.mounts_under_base()]
            leftovers += self._terminate()
        leftovers += [f"runtime state {d}" for d in self.runtime_state()]
        leftovers += remove_cgroup_subtrees([self.cgroup_parent])
        for d in ("data", "exec", "client"):
            shutil.rmtree(self.base / d, ignore_errors=True)
        for path, existed in self._host_paths.items():
            if os.path.exists(path) and not existed:
                leftovers.append(f"{path} created on the host")
        return leftovers

    def _terminate(self) -> list[str]:
        assert self.proc is not None
        containerd = self.containerd_pids()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return ["dockerd ignored SIGTERM"]
        alive = wait_pids_gone(containerd, timeout=5)
        for pid in alive:
            kill_pid(pid)
        return [f"containerd pid {p} outlived dockerd" for p in alive]

    # --- docker ---------------------------------------------------------------------------

    def docker_argv(self, *args: str) -> list[str]:
        return [self.cli, "-H", f"unix://{self.address}", *args]

    def docker(self, *args: str, timeout: float = 60, stdin: str | None = None) -> Result:
        """One docker command, its output to files (a detached container must not hold a
        pipe of ours open)."""
        return run_to_files(self.docker_argv(*args), stdin=stdin, timeout=timeout, env=self.env)

    def run_args(self, runtime: str, *opts: str) -> list[str]:
        """`docker run` arguments for `runtime` (a name given at construction), with no
        network; `opts` are the rest (options, image, command)."""
        if runtime not in self.runtimes:
            raise ValueError(f"runtime {runtime!r} not added to this dockerd")
        return ["run", "--runtime", runtime, "--network", "none", *opts]

    def load_image(self, archive: str | Path, name: str, timeout: float = 60) -> None:
        """`docker load` an archive with docker's manifest.json (testkit/oci_image.py,
        docker_manifest=True) whose image is called `name`."""
        loaded = self.docker("load", "-i", str(archive), timeout=timeout)
        if loaded.returncode != 0:
            raise DockerError(f"docker load -i {archive}: {loaded}")
        listed = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        if name not in listed:
            raise DockerError(f"{name} not among the loaded images: {listed}")

    # --- what exists ----------------------------------------------------------------------

    def containers(self) -> list[str]:
        return self.docker("ps", "-aq", "--no-trunc").stdout.split()

    def remove_everything(self) -> None:
        """Best effort: `docker rm -f` every container."""
        cids = self.containers()
        if cids:
            self.docker("rm", "--force", "--volumes", *cids, timeout=120)

    def _pids_naming(self, name: str, needle: str) -> list[int]:
        wanted = needle.encode()
        return [
            pid
            for pid, argv in command_lines()
            if os.path.basename(argv[0]) == name.encode() and wanted in b" ".join(argv)
        ]

    def shim_pids(self) -> list[int]:
        """The runc v2 shims of this dockerd's containerd (their command line names its
        socket)."""
        return self._pids_naming("containerd-shim-runc-v2", self.containerd_address)

    def containerd_pids(self) -> list[int]:
        return self._pids_naming("containerd", str(self.exec_root))

    def mounts_under_base(self) -> list[str]:
        """Mounts in dockerd's private mount namespace under `base` (a container's rootfs,
        its network namespace file), but the data root itself: dockerd makes it a private
        bind mount of its own for as long as it runs."""
        if not self.running():
            return []
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/mountinfo") as f:
                points = [ln.split()[4] for ln in f]
        except OSError:
            return []
        return [
            m for m in points if m.startswith(str(self.base) + "/") and m != str(self.data_root)
        ]

    def runtime_state(self) -> list[Path]:
        """Container state dirs in the runtimes' root (the shim's Root, /moby added)."""
        found = []
        for root in self.exec_root.glob(f"runtime-*/{NAMESPACE}"):
            found += [root / name for name in state_dirs(root) if (root / name).is_dir()]
        return found

    def container_cgroups(self) -> list[Path]:
        parents = [h / self.cgroup_parent for h in cgroup_hierarchies()]
        return [c for p in parents if p.is_dir() for c in sorted(p.iterdir()) if c.is_dir()]

    def check_clean(self) -> list[str]:
        """After `docker run --rm` returned: what of its container is left (a container,
        a shim, runtime state, a cgroup, a mount), then remove it all. Waits (up to 5 s)
        for the shims to exit, which they do just after."""
        leftovers = [f"container {c}" for c in self.containers()]
        self.remove_everything()
        leftovers += [f"shim pid {p}" for p in wait_pids_gone(self.shim_pids(), timeout=5)]
        leftovers += [f"runtime state {d}" for d in self.runtime_state()]
        leftovers += [f"cgroup {c}" for c in self.container_cgroups()]
        leftovers += [f"mount {m}" for m in self.mounts_under_base()]
        return leftovers
