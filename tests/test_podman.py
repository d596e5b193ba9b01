"""podman (Debian 12's 4.3, through conmon 2.1) driving ociruntime in runc's place.

podman runs fully private: storage (vfs), runroot, tmpdir (conmon's exit files, the events
log, file locks instead of /dev/shm/libpod_lock), the network config dir, the
containers.conf / registries.conf / storage.conf it reads, conmon's TMPDIR and both
runtimes' state roots all live in one temporary directory. The image is a busybox OCI
archive built here (`testkit/oci_image.py`) and `podman load`ed: no registry, and every
run has `--pull never --network none`.

The runtimes are configured as the README's "Use it with podman" recipe says: the private
containers.conf (CONTAINERS_CONF) has an `[engine.runtimes]` entry per runtime and
`runtime_supports_json` naming ociruntime, and every command picks one by name
(`podman --runtime ociruntime`). Each entry's path is a wrapper script that logs its argv
(one line per call, exactly as podman and conmon passed it) and execs ociruntime with a
private `--root`, or runc the same way, so each scenario is checked for what the user sees
and compared with runc. Teardown removes every container, waits for conmon and podman's
cleanup processes, and fails if a mount, process, state dir or container cgroup is left.

Every run keeps podman's default seccomp profile (linux.seccomp, issue #4) and passes
explicit `--ulimit`s (podman's default nofile/nproc exceed the hard limits here, and root
lacks CAP_SYS_RESOURCE to raise them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CGROUP_V2_ONLY

from testkit import oci_image
from testkit.processes import Result, run_to_files, state_dirs

REPO = Path(__file__).resolve().parent.parent
OCIRUNTIME = REPO / ".venv" / "bin" / "ociruntime"
RUNC = Path("/usr/sbin/runc")
INSTALL_CLIENTS = REPO / "tools" / "install-clients.sh"
IMAGE = "localhost/ocitest/busybox:podman"
#: podman's default seccomp profile stays on (no --security-opt seccomp=unconfined).
RUN_FLAGS = [
    "--pull", "never",
    "--network", "none",
    "--ulimit", "nofile=1024:1024",
    "--ulimit", "nproc=4096:4096",
]  # fmt: skip
RUNTIMES = {"ociruntime": OCIRUNTIME, "runc": RUNC}
#: podman 4.3's default runtime_supports_json, and ours (the README's containers.conf).
SUPPORTS_JSON = ["crun", "runc", "kata", "runsc", "krun", "ociruntime"]
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: podman's cgroup parent with --cgroup-manager cgroupfs (conmon goes in .../conmon).
CGROUP_PARENT = "libpod_parent"
#: What podman 4.3 would create outside its --root/--runroot/--tmpdir if not kept private
#: (the blob-info cache is the exception: c/image puts root's in /var/lib/containers/cache
#: whatever the configuration, so teardown removes it if this test created it).
OUTSIDE = [
    Path("/dev/shm/libpod_lock"),
    Path("/etc/cni/net.d/cni.lock"),
    Path("/run/libpod"),
    Path("/run/containers"),
    Path("/run/runc"),
    Path("/run/ociruntime"),
]
BLOB_CACHE = Path("/var/lib/containers")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def outside_state() -> set[str]:
    """What podman or conmon could leave outside the private directory."""
    found = {str(p) for p in OUTSIDE if p.exists()}
    return found | {str(p) for p in Path("/tmp").glob("conmon-term.*")}


@dataclass
class Podman:
    base: Path
    env: dict[str, str]

    def wrapper(self, runtime: str) -> Path:
        return self.base / f"wrapper-{runtime}.sh"

    def argv_log(self, runtime: str) -> Path:
        return self.base / f"argv-{runtime}.log"

    def state_root(self, runtime: str) -> Path:
        return self.base / f"state-{runtime}"

    def __call__(self, *args: str, runtime: str = "ociruntime", stdin: str | None = None,
                 timeout: float = 60) -> Result:  # fmt: skip
        """One podman command. Output goes to files, not pipes: conmon and the container
        must not hold a pipe of ours open."""
        b = self.base
        cmd = [
            "podman",
            "--root", str(b / "root"),
            "--runroot", str(b / "runroot"),
            "--tmpdir", str(b / "tmpdir"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--runtime", runtime,  # a name from containers.conf's [engine.runtimes]
            *args,
        ]  # fmt: skip
        return run_to_files(cmd, stdin=stdin, env=self.env, timeout=timeout)

    def run(self, *args: str, runtime: str = "ociruntime", stdin: str | None = None) -> Result:
        """`podman run` with the private-and-possible flags; args: [options] IMAGE [cmd]."""
        return self("run", *RUN_FLAGS, *args, runtime=runtime, stdin=stdin)

    def check(self, *args: str, runtime: str = "ociruntime", timeout: float = 60) -> str:
        r = self(*args, runtime=runtime, timeout=timeout)
        assert r.returncode == 0, f"podman {' '.join(args)} ({runtime}): {r.returncode}\n{r.stderr}"
        return r.stdout

    def calls(self, runtime: str = "ociruntime") -> list[list[str]]:
        """The runtime's argv log: one list of arguments per call."""
        log = self.argv_log(runtime)
        return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

    def calls_for(self, cid: str, runtime: str = "ociruntime") -> list[list[str]]:
        """The calls naming container `cid` (as an argument of its own, not in a path)."""
        return [argv for argv in self.calls(runtime) if cid in argv]


