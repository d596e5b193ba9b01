"""Docker (Debian 12's docker.io 20.10) running containers with ociruntime, each scenario
compared with dockerd's own runc: the recipe of README's "Use it with Docker".

The harness is testkit/docker.py (shared with bench/): one private dockerd for the module,
in a private mount namespace with its own /run, its own data and exec roots, socket and
config file, no bridge and no iptables (every run has `--network none`), container
cgroups under a parent of its own. ociruntime is added as a runtime exactly as README
tells a user to: a `runtimes` entry in the daemon.json dockerd reads (`--config-file`),
path: this checkout's .venv/bin/ociruntime; `runc` is dockerd's built-in runtime (the
name is reserved). test_runtime_is_ours proves the calls reach our executable: a running
container is in the shim's state root in our format. Each scenario runs with
`docker run --runtime ociruntime` and with `--runtime runc`, keeping Docker's default
seccomp profile and capabilities, and asserts what the user sees.

After every test: no container, shim, runtime state, container cgroup or mount is left
(Dockerd.check_clean); after the module dockerd and its containerd are stopped and
nothing of them may remain (Dockerd.stop).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CGROUP_V2_ONLY, OCIRUNTIME, REPO

from testkit import docker, oci_image
from testkit.processes import Result

IMAGE = "localhost/ocitest/busybox:docker"
RUNC = "/usr/sbin/runc"
RUNTIMES = ("ociruntime", "runc")
INSTALL_CLIENTS = REPO / "tools" / "install-clients.sh"


class Dockerd(docker.Dockerd):
    """The module's dockerd: ociruntime added by daemon.json's `runtimes`, as README's
    recipe says (not `--add-runtime`); runc is dockerd's built-in runtime."""

    def __init__(self, base: Path, name: str = "dkr", **config: str) -> None:
        super().__init__(base, {}, cgroup_parent=f"ocitest-{name}-{os.getpid()}")
        self.daemon_json = self.base / "etc-docker" / "daemon.json"
        self.daemon_json.parent.mkdir()
        self.daemon_json.write_text(json.dumps({
            "runtimes": {"ociruntime": {"path": OCIRUNTIME}},
            **config,
            "deprecated-key-path": str(self.base / "key.json"),  # testkit/docker.py's
        }, indent=2))  # fmt: skip

    def dockerd_argv(self) -> list[str]:
        """testkit's, with our daemon.json for its config file."""
        argv = super().dockerd_argv()
        argv[argv.index("--config-file") + 1] = str(self.daemon_json)
        return argv

    def run_args(self, runtime: str, *opts: str) -> list[str]:
        assert runtime in RUNTIMES, runtime
        return ["run", "--runtime", runtime, "--network", "none", *opts]

    def run(self, runtime: str, *opts: str, timeout: float = 60) -> Result:
        """`docker run --rm` with `runtime`: opts are the rest (options, image, command)."""
        return self.docker(*self.run_args(runtime, "--rm", *opts), timeout=timeout)

    def check(self, *args: str, timeout: float = 60) -> str:
        r = self.docker(*args, timeout=timeout)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r}"
        return r.stdout

    def runtime_root(self) -> Path:
        """Where the shim keeps every runtime's state (the shim's Root, /moby added)."""
        return self.exec_root / "runtime-runc" / docker.NAMESPACE


# --- fixtures ------------------------------------------------------------------------------


def install_docker() -> None:
    """docker.io from Debian (tools/install-clients.sh docker); a skip, in one line, if it
    cannot be installed."""
    r = subprocess.run([str(INSTALL_CLIENTS), "docker"], capture_output=True, text=True)
    missing = docker.missing_tools()
    if r.returncode != 0 or missing:
        reason = r.stderr.strip().splitlines()[-1:] or [f"{', '.join(missing)} not on $PATH"]
        pytest.skip(f"no docker.io here (tools/install-clients.sh docker): {reason[0]}")


