"""A private podman (Debian 12's 4.3, through conmon) that runs runtimes of our choosing:
for the podman scenario of bench/bench.py (tests/test_podman.py has its own, logging
wrapper).

- Everything podman keeps lives under a directory of the caller's: storage (--root,
  overlay by default), --runroot (BASE/run: podman wants it at most 50 characters long),
  --tmpdir (conmon's exit files, the events log, file
  locks instead of /dev/shm/libpod_lock), the network config dir, the containers.conf,
  storage.conf and registries.conf it reads (environment), conmon's TMPDIR, and one state
  root per runtime. The only exception is c/image's blob-info cache, which root's podman
  puts in /var/lib/containers/cache whatever the configuration: `stop()` removes it if it
  did not exist before.
- podman 4.3 runs `RUNTIME delete --force ID` without the global flags given with
  `--runtime-flag`, so a runtime's `--root` cannot be passed that way. Each runtime is
  therefore run through a launcher, a small compiled program (gcc) that execs it with
  `--root ROOT` first: a C program, so that it costs a few hundred microseconds per call,
  not a shell's start. It has the runtime's basename, so podman treats it as it would
  the runtime itself (its list of runtimes that take `--log-format=json`).
- Every `podman run` here has `--pull never --network none`, explicit `--ulimit`s
  (podman's default nofile/nproc exceed the hard limits of this machine, and root lacks
  CAP_SYS_RESOURCE to raise them) and `--cgroup-parent`; podman's default seccomp profile
  stays on.
- conmon and `podman container cleanup` (conmon's exit command) outlive `podman run`:
  `check_clean()` waits for every process whose command line names the directory.
- `stop()` removes what is left and returns a description of each leftover it found.

Usage:

    pm = Podman(base, {"ociruntime": ".venv/bin/ociruntime"}, cgroup_parent="mytest-pod")
    pm.start()
    try:
        pm.load_image(archive, "localhost/ocitest/busybox:latest")  # testkit/oci_image.py
        pm(*pm.run_args("--rm", IMAGE, "true"), runtime="ociruntime")
    finally:
        leftovers = pm.stop()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from testkit.processes import (
    Result,
    cgroup_hierarchies,
    command_lines,
    kill_pid,
    remove_cgroup_subtrees,
    run_to_files,
    state_dirs,
    umount_lazy,
)

TOOLS = ("podman", "conmon", "gcc")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Explicit limits: podman's defaults exceed this machine's hard limits (see above).
RUN_FLAGS = (
    "--pull", "never",
    "--network", "none",
    "--ulimit", "nofile=1024:1024",
    "--ulimit", "nproc=4096:4096",
)  # fmt: skip
#: What podman or conmon could create outside the private directory if not kept there.
OUTSIDE = (
    "/dev/shm/libpod_lock",
    "/etc/cni/net.d/cni.lock",
    "/run/libpod",
    "/run/containers",
    "/run/runc",
    "/run/ociruntime",
    "/run/netns",
)
BLOB_CACHE = Path("/var/lib/containers")
#: In `base` while the blob cache is ours to remove (remove_stale: after a SIGKILL).
BLOB_CACHE_MARKER = "blob-cache-is-ours"
#: podman refuses a longer --runroot ("the specified runroot is longer than 50 characters").
RUNROOT_MAX = 50
#: podman's cgroupfs manager puts conmon in PARENT/conmon and leaves it there.
CONMON_CGROUP = "conmon"

LAUNCHER_C = r"""
#include <stdlib.h>
#include <unistd.h>
/* Exec the runtime with `--root ROOT` before the arguments podman or conmon gave
   (testkit/podman.py). */