def subcommand(argv: list[str]) -> str:
    """The runtime subcommand in an argv (global flags such as --root=X come first)."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            if i and argv[i - 1] in ("--root", "--log", "--log-format", "--criu"):
                continue
            return arg
    return ""


def install_podman() -> None:
    subprocess.run([str(INSTALL_CLIENTS), "podman"], check=True)
    if (
        shutil.which("podman") is None
        or shutil.which("conmon", path="/usr/bin:/usr/libexec/podman") is None
    ):
        pytest.fail("tools/install-clients.sh podman did not install podman and conmon")


def write_private_config(base: Path) -> dict[str, str]:
    """Config files and environment that keep podman off the system's state."""
    for d in ("root", "runroot", "tmpdir", "tmp", "net", "state-ociruntime", "state-runc"):
        (base / d).mkdir()
    (base / "containers.conf").write_text(
        "[engine]\n"
        'events_logger = "file"\n'
        'lock_type = "file"\n'  # not the machine-wide /dev/shm/libpod_lock
        f'image_copy_tmp_dir = "{base / "tmp"}"\n'
        # conmon gets only these variables; TMPDIR: where it makes its console sockets.
        f'conmon_env_vars = ["PATH={SYSTEM_PATH}", "TMPDIR={base / "tmp"}"]\n'
        # The README's recipe: podman passes --log-format=json (and --log FILE) to the
        # runtimes named here and shows the message of their JSON error line.
        f"runtime_supports_json = {json.dumps(SUPPORTS_JSON)}\n"
        "[engine.runtimes]\n"
        + "".join(f'{name} = ["{base / f"wrapper-{name}.sh"}"]\n' for name in RUNTIMES)
        + "[network]\n"
        'network_backend = "cni"\n'
        f'network_config_dir = "{base / "net"}"\n'
    )
    (base / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{base / "runroot"}"\n'
        f'graphroot = "{base / "root"}"\n'
    )
    (base / "registries.conf").write_text("")  # no registry, no short-name alias
    for runtime, binary in RUNTIMES.items():
        wrapper = base / f"wrapper-{runtime}.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' \"$*\" >> {base / f'argv-{runtime}.log'}\n"
            f'exec {binary} --root {base / f"state-{runtime}"} "$@"\n'
        )
        wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONTAINER", "REGISTRIES_CONFIG", "XDG_", "DOCKER_"))}  # fmt: skip
    env.update(
        CONTAINERS_CONF=str(base / "containers.conf"),
        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
        CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"),
        TMPDIR=str(base / "tmp"),  # conmon's console sockets, podman's big temporary files
    )
    return env


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def cgroup_dirs(name: str) -> list[Path]:
    """`name` in each v1 hierarchy, or in the one unified hierarchy of a pure v2 host."""
    hierarchies = [CGROUP_ROOT] if CGROUP_V2_ONLY else list(CGROUP_ROOT.iterdir())
    return [h / name for h in hierarchies if (h / name).is_dir()]