@pytest.fixture(scope="module")
def dockerd(rootfs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    install_docker()
    base = tmp_path_factory.mktemp("dockerd")
    d = Dockerd(base)
    try:
        try:
            d.start()
        except docker.DockerError as e:
            lines = [line for line in str(e).splitlines() if line.strip()]
            pytest.skip(f"dockerd does not start here: {lines[0]} {lines[-1][-200:]}")
        image = oci_image.build_oci_archive(
            rootfs_template, base / "image.tar", IMAGE, docker_manifest=True
        )
        d.load_image(image.path, IMAGE)
        yield d
    finally:
        leftovers = d.stop()
        assert leftovers == [], f"left behind: {leftovers}"


@pytest.fixture
def dkr(dockerd: Dockerd) -> Iterator[Dockerd]:
    """The module's dockerd; after the test, nothing of its containers may remain."""
    yield dockerd
    leftovers = dockerd.check_clean()
    assert leftovers == [], f"left behind: {leftovers}"


# --- docker run --rm: what the user sees, ours against runc ---------------------------------

V1_MEMORY_LIMIT = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
MEMORY_LIMIT = "/sys/fs/cgroup/memory.max" if CGROUP_V2_ONLY else V1_MEMORY_LIMIT
PIDS_MAX = "/sys/fs/cgroup/pids.max" if CGROUP_V2_ONLY else "/sys/fs/cgroup/pids/pids.max"

#: name: (docker run options + IMAGE + command, expected stdout or None = "as runc", exit code)
SCENARIOS = {
    "echo": ([IMAGE, "echo", "hello"], "hello\n", 0),
    "exit-code": ([IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3"], "out\n", 3),
    "env-workdir": (
        ["-e", "A=B", "-w", "/tmp", IMAGE, "sh", "-c", 'echo "$A"; pwd'],
        "B\n/tmp\n",
        0,
    ),
    "pid-1": ([IMAGE, "sh", "-c", "echo $$"], "1\n", 0),
    # -t without -i: the container gets a pty (our `create --console-socket`), no terminal
    # needed on the client's side.
    "tty": (
        ["-t", IMAGE, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both; exit 4"],
        "/dev/pts/0\r\nboth\r\n",
        4,
    ),
    "user": (["--user", "1000:1000", IMAGE, "id"], "uid=1000 gid=1000 groups=1000\n", 0),
    "read-only": (
        [
            "--read-only",
            IMAGE,
            "sh",
            "-c",
            "touch /x 2>&1; echo $?; touch /dev/shm/y && echo shm ok",
        ],
        "touch: /x: Read-only file system\n1\nshm ok\n",
        0,
    ),
    "memory-limit": (["--memory", "32m", IMAGE, "cat", MEMORY_LIMIT], f"{32 << 20}\n", 0),
    # Past the limit (no swap given): the kernel's OOM killer ends it, docker says 137.
    "memory-oom": (
        ["--memory", "32m", "--memory-swap", "32m", IMAGE, "tail", "/dev/zero"],
        "",
        137,
    ),
    "pids-limit": (["--pids-limit", "10", IMAGE, "cat", PIDS_MAX], "10\n", 0),
    # A fork bomb of sorts, bounded: the 11th process cannot be forked, ash gives up
    # ("sh: can't fork: Resource temporarily unavailable", exit 2).
    "pids-bounded": (
        [
            "--pids-limit",
            "10",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; echo all forked",
        ],
        "",
        2,
    ),
    "capabilities": ([IMAGE, "grep", "^Cap", "/proc/self/status"], None, 0),
    "cap-drop-all": (
        ["--cap-drop", "ALL", IMAGE, "grep", "^CapEff", "/proc/self/status"],
        "CapEff:\t0000000000000000\n",
        0,
    ),
    # Docker's default set is CapEff 00000000a80425fb; without NET_RAW (bit 13):
    "cap-drop-net-raw": (
        ["--cap-drop", "NET_RAW", IMAGE, "grep", "^CapEff", "/proc/self/status"],
        "CapEff:\t00000000a80405fb\n",
        0,
    ),
    # Docker's default seccomp profile is in force: a filter, and unshare(2) (allowed only
    # with CAP_SYS_ADMIN) fails with EPERM although a user namespace needs no capability.
    "seccomp-default-profile": (
        [IMAGE, "sh", "-c", "grep ^Seccomp: /proc/self/status; unshare -U true 2>&1; echo $?"],
        "Seccomp:\t2\nunshare: unshare(0x10000000): Operation not permitted\n1\n",
        0,
    ),
    "seccomp-unconfined": (
        [
            "--security-opt",
            "seccomp=unconfined",
            IMAGE,
            "sh",
            "-c",
            "grep ^Seccomp: /proc/self/status; unshare -U true 2>&1; echo $?",
        ],
        "Seccomp:\t0\n0\n",
        0,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_run_like_runc(dkr: Dockerd, name: str) -> None:
    """`docker run --rm ...`: the expected output and exit code with ociruntime, the same
    as with runc."""
    args, expected, code = SCENARIOS[name]
    ours = dkr.run("ociruntime", *args)
    assert ours.returncode == code, ours
    if expected is not None:
        assert ours.stdout == expected, ours
    if name == "pids-bounded":
        assert "can't fork" in ours.stderr, ours
    runc = dkr.run("runc", *args)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        runc.returncode,
        runc.stdout,
        runc.stderr,
    ), (ours, runc)


def test_runtime_is_ours(dkr: Dockerd) -> None:
    """dockerd knows the runtime by our path, and a container run with it is ours."""
    runtimes = json.loads(dkr.check("info", "--format", "{{json .Runtimes}}"))
    assert runtimes["ociruntime"] == {"path": OCIRUNTIME}, runtimes
    cid = dkr.check(*dkr.run_args("ociruntime", "-d", IMAGE, "sleep", "1000")).strip()
    assert_ours(dkr, cid)


def assert_ours(dkr: Dockerd, cid: str) -> None:
    """While the container runs, `ociruntime state` finds it in the shim's state root with
    the pid docker shows (runc cannot read our state); then `docker rm -f` removes it."""
    try:
        pid = int(dkr.check("inspect", "--format", "{{.State.Pid}}", cid))
        root = str(dkr.runtime_root())
        state = subprocess.run(
            [OCIRUNTIME, "--root", root, "state", cid], capture_output=True, text=True
        )
        assert state.returncode == 0, state
        status = json.loads(state.stdout)
        assert (status["status"], status["pid"]) == ("running", pid), status
        runc = subprocess.run([RUNC, "--root", root, "state", cid], capture_output=True, text=True)
        assert runc.returncode != 0, runc
        assert json.loads(dkr.check("inspect", cid))[0]["HostConfig"]["Runtime"] == "ociruntime"
    finally:
        dkr.check("rm", "--force", cid)
    assert not (dkr.runtime_root() / cid).exists()


def test_default_runtime(dockerd: Dockerd, rootfs_template: Path, tmp_path: Path) -> None:
    """README's `"default-runtime": "ociruntime"`: a dockerd of its own (the module's one
    proved docker can run here) runs a container given no --runtime with ociruntime;
    `--runtime runc` still picks runc."""
    d = Dockerd(tmp_path, "dkr-default", **{"default-runtime": "ociruntime"})
    try:
        d.start()
        image = oci_image.build_oci_archive(
            rootfs_template, tmp_path / "image.tar", IMAGE, docker_manifest=True
        )
        d.load_image(image.path, IMAGE)
        assert d.check("info", "--format", "{{.DefaultRuntime}}").strip() == "ociruntime"
        cid = d.check("run", "-d", "--network", "none", IMAGE, "sleep", "1000").strip()
        assert_ours(d, cid)
        cid = d.check(*d.run_args("runc", "-d", IMAGE, "sleep", "1000")).strip()
        assert d.check("inspect", "--format", "{{.HostConfig.Runtime}}", cid) == "runc\n"
        d.check("rm", "--force", cid)
        assert d.check_clean() == []
    finally:
        leftovers = d.stop()
    assert leftovers == [], f"left behind: {leftovers}"


# --- detached containers: stop, rm, exec, pause ---------------------------------------------


def test_detached_stop_rm(dkr: Dockerd) -> None:
    """run -d, ps shows it up, `stop -t 1` (sleep as PID 1 ignores SIGTERM: dockerd sends
    SIGKILL after 1 s, through the runtime's `kill`): exited with 137, then rm: gone."""
    seen = {}
    for runtime in RUNTIMES:
        name = f"sleeper-{runtime}"
        dkr.check(*dkr.run_args(runtime, "-d", "--name", name, IMAGE, "sleep", "1000"))
        ps = dkr.check("ps", "--format", "{{.Names}} {{.Status}} {{.Command}}")
        assert re.search(rf"^{name} Up .*\"sleep 1000\"$", ps, re.M), ps
        t0 = time.monotonic()
        dkr.check("stop", "-t", "1", name)
        assert time.monotonic() - t0 < 15
        state = json.loads(dkr.check("inspect", "--format", "{{json .State}}", name))
        seen[runtime] = (state["Status"], state["ExitCode"], state["OOMKilled"])
        dkr.check("rm", name)
        assert name not in dkr.check("ps", "-a", "--format", "{{.Names}}").split()
    assert seen["ociruntime"] == ("exited", 137, False) == seen["runc"], seen


def test_oom_killed(dkr: Dockerd) -> None:
    """Past --memory the kernel's OOM killer ends the container: docker reports it
    (the shim watches the container's memory cgroup), as with runc."""
    seen = {}
    for runtime in RUNTIMES:
        cid = dkr.check(
            *dkr.run_args(
                runtime, "-d", "--memory", "32m", "--memory-swap", "32m", IMAGE, "tail", "/dev/zero"
            )
        ).strip()
        assert dkr.check("wait", cid).strip() == "137"
        state = json.loads(dkr.check("inspect", "--format", "{{json .State}}", cid))
        seen[runtime] = (state["Status"], state["ExitCode"], state["OOMKilled"])
        dkr.check("rm", cid)
    assert seen["ociruntime"] == ("exited", 137, True) == seen["runc"], seen


def test_stop_delivers_sigterm(dkr: Dockerd) -> None:
    """A container that handles SIGTERM exits with its own code on `docker stop`."""
    seen = {}
    for runtime in RUNTIMES:
        script = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
        cid = dkr.check(*dkr.run_args(runtime, "-d", IMAGE, "sh", "-c", script)).strip()
        dkr.check("stop", "-t", "20", cid)
        seen[runtime] = dkr.check("inspect", "--format", "{{.State.ExitCode}}", cid).strip()
        dkr.check("rm", cid)
    assert seen == {"ociruntime": "7", "runc": "7"}, seen


#: (docker exec flags, command)
EXEC_CASES = (
    ([], ["echo", "from-exec"]),
    ([], ["sh", "-c", "echo to-stderr >&2; exit 3"]),
    (["-u", "1000:1000"], ["id"]),
    (["-e", "X=1", "-w", "/tmp"], ["sh", "-c", "echo $X; pwd"]),
    (["-t"], ["tty"]),
    ([], ["grep", "^Seccomp:", "/proc/self/status"]),  # the container's filter applies
    ([], ["nonexistent"]),
)


def test_exec(dkr: Dockerd) -> None:
    """`docker exec` (the shim: `exec --process FILE --detach --pid-file`, with
    --console-socket for -t): output and exit codes as with runc."""
    seen: dict[str, list] = {}
    for runtime in RUNTIMES:
        cid = dkr.check(*dkr.run_args(runtime, "-d", IMAGE, "sleep", "1000")).strip()
        try:
            results = []
            for flags, command in EXEC_CASES:
                r = dkr.docker("exec", *flags, cid, *command)
                results.append((r.returncode, r.stdout.replace("\r\n", "\n"), r.stderr))
            seen[runtime] = results
        finally:
            dkr.check("rm", "--force", cid)
    ours = seen["ociruntime"]
    assert ours[0] == (0, "from-exec\n", ""), ours
    assert ours[1] == (3, "", "to-stderr\n"), ours
    assert ours[2][:2] == (0, "uid=1000 gid=1000 groups=1000\n"), ours
    assert ours[3][:2] == (0, "1\n/tmp\n"), ours
    assert re.fullmatch(r"/dev/pts/\d+\n", ours[4][1]) and ours[4][0] == 0, ours
    assert ours[5][:2] == (0, "Seccomp:\t2\n"), ours
    # docker prints the runtime's error on stdout; the words after "exec failed:" are ours
    # (runc: "unable to start container process: exec: ..."), the end is the same.
    missing = [(code, out.split(": exec: ", 1)[-1]) for code, out, _ in (ours[6], seen["runc"][6])]
    assert missing[0] == (126, '"nonexistent": executable file not found in $PATH: unknown\n')
    assert missing[0] == missing[1], seen
    assert ours[:6] == seen["runc"][:6], seen


def test_pause_unpause(dkr: Dockerd) -> None:
    """`docker pause` / `unpause` (the runtime's `pause` / `resume`): the state docker
    shows, and the frozen container really does not run, as with runc."""
    seen = {}
    for runtime in RUNTIMES:
        script = "while :; do date +%s%N > /tmp/tick; sleep 0.05; done"
        cid = dkr.check(*dkr.run_args(runtime, "-d", IMAGE, "sh", "-c", script)).strip()
        try:
            status = ("inspect", "--format", "{{.State.Status}} {{.State.Paused}}", cid)
            dkr.check("pause", cid)
            paused = dkr.check(*status).strip()
            exec_paused = dkr.docker("exec", cid, "true", timeout=30)
            dkr.check("unpause", cid)
            resumed = dkr.check(*status).strip()
            seen[runtime] = (paused, exec_paused.returncode, resumed)
            assert "is paused" in exec_paused.stderr, exec_paused
        finally:
            dkr.check("rm", "--force", cid)
    assert seen["ociruntime"] == ("paused true", 1, "running false") == seen["runc"], seen