int main(int argc, char **argv) {
    char **args = calloc(argc + 3, sizeof *args);
    if (!args) return 127;
    args[0] = RUNTIME;
    args[1] = "--root";
    args[2] = ROOT;
    for (int i = 1; i < argc; i++) args[i + 2] = argv[i];
    execv(RUNTIME, args);
    return 127;
}
"""


class PodmanError(Exception):
    """podman refused what it was asked to set up."""


def missing_tools() -> list[str]:
    found = [shutil.which(t) or shutil.which(t, path="/usr/libexec/podman") for t in TOOLS]
    return [tool for tool, path in zip(TOOLS, found, strict=True) if path is None]


def version() -> str:
    """podman's version ("4.3.1"), or "" if it cannot be run."""
    try:
        p = subprocess.run(["podman", "--version"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    words = p.stdout.split()  # "podman version 4.3.1"
    return words[-1] if p.returncode == 0 and words else ""


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compile_launcher(path: Path, runtime: str | Path, root: str | Path) -> None:
    """Compile, to `path`, a program that execs `runtime --root ROOT ARGS...`."""
    src = path.with_suffix(".c")
    defines = f"#define RUNTIME {_c_string(str(runtime))}\n#define ROOT {_c_string(str(root))}\n"
    src.write_text(defines + LAUNCHER_C)
    p = subprocess.run(["gcc", "-O1", "-o", str(path), str(src)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        raise PodmanError(f"gcc could not build the runtime launcher:\n{p.stderr}")


class Podman:
    """podman kept under `base` (which must exist; it is kept, what podman put in it is
    removed by `stop`), with `runtimes` ({name: executable}) each behind its launcher and
    with its own state root, its containers' cgroups under /`cgroup_parent`."""

    def __init__(self, base: Path, runtimes: dict[str, str | Path], cgroup_parent: str,
                 storage_driver: str = "overlay") -> None:  # fmt: skip
        self.base = Path(base)
        self.runtimes = {name: str(path) for name, path in runtimes.items()}
        self.cgroup_parent = cgroup_parent.strip("/")
        self.storage_driver = storage_driver
        self.env: dict[str, str] = {}
        self._outside_before = outside_state()
        self._blob_cache_existed = BLOB_CACHE.exists()
        self._stopped = False

    def launcher(self, runtime: str) -> Path:
        return self.base / "runtimes" / runtime / os.path.basename(self.runtimes[runtime])

    def state_root(self, runtime: str) -> Path:
        return self.base / f"state-{runtime}"

    @property
    def runroot(self) -> Path:
        return self.base / "run"

    def start(self) -> None:
        """Write the configuration and build the launchers (podman has no daemon)."""
        b = self.base
        if len(str(self.runroot)) > RUNROOT_MAX:
            raise PodmanError(f"podman wants a runroot of at most {RUNROOT_MAX} characters: "
                              f"{self.runroot}")  # fmt: skip
        for d in ("root", "run", "tmpdir", "tmp", "net"):
            (b / d).mkdir()
        (b / "containers.conf").write_text(
            "[engine]\n"
            'events_logger = "file"\n'
            'lock_type = "file"\n'
            f'image_copy_tmp_dir = "{b / "tmp"}"\n'
            # conmon gets only these variables; TMPDIR: where it makes its console sockets.
            f'conmon_env_vars = ["PATH={SYSTEM_PATH}", "TMPDIR={b / "tmp"}"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{b / "net"}"\n'
        )
        (b / "storage.conf").write_text(
            f'[storage]\ndriver = "{self.storage_driver}"\nrunroot = "{self.runroot}"\n'
            f'graphroot = "{b / "root"}"\n'
        )
        (b / "registries.conf").write_text("")  # no registry, no short-name alias
        if not self._blob_cache_existed:
            (b / BLOB_CACHE_MARKER).touch()
        for name, binary in self.runtimes.items():
            self.state_root(name).mkdir()
            self.launcher(name).parent.mkdir(parents=True)
            compile_launcher(self.launcher(name), binary, self.state_root(name))
        private = ("CONTAINER", "REGISTRIES_CONFIG", "XDG_", "DOCKER_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(private)}
        env.update(
            CONTAINERS_CONF=str(b / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(b / "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=str(b / "registries.conf"),
            TMPDIR=str(b / "tmp"),  # conmon's console sockets, podman's big temporary files
        )
        self.env = env

    def argv(self, *args: str, runtime: str | None = None) -> list[str]:
        """A podman command line; with `runtime`, the runtime it runs containers with."""
        b = self.base
        argv = [
            "podman",
            "--root", str(b / "root"),
            "--runroot", str(self.runroot),
            "--tmpdir", str(b / "tmpdir"),
            "--storage-driver", self.storage_driver,
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
        ]  # fmt: skip
        if runtime is not None:
            argv += ["--runtime", str(self.launcher(runtime))]
        return [*argv, *args]

    def __call__(self, *args: str, runtime: str | None = None, stdin: str | None = None,
                 timeout: float = 60) -> Result:  # fmt: skip
        """One podman command, its output to files (conmon and the container must not
        hold a pipe of ours open)."""
        return run_to_files(self.argv(*args, runtime=runtime), stdin=stdin, env=self.env,
                            timeout=timeout)  # fmt: skip

    def run_args(self, *opts: str) -> list[str]:
        """`podman run` with the private-and-possible flags; opts: [options] IMAGE [cmd]."""
        return ["run", *RUN_FLAGS, "--cgroup-parent", f"/{self.cgroup_parent}", *opts]

    def load_image(self, archive: str | Path, name: str, timeout: float = 60) -> None:
        """`podman load` an OCI archive (testkit/oci_image.py) whose image is `name`."""
        loaded = self("load", "-i", str(archive), timeout=timeout)
        if loaded.returncode != 0:
            raise PodmanError(f"podman load -i {archive}: {loaded}")
        listed = self("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        if name not in listed:
            raise PodmanError(f"{name} not among the loaded images: {listed}")

    # --- what exists ----------------------------------------------------------------------

    def containers(self) -> list[str]:
        return self("ps", "-aq", "--no-trunc").stdout.split()

    def remove_everything(self) -> None:
        """Best effort: `podman rm --all --force`, once with each runtime (podman asks the
        runtime a container was made with)."""
        for runtime in self.runtimes:
            self("rm", "--all", "--force", "--time", "0", runtime=runtime, timeout=120)

    def processes(self) -> list[int]:
        """conmon, `podman container cleanup` and any other process whose command line
        names the directory (but this one)."""
        needle = str(self.base).encode() + b"/"
        me = os.getpid()
        return [pid for pid, argv in command_lines() if pid != me and needle in b" ".join(argv)]

    def wait_processes_gone(self, timeout: float = 15) -> list[int]:
        """Until no process names the directory (conmon, its exit command); those left."""
        deadline = time.monotonic() + timeout
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.01)  # not our children: no pidfd for a process not yet started
        return left

    def mounts_under_base(self) -> list[str]:
        with open("/proc/self/mountinfo") as f:
            points = [ln.split()[4] for ln in f]
        return [m for m in points if m.startswith(str(self.base) + "/")]

    def runtime_state(self) -> list[Path]:
        return [self.state_root(name) / d for name in self.runtimes
                for d in state_dirs(self.state_root(name))]  # fmt: skip

    def container_cgroups(self) -> list[Path]:
        parents = [h / self.cgroup_parent for h in cgroup_hierarchies()]
        return [c for p in parents if p.is_dir() for c in sorted(p.iterdir())
                if c.is_dir() and c.name != CONMON_CGROUP]  # fmt: skip

    def check_clean(self) -> list[str]:
        """After `podman run --rm` returned: wait for conmon and the cleanup process, then
        what is left (a container, a process, runtime state, a cgroup, a mount); removes
        it all."""
        leftovers = [f"process {p}" for p in self.wait_processes_gone()]
        leftovers += [f"container {c}" for c in self.containers()]
        if leftovers:
            self.remove_everything()
        leftovers += [f"runtime state {d}" for d in self.runtime_state()]
        leftovers += [f"cgroup {c}" for c in self.container_cgroups()]
        leftovers += [f"mount {m}" for m in self.mounts_under_base()]
        return leftovers

    def stop(self) -> list[str]:
        """Remove every container and image, kill what still names the directory, unmount
        what is mounted under it, remove the cgroup parent and what podman wrote under
        `base`. Returns what was left behind before that (empty: all was clean).
        Idempotent."""
        if self._stopped:
            return []
        self._stopped = True
        leftovers: list[str] = []
        if self.env:  # started
            leftovers += [f"container {c}" for c in self.containers()]
            self.remove_everything()
            self("rmi", "--all", "--force")
        left = self.wait_processes_gone(timeout=15)
        leftovers += [f"process {p}" for p in left]
        for pid in left:
            kill_pid(pid)
        mounts = self.mounts_under_base()
        leftovers += [f"mount {m}" for m in mounts]
        for point in reversed(mounts):
            umount_lazy(point)
        leftovers += [f"runtime state {d}" for d in self.runtime_state()]
        leftovers += remove_cgroup_subtrees([self.cgroup_parent], expected=[CONMON_CGROUP])
        for d in ("root", "run", "tmpdir", "tmp", "net", "runtimes"):
            shutil.rmtree(self.base / d, ignore_errors=True)
        for name in self.runtimes:
            shutil.rmtree(self.state_root(name), ignore_errors=True)
        if not self._blob_cache_existed:
            shutil.rmtree(BLOB_CACHE, ignore_errors=True)
            (self.base / BLOB_CACHE_MARKER).unlink(missing_ok=True)
        leftovers += [f"{p} created" for p in sorted(outside_state() - self._outside_before)]
        return leftovers


def remove_stale(base: Path) -> None:
    """What a podman under `base` left outside it when its owner was killed before
    `stop()` (the blob-info cache it created). The caller has killed its processes."""
    if (Path(base) / BLOB_CACHE_MARKER).exists():
        shutil.rmtree(BLOB_CACHE, ignore_errors=True)


def outside_state() -> set[str]:
    """What podman or conmon could leave outside the private directory."""
    found = {p for p in OUTSIDE if os.path.exists(p)}
    return found | {str(p) for p in Path("/tmp").glob("conmon-term.*")}