@pytest.fixture(scope="module")
def podman(rootfs_template: Path) -> Iterator[Podman]:
    install_podman()
    outside_before = outside_state()
    blob_cache_existed = BLOB_CACHE.exists()
    parent_existed = {h for h in cgroup_dirs(CGROUP_PARENT)}
    base = Path(tempfile.mkdtemp(prefix="podman-", dir="/tmp"))
    pm = Podman(base, write_private_config(base))
    try:
        image = oci_image.build_oci_archive(rootfs_template, base / "image.tar", IMAGE)
        pm.check("load", "-i", str(image.path))
        yield pm
    finally:
        problems = teardown(pm)
        shutil.rmtree(base, ignore_errors=True)
        if not blob_cache_existed:
            shutil.rmtree(BLOB_CACHE, ignore_errors=True)
        for parent in cgroup_dirs(CGROUP_PARENT):
            if parent not in parent_existed:
                for d in (parent / "conmon", parent):
                    try:
                        d.rmdir()
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        problems.append(f"cgroup {d} not removable: {e.strerror}")
        created = sorted(outside_state() - outside_before)
        if created:
            problems.append(f"created outside the private dir: {created}")
        assert not problems, "\n".join(problems)


def teardown(pm: Podman) -> list[str]:
    """Remove every container (each with the runtime it was created with), wait for conmon
    and `podman container cleanup`, and list whatever is left behind."""
    problems = []
    for runtime in RUNTIMES:
        r = pm("rm", "--all", "--force", "--time", "0", runtime=runtime)
        if r.returncode != 0:
            problems.append(f"podman rm --all ({runtime}): {r.stderr.strip()}")
    deadline = time.monotonic() + 15
    while processes_mentioning(str(pm.base)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = processes_mentioning(str(pm.base))
    for line in left:
        os.kill(int(line.split(":")[0]), 9)
    if left:
        problems.append(f"processes left: {left}")
    if mounts_under(pm.base):
        problems.append(f"mounts left: {mounts_under(pm.base)}")
        for mountpoint in reversed(mounts_under(pm.base)):
            subprocess.run(["umount", "-l", mountpoint], check=False)
    for runtime in RUNTIMES:
        left = state_dirs(pm.state_root(runtime))
        if left:
            problems.append(f"{runtime} state dirs left: {left}")
        ids = {argv[-1] for argv in pm.calls(runtime) if subcommand(argv) == "create"}
        for parent in cgroup_dirs(CGROUP_PARENT):
            stale = [d.name for d in parent.iterdir() if d.is_dir() and d.name[7:] in ids]
            if stale:
                problems.append(f"container cgroups left in {parent}: {stale}")
    return problems


# --- what the user sees, ours against runc ------------------------------------------------

#: name: (podman run options + IMAGE + command, expected stdout or None = "as runc", exit code)
SCENARIOS = {
    "echo": ([IMAGE, "echo", "hello"], "hello\n", 0),
    "exit-code": ([IMAGE, "sh", "-c", "exit 3"], "", 3),
    "env": (["-e", "A=B", IMAGE, "sh", "-c", 'echo "$A"'], "B\n", 0),
    "user": (
        ["--user", "1000:1000", IMAGE, "sh", "-c", "id -u; id -g; id -G"],
        "1000\n1000\n1000\n",
        0,
    ),
    "read-only": (
        ["--read-only", IMAGE, "sh", "-c", "touch /x 2>&1; echo $?; touch /tmp/y && echo tmp ok"],
        "touch: /x: Read-only file system\n1\ntmp ok\n",
        0,
    ),
    "hostname": (["--hostname", "box", IMAGE, "hostname"], "box\n", 0),
    "workdir": (["--workdir", "/tmp", IMAGE, "pwd"], "/tmp\n", 0),
    "pid-1": ([IMAGE, "sh", "-c", "echo $$"], "1\n", 0),
    "stdin": (["-i", IMAGE, "cat"], "from stdin\n", 0),
    "capabilities": ([IMAGE, "grep", "^Cap", "/proc/self/status"], None, 0),
    "cap-drop-all": (
        ["--cap-drop", "all", IMAGE, "grep", "^CapEff", "/proc/self/status"],
        "CapEff:\t0000000000000000\n",
        0,
    ),
    "rlimits": ([IMAGE, "sh", "-c", "ulimit -n; ulimit -u"], "1024\n4096\n", 0),
    "devices": ([IMAGE, "ls", "/dev"], None, 0),
    # Python ignores SIGPIPE/SIGXFSZ: the container process must not inherit that.
    "signals": (
        [IMAGE, "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        0,
    ),
    "sigpipe": ([IMAGE, "sh", "-c", "yes | head -n 1"], "y\n", 0),
    # podman's default seccomp profile (linux.seccomp): a filter; chroot denied (without
    # CAP_SYS_CHROOT the profile leaves it out); ordinary syscalls allowed. And
    # seccomp=unconfined: no filter.
    "seccomp-default-profile": (
        [
            "--cap-drop",
            "sys_chroot",
            IMAGE,
            "sh",
            "-c",
            "grep ^Seccomp: /proc/self/status; chroot / true 2>/dev/null; echo $?; "
            "mkdir /tmp/d && echo mkdir ok",
        ],
        "Seccomp:\t2\n1\nmkdir ok\n",
        0,
    ),
    "seccomp-unconfined": (
        ["--security-opt", "seccomp=unconfined", IMAGE, "grep", "^Seccomp:", "/proc/self/status"],
        "Seccomp:\t0\n",
        0,
    ),
    # -it: stdin is attached to the container's terminal (conmon feeds it to the master).
    "interactive-terminal": (
        ["-i", "-t", IMAGE, "sh", "-c", 'read line; echo "got $line"; [ -t 0 ] && echo tty'],
        None,
        0,
    ),
    # A user namespace: podman gives the runtime the maps (and a rootfs it chowned).
    "user-namespace": (
        [
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:100000:65536",
            IMAGE,
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; touch /made && stat -c %u /made",
        ],
        "0\n         0     100000      65536\n0\n",
        0,
    ),
    # conmon's console socket: the pty master comes back from `create --console-socket`.
    "terminal": (
        ["-t", IMAGE, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both; exit 4"],
        "/dev/pts/0\r\nboth\r\n",
        4,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_run_like_runc(podman: Podman, name: str) -> None:
    """`podman run --rm ...`: the user sees the expected output and exit code, the same as
    with runc, and the runtime podman used really was ours (create, start, delete)."""
    args, expected, code = SCENARIOS[name]
    stdin = "from stdin\n" if name in ("stdin", "interactive-terminal") else None
    calls_before = len(podman.calls())
    ours = podman.run("--rm", *args, stdin=stdin)
    # podman's own warning when -t is given without a terminal on its stdin
    stderr = "".join(line for line in ours.stderr.splitlines(keepends=True)
                     if "The input device is not a TTY" not in line)  # fmt: skip
    assert (ours.returncode, stderr) == (code, ""), ours
    if expected is not None:
        assert ours.stdout == expected
    runc = podman.run("--rm", *args, runtime="runc", stdin=stdin)
    assert (ours.returncode, ours.stdout) == (runc.returncode, runc.stdout)
    calls = [argv[argv.index(subcommand(argv)) :] for argv in podman.calls()[calls_before:]]
    cid = next(argv[-1] for argv in calls if argv[0] == "create")
    assert ["start", cid] in calls and ["delete", "--force", cid] in calls, calls


def test_nonexistent_command_error_reaches_user(podman: Podman) -> None:
    """ociruntime's error is in podman's stderr, worded so podman classifies it as runc's
    (127: command not found), and nothing of the container is left after `podman rm`."""
    for runtime in RUNTIMES:
        r = podman.run("--name", f"missing-{runtime}", IMAGE, "/nonexistent", runtime=runtime)
        assert r.returncode == 127, (runtime, r)
        assert "/nonexistent" in r.stderr and "no such file or directory" in r.stderr, r.stderr
        assert "OCI runtime attempted to invoke a command that was not found" in r.stderr
        assert r.stderr.startswith("Error: ") and len(r.stderr.splitlines()) == 1, r.stderr
        podman.check("rm", f"missing-{runtime}", runtime=runtime)
    assert state_dirs(podman.state_root("ociruntime")) == []


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["/etc/passwd"], 126, "permission denied"),  # not executable
        (["nonexistent"], 127, "executable file not found in $PATH"),
    ],
)
def test_exec_errors_classified_like_runc(podman: Podman, argv, code, words) -> None:
    for runtime in RUNTIMES:
        r = podman.run("--rm", IMAGE, *argv, runtime=runtime)
        assert r.returncode == code and words in r.stderr, (runtime, r)


def test_detached_ps_stop_rm(podman: Podman) -> None:
    """run -d, ps shows it running, stop -t 1 (sleep as PID 1 ignores SIGTERM: podman
    sends SIGKILL after 1 s, through our `kill`), then rm: gone from podman and from us."""
    out = podman.check("run", "-d", "--name", "sleeper", *RUN_FLAGS, IMAGE, "sleep", "1000")
    cid = out.strip().splitlines()[-1]
    assert len(cid) == 64
    ps = podman.check("ps", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Command}}")
    line = next(li for li in ps.splitlines() if " sleeper " in li)
    assert cid.startswith(line.split()[0]) and " Up " in f" {line} " and "sleep 1000" in line
    state = json.loads(podman.check("inspect", "sleeper"))[0]["State"]
    assert state["Status"] == "running" and state["Pid"] > 0
    assert os.readlink(f"/proc/{state['Pid']}/exe").endswith("busybox")
    assert processes_mentioning(f"conmon --api-version 1 -c {cid}")
    t0 = time.monotonic()
    podman.check("stop", "-t", "1", "sleeper")
    assert time.monotonic() - t0 < 10
    ps = podman.check("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    assert "sleeper Exited (137)" in ps
    assert "sleeper" not in podman.check("ps", "--format", "{{.Names}}")
    podman.check("rm", "sleeper")
    assert "sleeper" not in podman.check("ps", "-a", "--format", "{{.Names}}")
    calls = [argv[argv.index(subcommand(argv)) :] for argv in podman.calls_for(cid)]
    assert ["kill", cid, "15"] in calls and ["kill", cid, "9"] in calls, calls
    assert calls[0][0] == "create" and calls[1] == ["start", cid], calls
    assert calls[-1] == ["delete", "--force", cid], calls
    assert not (podman.state_root("ociruntime") / cid).exists()


def test_stop_delivers_sigterm(podman: Podman) -> None:
    """A container that handles SIGTERM exits with its own code on `podman stop`."""
    script = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
    podman.check("run", "-d", "--name", "trapper", *RUN_FLAGS, IMAGE, "sh", "-c", script)
    t0 = time.monotonic()
    podman.check("stop", "-t", "20", "trapper")
    assert time.monotonic() - t0 < 10
    state = json.loads(podman.check("inspect", "trapper"))[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 7)
    podman.check("rm", "trapper")


def test_wait_logs_and_restart(podman: Podman) -> None:
    """`podman wait` gets the exit code of a detached container; `podman start -a` runs the
    exited container again under the same id (our state of the first run was deleted);
    `podman logs` has both runs' output."""
    script = "echo run; exit 5"
    podman.check("run", "-d", "--name", "again", *RUN_FLAGS, IMAGE, "sh", "-c", script)
    assert podman.check("wait", "again").strip() == "5"
    r = podman("start", "--attach", "again")
    assert (r.returncode, r.stdout) == (5, "run\n"), r
    assert podman.check("logs", "again") == "run\nrun\n"
    cid = podman.check("inspect", "--format", "{{.Id}}", "again").strip()
    podman.check("rm", "again")
    creates = [argv for argv in podman.calls_for(cid) if subcommand(argv) == "create"]
    assert len(creates) == 2, creates


def test_podman_info_reports_our_runtime(podman: Podman) -> None:
    # `info` asks dpkg which package owns each binary: a second here, over a minute in
    # the emulated VM of tools/vm-lane.sh (dpkg reads thousands of files over 9p).
    info = json.loads(podman.check("info", "--format", "{{json .Host.OCIRuntime}}", timeout=300))
    assert info["name"] == "ociruntime" and info["path"] == str(podman.wrapper("ociruntime"))
    assert info["version"].startswith("ociruntime version ")


#: (podman exec flags, command)
EXEC_CASES = (
    ([], ["echo", "from-exec"]),
    ([], ["sh", "-c", "exit 5"]),
    (["-u", "1000:1000"], ["id"]),
    (["-e", "X=1", "-w", "/tmp"], ["sh", "-c", "echo $X; pwd"]),
    (["-t"], ["tty"]),
    ([], ["nonexistent"]),
    ([], ["/etc/passwd"]),
    ([], ["grep", "^Seccomp:", "/proc/self/status"]),  # the container's filter applies
)


def test_exec(podman: Podman) -> None:
    """`podman exec` (conmon: `exec --process FILE --detach --pid-file`, and
    --console-socket with -t): output, exit codes and errors as with runc."""
    seen: dict[str, list] = {}
    for runtime in RUNTIMES:
        name = f"busy-{runtime}"
        podman.check("run", "-d", "--name", name, *RUN_FLAGS, IMAGE, "sleep", "1000",
                     runtime=runtime)  # fmt: skip
        try:
            results = []
            for flags, command in EXEC_CASES:
                r = podman("exec", *flags, name, *command, runtime=runtime)
                out = re.sub(r"/dev/pts/\d+", "/dev/pts/N", r.stdout.replace("\r\n", "\n"))
                results.append((r.returncode, out))
            seen[runtime] = results
            assert f"{name} Up" in podman.check("ps", "--format", "{{.Names}} {{.Status}}")
        finally:
            podman.check("rm", "--force", "--time", "0", name, runtime=runtime)
    ours = seen["ociruntime"]
    assert ours[0] == (0, "from-exec\n"), ours
    assert ours[1][0] == 5, ours
    assert ours[2] == (0, "uid=1000 gid=1000\n"), ours
    assert ours[3] == (0, "1\n/tmp\n"), ours
    assert ours[4] == (0, "/dev/pts/N\n"), ours
    assert [r[0] for r in ours[5:7]] == [127, 126], ours
    assert ours[7] == (0, "Seccomp:\t2\n"), ours
    if "runc" in seen:
        assert ours == seen["runc"]


def test_pause_unpause(podman: Podman) -> None:
    """`podman pause` / `unpause` (our `pause` / `resume`): the status podman shows, as
    with runc; the container then stops normally."""
    seen = {}
    for runtime in RUNTIMES:
        name = f"busy-{runtime}"
        podman.check("run", "-d", "--name", name, *RUN_FLAGS, IMAGE, "sleep", "1000",
                     runtime=runtime)  # fmt: skip
        try:
            status = ("inspect", "--format", "{{.State.Status}}", name)
            podman.check("pause", name, runtime=runtime)
            paused = podman.check(*status, runtime=runtime).strip()
            podman.check("unpause", name, runtime=runtime)
            seen[runtime] = (paused, podman.check(*status, runtime=runtime).strip())
        finally:
            podman.check("rm", "--force", "--time", "0", name, runtime=runtime)
    assert seen["ociruntime"] == ("paused", "running") == seen["runc"]


def test_memory_and_pids_limits(podman: Podman) -> None:
    """--memory, and podman's default pids limit (2048), as the container sees them (v1
    files, or v2's on a v2 host): the same as with runc."""
    show = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
            "2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")  # fmt: skip
    ours = podman.run("--rm", "--memory", "64m", IMAGE, "sh", "-c", show)
    assert ours.stdout.split() == [str(64 << 20), "2048"], ours
    runc = podman.run("--rm", "--memory", "64m", IMAGE, "sh", "-c", show, runtime="runc")
    assert runc.stdout == ours.stdout


def test_argv_log_shows_our_runtime(podman: Podman) -> None:
    """The wrapper saw every call, and podman and conmon used no flag beyond these
    (conformance/CLIENTS.md lists them)."""
    used = {subcommand(argv) for argv in podman.calls()}
    assert {"create", "start", "delete"} <= used, used
    flags = {arg.split("=")[0] for argv in podman.calls() for arg in argv if arg.startswith("-")}
    assert flags <= {"--bundle", "--pid-file", "--console-socket", "--force", "--process",
                     "--detach", "--tty", "--version", "--log", "--log-format"}, flags  # fmt: skip


#: name: (podman run options, ociruntime's message): failures of the runtime (podman checks
#: neither), each with podman's exit code 126 ("OCI runtime error").
RUNTIME_ERRORS = {
    "mount-in-proc": (
        ["-v", "/etc/hostname:/proc/x"],
        "config.json: /mounts/3/destination: /proc/x: mounting over /proc is not allowed",
    ),
    "bad-sysctl-value": (
        ["--sysctl", "kernel.msgmax=-5"],
        "config.json: /linux/sysctl/kernel.msgmax: -5: Invalid argument",
    ),
}


@pytest.mark.parametrize("name", list(RUNTIME_ERRORS))
def test_runtime_error_reaches_user_clean(podman: Podman, name: str) -> None:
    """With `runtime_supports_json` naming the runtime (the README's containers.conf),
    podman passes `--log-format=json --log FILE` and shows the message of the runtime's
    JSON error line: one line, `Error: OCI runtime error: ociruntime: MESSAGE`, no raw
    `time=... level=error msg=...` log line; runc's error comes out the same way."""
    opts, message = RUNTIME_ERRORS[name]
    seen = {}
    for runtime in RUNTIMES:
        calls_before = len(podman.calls(runtime))
        r = podman.run("--rm", *opts, IMAGE, "true", runtime=runtime)
        prefix = f"Error: OCI runtime error: {runtime}: "
        assert r.returncode == 126 and r.stderr.startswith(prefix), (runtime, r)
        assert len(r.stderr.splitlines()) == 1 and "level=" not in r.stderr, (runtime, r)
        create = next(a for a in podman.calls(runtime)[calls_before:] if "create" in a)
        assert create[:2] == ["--log-format=json", "--log"], create
        seen[runtime] = r.stderr.removeprefix(prefix).rstrip("\n")
    assert seen["ociruntime"] == message, seen
    assert seen["runc"].startswith("runc create failed: "), seen
