"""A private containerd 1.6 that runs a runtime of our choosing, driven through `ctr` as a
user would: for tests/test_containerd.py and the `containerd` scenario of bench/bench.py.

- containerd is Debian's (tools/install-clients.sh containerd), started with its own root,
  state, socket and config under a directory of the caller's, and only the plugins
  `ctr images import` and `ctr run` need; the cri plugin too if the caller gives its
  config (`cri_config`: its runtimes entries, its CNI dirs).
- The runc v2 shim (containerd-shim-runc-v2) hardcodes its socket directory
  (/run/containerd/s), so containerd runs in a private mount namespace with a tmpfs on
  /run: the system's /run/containerd is never touched. ctr runs in the host namespace
  with `--fifo-dir` (its default is /run/containerd/fifo). Whatever the shim and the
  runtime must see therefore lives under that directory, not under /run.
- ctr 1.6 passes the runtime binary per container: `ctr run --runc-binary B --runc-root R`
  become the shim's runc options (BinaryName, Root; the shim adds /<namespace> to R), the
  same options CRI takes from
  `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options] BinaryName`.
  One containerd can so run several runtimes side by side, each with its own root.
- An image is built elsewhere (testkit/oci_image.py) and `ctr images import`ed.
- `stop()` removes what is left (containers, tasks, shims, runtime state, the namespace's
  cgroups, containerd itself) and returns a description of each leftover it found:
  a caller asserts it is empty (a test) or reports it (the bench).

Usage:

    ctd = Containerd(base, namespace="mytest", runtime_roots=[base / "runc-root"])
    ctd.start()
    try:
        ctd.import_image(archive, "localhost/ocitest/busybox:latest")
        ctd.ctr(*ctd.run_args("/usr/sbin/runc", base / "runc-root", "--rm", IMAGE, "c1", "true"))
    finally:
        leftovers = ctd.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from testkit.processes import (
    Result,
    cgroup_hierarchies,
    command_lines,
    die_with_parent,
    kill_pid,
    remove_cgroup_subtrees,
    state_dirs,
    wait_pids_gone,
)

#: What a private containerd needs on $PATH (the shim is found by containerd there).
TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2", "unshare")

#: Only what `ctr images import` and `ctr run` need; the rest would slow startup, reach for
#: the network (cri) or write outside the base directory (opt: /opt/containerd).
CRI_PLUGIN = "io.containerd.grpc.v1.cri"
DISABLED_PLUGINS = [
    CRI_PLUGIN,  # unless a cri_config is given
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.restart",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]
REQUIRED_PLUGINS = [
    "io.containerd.grpc.v1.tasks",
    "io.containerd.runtime.v2.task",
    "io.containerd.snapshotter.v1.overlayfs",
]

CONFIG_TEMPLATE = """\
# A private containerd (testkit/containerd.py; containerd 1.6 config format).
version = 2
root = "{base}/root"
state = "{base}/state"
temp = "{base}/tmp"
disabled_plugins = {disabled}
required_plugins = {required}

[grpc]
  address = "{address}"

[debug]
  level = "info"

# The runtime binary is chosen per container by `ctr run --runc-binary` (the shim's runc
# options); a CRI client takes the same option from a runtimes entry of the cri plugin
# (disabled here unless the caller gives its config, which then follows):
# [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.NAME.options]
#   BinaryName = "/path/to/runtime"
"""


class ContainerdError(Exception):
    """containerd did not start, or refused what it was asked to set up."""


def missing_tools() -> list[str]:
    """The TOOLS not on $PATH (empty: a private containerd can be started)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def version() -> str:
    """containerd's version ("1.6.20~ds1"), or "" if it cannot be run."""
    try:
        p = subprocess.run(["containerd", "--version"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
    words = p.stdout.split()
    return words[2] if p.returncode == 0 and len(words) > 2 else ""


class Containerd:
    """A private containerd under `base` (which must exist; it is kept, what containerd
    put in it is removed by `stop`). `runtime_roots` are the `--runc-root`s the caller
    will hand `ctr run`: created by `start`, checked for leftover state and removed by
    `stop`. They must be under `base` or elsewhere outside /run (the shim and the runtime
    see containerd's private /run). `host_run` names directories of the host's /run that
    the private one shows too (bind mounts): `("systemd", "dbus")` for a runtime that
    talks to systemd (`--systemd-cgroup`)."""

    def __init__(self, base: Path, namespace: str, runtime_roots: Iterable[Path] = (),
                 cri_config: str = "", host_run: Iterable[str] = ()) -> None:  # fmt: skip
        self.base = Path(base)
        #: With it, the cri plugin is on and this TOML follows the config (its sections).
        self.cri_config = cri_config
        self.namespace = namespace
        self.address = str(self.base / "containerd.sock")
        self.config = self.base / "config.toml"
        self.log_path = self.base / "containerd.log"
        self.fifo_dir = self.base / "fifo"
        self.runtime_roots = [Path(r) for r in runtime_roots]
        self.host_run = [name for name in host_run if os.path.isdir(f"/run/{name}")]
        self.proc: subprocess.Popen | None = None
        self._host_run_containerd = os.path.exists("/run/containerd")
        self._stopped = False

    # --- start and stop -------------------------------------------------------------------

    def start(self, timeout: float = 15) -> None:
        """Start containerd and wait until it answers. On any failure (or interruption)
        nothing is left running: ContainerdError, with the end of containerd's log."""
        for d in (self.base / "tmp", self.fifo_dir, *self.runtime_roots):
            d.mkdir(parents=True, exist_ok=True)
        disabled = [p for p in DISABLED_PLUGINS if not self.cri_config or p != CRI_PLUGIN]
        self.config.write_text(
            CONFIG_TEMPLATE.format(
                base=self.base, address=self.address,
                disabled=json.dumps(disabled), required=json.dumps(REQUIRED_PLUGINS),
            ) + self.cri_config
        )  # fmt: skip
        try:
            with open(self.log_path, "w") as log:  # containerd keeps its own descriptor
                # A private mount namespace with its own /run: the shims put their sockets
                # in /run/containerd/s whatever the config says. `mount -n`: util-linux
                # would otherwise create /run/mount (utab) in the host's /run first.
                # `unshare` and `sh` exec: the pid is containerd's. Its own session: a
                # Ctrl-C meant for the caller does not reach it (the caller stops it).
                self.proc = subprocess.Popen(
                    ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                     self._keep_host_run("mount -n -t tmpfs -o mode=0755,size=16m private-run /run")
                     + ' && exec "$0" --config "$1"',
                     shutil.which("containerd") or "containerd", str(self.config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=die_with_parent(),
                )  # fmt: skip
            self._wait_until_serving(timeout)
        except BaseException:
            self.stop()
            raise

    def _keep_host_run(self, mount_private_run: str) -> str:
        """The shell commands that mount the private /run, with `host_run`'s directories
        of the host's moved aside first and then onto it."""
        if not self.host_run:
            return mount_private_run
        aside = self.base / "host-run"
        before = [f"mkdir -p {aside}/{n} && mount -n --bind /run/{n} {aside}/{n}"
                  for n in self.host_run]  # fmt: skip
        after = [
            f"mkdir -p /run/{n} && mount -n --move {aside}/{n} /run/{n}" for n in self.host_run
        ]
        return " && ".join([*before, mount_private_run, *after])

    def _wait_until_serving(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ContainerdError(
                    f"containerd exited ({self.proc.returncode}) at startup:\n{self.log_tail()}"
                )
            if os.path.exists(self.address):
                v = self.ctr("version", timeout=5)
                if v.returncode == 0 and "Server:" in v.stdout:
                    return
            if time.monotonic() > deadline:
                raise ContainerdError(
                    f"containerd did not answer on {self.address} in {timeout} s:\n"
                    + self.log_tail()
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
        """Remove every container, stop containerd and its shims, remove the namespace's
        cgroups, the runtime roots and what containerd wrote under `base`. Returns what
        was left behind before that (empty: all was clean). Idempotent."""
        if self._stopped:
            return []
        self._stopped = True
        leftovers: list[str] = []
        if self.proc is not None:
            if self.running():
                leftovers += [f"container {c}" for c in self.containers()]
                self.remove_everything()
            shims = self.shim_pids()
            alive = wait_pids_gone(shims, timeout=5)
            leftovers += [f"shim pid {p}" for p in alive]
            for pid in alive:  # ours: their command line names our socket
                kill_pid(pid)
            leftovers += [f"mount {m}" for m in self.mounts_under_base()]
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                leftovers.append("containerd ignored SIGTERM")
                self.proc.kill()
                self.proc.wait()
        leftovers += [f"runtime state {d}" for d in self.runtime_state()]
        leftovers += self._remove_namespace_cgroups()
        # The shims' temp dir (containerd's `temp`): process.json files, console sockets.
        for what, d in (("temp file", self.base / "tmp"), ("ctr fifo dir", self.fifo_dir)):
            if d.is_dir():
                leftovers += [f"{what} {n}" for n in os.listdir(d)]
        for d in ("root", "state", "tmp", "fifo"):
            shutil.rmtree(self.base / d, ignore_errors=True)
        for d in self.runtime_roots:
            shutil.rmtree(d, ignore_errors=True)
        for sock in (self.address, self.address + ".ttrpc"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)
        if os.path.exists("/run/containerd") != self._host_run_containerd:
            leftovers.append("/run/containerd of the host changed")
        return leftovers

    def _remove_namespace_cgroups(self) -> list[str]:
        """The cgroup parent /<namespace> is containerd's naming (cgroupsPath
        /<ns>/<id>); a runtime removes only the container's own dir, as runc does. A
        container dir still there is a leftover: what runs in it (an init whose shim was
        killed before its `delete`) is killed, and the dir removed."""
        return remove_cgroup_subtrees([self.namespace])

    # --- ctr ------------------------------------------------------------------------------

    def ctr_argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", self.address, "--namespace", self.namespace, *args]

    def ctr(self, *args: str, timeout: float = 30, input: str | None = None, **kw) -> Result:
        stdin = kw.pop("stdin", None if input is not None else subprocess.DEVNULL)
        p = subprocess.run(self.ctr_argv(*args), input=input, stdin=stdin,
                           capture_output=True, text=True, timeout=timeout, **kw)  # fmt: skip
        return Result(p.returncode, p.stdout, p.stderr)

    def run_args(self, binary: str | Path, root: str | Path, *opts: str) -> list[str]:
        """`ctr run` arguments with the shim pointed at `binary` (the runtime executable)
        and its state under `root`; `opts` are the rest (options, image, id, command)."""
        return ["run", "--fifo-dir", str(self.fifo_dir), "--runc-binary", str(binary),
                "--runc-root", str(root), *opts]  # fmt: skip

    def import_image(self, archive: str | Path, name: str, timeout: float = 60) -> None:
        """`ctr images import` an OCI archive whose image is called `name`."""
        imported = self.ctr("images", "import", str(archive), timeout=timeout)
        if imported.returncode != 0:
            raise ContainerdError(f"ctr images import {archive}: {imported}")
        listed = self.ctr("images", "ls", "-q").stdout.split()
        if name not in listed:
            raise ContainerdError(f"{name} not among the imported images: {listed}")

    # --- what exists ----------------------------------------------------------------------

    def containers(self) -> list[str]:
        return self.ctr("containers", "ls", "-q").stdout.split()

    def remove_everything(self, passes: int = 3) -> None:
        """Best effort: kill and delete every container (and task) in our namespace.
        Again if some remain: a `ctr run` killed while containerd was creating its task
        has containerd finish that after the first pass could see it."""
        for attempt in range(passes):
            cids = self.containers()
            if not cids:
                return
            if attempt:
                time.sleep(0.2)
            for cid in cids:
                self.ctr("tasks", "kill", "-s", "SIGKILL", cid)
                self.ctr("tasks", "delete", "--force", cid)
                self.ctr("containers", "delete", cid)

    def shim_pids(self) -> list[int]:
        """Shims of this containerd (their command line names our socket)."""
        address = self.address.encode()
        return [
            pid
            for pid, argv in command_lines()
            if argv[0].endswith(b"containerd-shim-runc-v2") and address in argv
        ]

    def mounts_under_base(self) -> list[str]:
        """Mounts in containerd's private mount namespace under `base` (snapshots, rootfs
        of running containers)."""
        if not self.running():
            return []
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        return [ln.split()[4] for ln in lines if ln.split()[4].startswith(str(self.base))]

    def runtime_state(self) -> list[Path]:
        """Container state dirs in the runtime roots (the shim's --root is R/<namespace>)."""
        found = []
        for root in self.runtime_roots:
            state = root / self.namespace
            found += [state / name for name in state_dirs(state)]
        return found

    def check_clean(self, ids: Iterable[str]) -> list[str]:
        """After some containers ran (`ids`): what of them is left, and then remove it all.
        Waits (up to 5 s) for their shims to exit, which they do after `ctr run --rm` or
        `ctr tasks delete` has returned."""
        ids = list(ids)
        leftovers = [f"container {c}" for c in self.containers()]
        self.remove_everything()
        leftovers += [f"shim pid {p}" for p in wait_pids_gone(self.shim_pids(), timeout=5)]
        leftovers += [f"runtime state {d}" for d in self.runtime_state()]
        leftovers += [f"cgroup {h / self.namespace / c}" for h in cgroup_hierarchies()
                      for c in ids if (h / self.namespace / c).exists()]  # fmt: skip
        leftovers += [f"mount {m}" for m in self.mounts_under_base()]
        return leftovers
