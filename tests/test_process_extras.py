"""The rest of `process` and `linux` (issue #4): linux.personality, process.scheduler,
process.ioPriority, process.execCPUAffinity, the session keyring, and AppArmor/SELinux.

Real containers; each test asserts what the process inside observes, through busybox
(`uname -m`, `ionice`, /proc/self/stat, /proc/self/status, /proc/keys) and `procinfo`, a
static C helper (tests/procinfo.c) that prints the kernel's view of the caller: its
personality, sched_getattr(2), ioprio_get(2) and the description of its session keyring.

runc 1.1.5 ignores personality, scheduler, ioPriority and execCPUAffinity (it has no
code for them: runc 1.2 and later do), so those are checked against the spec, and
against runc only where 1.1.5 acts: keyrings, AppArmor and SELinux.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    expect_error,
    no_leftover_processes,
)
from test_isolation import run_under_runc

from testkit.build import static_binary

PROCINFO_SOURCE = Path(__file__).with_name("procinfo.c")
STAT_POLICY, STAT_NICE = 40, 18  # 0-based fields of /proc/<pid>/stat: policy, nice


@pytest.fixture(scope="session")
def procinfo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_binary(PROCINFO_SOURCE, tmp_path_factory.mktemp("procinfo"))


@pytest.fixture
def bundle_with(make_bundle, procinfo):
    """bundle_with(args, process=..., linux=...) -> Bundle with /procinfo in its rootfs and
    /proc/keys left visible (the default config masks it)."""

    def make(args: list[str], process: dict | None = None, linux: dict | None = None):
        bundle = make_bundle(args)
        shutil.copy(procinfo, bundle.rootfs / "procinfo")
        bundle.config["process"].update(process or {})
        bundle.config["linux"].update(linux or {})
        masked = bundle.config["linux"]["maskedPaths"]
        bundle.config["linux"]["maskedPaths"] = [p for p in masked if p != "/proc/keys"]
        return bundle.write()

    return make


def run_ok(runtime, bundle, *flags: str) -> str:
    r = runtime("run", *flags, "--bundle", str(bundle.path), runtime.new_id())
    assert r.returncode == 0, r
    return r.stdout


def start_detached(runtime, bundle, *flags: str) -> tuple[str, int]:
    cid = runtime.new_id()
    runtime("run", "-d", *flags, "--bundle", str(bundle.path), cid, check=True)
    return cid, runtime.state(cid)["pid"]


def info(text: str) -> dict[str, str]:
    """procinfo's lines as {first word: rest}."""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def fields(text: str) -> dict[str, str]:
    """procinfo's `key=value` words as a dict."""
    return dict(part.split("=", 1) for part in text.split())


def stat_fields(text: str) -> list[str]:
    """/proc/<pid>/stat split after the command name (which may hold spaces)."""
    head, _, rest = text.rpartition(")")
    return [head.split(" (")[0], "comm", *rest.split()]


# --- linux.personality ---------------------------------------------------------------------


def test_personality_linux32_for_init_and_exec(runtime, bundle_with):
    """LINUX32 is PER_LINUX32: uname reports a 32-bit machine, in the init and in exec'd
    processes (as runc 1.2; runc 1.1.5 ignores the field and prints x86_64)."""
    if os.uname().machine != "x86_64":
        pytest.skip("LINUX32 on x86_64 only")
    script = "uname -m; cat /proc/self/personality"
    bundle = bundle_with(["sh", "-c", script], linux={"personality": {"domain": "LINUX32"}})
    assert run_ok(runtime, bundle).split() == ["i686", "00000008"]

    bundle = bundle_with(["sleep", "1000"], linux={"personality": {"domain": "LINUX32"}})
    cid, _ = start_detached(runtime, bundle)
    r = runtime("exec", cid, "sh", "-c", script, check=True)
    assert r.stdout.split() == ["i686", "00000008"]

    bundle = bundle_with(["sh", "-c", script], linux={"personality": {"domain": "LINUX"}})
    assert run_ok(runtime, bundle).split() == [os.uname().machine, "00000000"]


def test_personality_flags_are_ignored_with_a_warning(runtime, bundle_with):
    """The spec defines no flag yet; runc 1.2 warns and goes on, so do we."""
    personality = {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}
    bundle = bundle_with(["cat", "/proc/self/personality"], linux={"personality": personality})
    assert run_ok(runtime, bundle) == "00000000\n"
    with open(runtime.log) as f:
        records = [json.loads(line) for line in f]
    assert any(r["level"] == "warning" and "/linux/personality/flags" in r["msg"]
               for r in records), records  # fmt: skip


@pytest.mark.parametrize("personality", [{"flags": []}, {}])
def test_personality_without_domain_is_an_error(runtime, bundle_with, personality):
    bundle = bundle_with(["true"], linux={"personality": personality})
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()],
                 "/linux/personality/domain", "invalid personality domain")  # fmt: skip


# --- process.scheduler ---------------------------------------------------------------------


def test_scheduler_batch_with_nice_for_init_and_exec(runtime, bundle_with):
    """sched_setattr(SCHED_BATCH, nice 5): /proc/<pid>/stat shows policy 3 and nice 5 for
    the init, and exec'd processes get the process's scheduler too."""
    bundle = bundle_with(["sleep", "1000"],
                         process={"scheduler": {"policy": "SCHED_BATCH", "nice": 5}})  # fmt: skip
    cid, _ = start_detached(runtime, bundle)
    r = runtime("exec", cid, "sh", "-c", "cat /proc/1/stat; /procinfo", check=True)
    init_stat, rest = r.stdout.split("\n", 1)
    fields_1 = stat_fields(init_stat)
    assert (fields_1[STAT_POLICY], fields_1[STAT_NICE]) == ("3", "5")
    sched = fields(info(rest)["sched"])
    assert (sched["policy"], sched["nice"]) == ("3", "5")


def test_scheduler_idle_and_negative_nice(runtime, bundle_with):
    """SCHED_IDLE; and a negative nice, which needs CAP_SYS_NICE: applied before the
    capabilities are dropped (the config's bounding set has no CAP_SYS_NICE)."""
    bundle = bundle_with(["/procinfo"], process={"scheduler": {"policy": "SCHED_IDLE"}})
    assert fields(info(run_ok(runtime, bundle))["sched"])["policy"] == "5"
    bundle = bundle_with(["/procinfo"],
                         process={"scheduler": {"policy": "SCHED_OTHER", "nice": -7}})  # fmt: skip
    sched = fields(info(run_ok(runtime, bundle))["sched"])
    assert (sched["policy"], sched["nice"]) == ("0", "-7")


def _rt_runtime_hook(cgroup_name: str) -> dict:
    """A createRuntime hook granting the container's cgroup real-time CPU time, which a
    kernel with RT group scheduling requires before any SCHED_FIFO/RR in it (cgroup
    resources are not applied by the runtime yet)."""
    script = (f"for f in /sys/fs/cgroup/*/{cgroup_name}/cpu.rt_runtime_us; do "
              '[ -e "$f" ] && echo 100000 > "$f"; done; true')  # fmt: skip
    return {"path": "/bin/sh", "args": ["sh", "-c", script]}


def _rt_group_scheduling() -> bool:
    controllers = ("cpu", "cpu,cpuacct")
    return any(os.path.exists(f"/sys/fs/cgroup/{d}/cpu.rt_runtime_us") for d in controllers)


def test_scheduler_fifo_priority(runtime, bundle_with):
    """SCHED_FIFO priority 10 for the init and exec'd processes (the cgroup gets RT time
    from a hook first). Without it the kernel refuses, and create says so."""
    cgroup = "ociruntime-test-" + uuid.uuid4().hex[:8]
    sched = {"policy": "SCHED_FIFO", "priority": 10}
    bundle = bundle_with(["sleep", "1000"], process={"scheduler": sched})
    bundle.config["linux"]["cgroupsPath"] = "/" + cgroup
    bundle.config["hooks"] = {"createRuntime": [_rt_runtime_hook(cgroup)]}
    bundle.write()
    cid, _ = start_detached(runtime, bundle)
    r = runtime("exec", cid, "sh", "-c", "/procinfo 1; /procinfo", check=True)
    lines = [fields(line.split(" ", 1)[1]) for line in r.stdout.splitlines()
             if line.startswith("sched ")]  # fmt: skip
    assert [(s["policy"], s["priority"]) for s in lines] == [("1", "10"), ("1", "10")]
    runtime("delete", "--force", cid, check=True)

    if _rt_group_scheduling():
        del bundle.config["hooks"]
        bundle.write()
        expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()],
                     "/process/scheduler: SCHED_FIFO", "Operation not permitted")  # fmt: skip


def test_scheduler_deadline_with_reset_on_fork(runtime, bundle_with):
    """SCHED_DEADLINE runtime/deadline/period (runc's bats values, scaled). A deadline
    task may not fork unless SCHED_FLAG_RESET_ON_FORK is set, which also puts its
    children back to SCHED_OTHER: the init (a shell) is policy 6, its child is 0."""
    sched = {"policy": "SCHED_DEADLINE", "runtime": 400000, "deadline": 1000000,
             "period": 1000000, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}  # fmt: skip
    script = "cat /proc/$$/stat; cat /proc/self/stat; /procinfo 1"
    bundle = bundle_with(["sh", "-c", script], process={"scheduler": sched})
    shell, child, rest = run_ok(runtime, bundle).split("\n", 2)
    assert stat_fields(shell)[STAT_POLICY] == "6"
    assert stat_fields(child)[STAT_POLICY] == "0"
    got = fields(info(rest)["sched"])
    assert {k: got[k] for k in ("policy", "runtime", "deadline", "period", "flags")} == {
        "policy": "6", "runtime": "400000", "deadline": "1000000", "period": "1000000",
        "flags": "0x1",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("scheduler", "needles"),
    [
        ({"policy": "SCHED_OTHER", "nice": 20}, ["/process/scheduler/nice", "20"]),
        ({"policy": "SCHED_BATCH", "priority": 3},
         ["/process/scheduler/priority", "SchedFIFO or SchedRR"]),
        ({"policy": "SCHED_OTHER", "runtime": 1000},
         ["/process/scheduler", "SchedDeadline"]),
        ({"nice": 1}, ["/process/scheduler", "policy"]),
        ({"policy": "SCHED_RUSH"}, ["/process/scheduler/policy"]),
        ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FAST"]}, ["/process/scheduler/flags"]),
        # Valid for the schema and runc's checks; the kernel refuses it (FIFO needs a
        # priority of 1-99) in the init, and create reports it, rolled back.
        ({"policy": "SCHED_FIFO", "priority": 0},
         ["/process/scheduler: SCHED_FIFO", "Invalid argument"]),
    ],
)  # fmt: skip
def test_scheduler_errors(runtime, bundle_with, scheduler, needles):
    bundle = bundle_with(["true"], process={"scheduler": scheduler})
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()], *needles)


# --- process.ioPriority --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("io_priority", "ionice", "value"),
    [
        ({"class": "IOPRIO_CLASS_BE", "priority": 6}, "best-effort: prio 6", "class=2 level=6"),
        ({"class": "IOPRIO_CLASS_RT", "priority": 2}, "realtime: prio 2", "class=1 level=2"),
        ({"class": "IOPRIO_CLASS_IDLE", "priority": 4}, "idle", "class=3 level=4"),
    ],
)  # fmt: skip
def test_io_priority_for_init_and_exec(runtime, bundle_with, io_priority, ionice, value):
    """ioprio_set(2) on the init (busybox `ionice -p 1` shows it) and on exec'd processes;
    the RT class needs CAP_SYS_ADMIN/CAP_SYS_NICE, so it is set before they are dropped."""
    bundle = bundle_with(["sleep", "1000"], process={"ioPriority": io_priority})
    cid, _ = start_detached(runtime, bundle)
    r = runtime("exec", cid, "sh", "-c", "ionice -p 1; /procinfo", check=True)
    first, rest = r.stdout.split("\n", 1)
    assert first == ionice
    ioprio = info(rest)["ioprio"]
    assert ioprio == value


@pytest.mark.parametrize(
    ("io_priority", "needles"),
    [
        ({"class": "IOPRIO_CLASS_BE", "priority": 8}, ["/process/ioPriority/priority", "8"]),
        ({"class": "IOPRIO_CLASS_BE", "priority": -1}, ["/process/ioPriority/priority"]),
        ({"class": "IOPRIO_CLASS_NONE"}, ["/process/ioPriority/class"]),
    ],
)  # fmt: skip
def test_io_priority_errors(runtime, bundle_with, io_priority, needles):
    bundle = bundle_with(["true"], process={"ioPriority": io_priority})
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()], *needles)


# --- process.execCPUAffinity ---------------------------------------------------------------


def cpus_allowed(text: str) -> str:
    return next(line.split()[1] for line in text.splitlines()
                if line.startswith("Cpus_allowed_list:"))  # fmt: skip


@pytest.fixture
def two_cpus():
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")


def container_cpuset(init_pid: int) -> str:
    """The CPUs of the init's cpuset cgroup (v1, or v2 where it has the controller)."""
    with open(f"/proc/{init_pid}/cgroup") as f:
        entries = {line.split(":")[1]: line.split(":", 2)[2].strip() for line in f}
    if "cpuset" in entries:
        path = f"/sys/fs/cgroup/cpuset{entries['cpuset']}/cpuset.effective_cpus"
    else:
        path = f"/sys/fs/cgroup{entries['']}/cpuset.cpus.effective"
    return Path(path).read_text().strip()


def test_exec_cpu_affinity(runtime, bundle_with, tmp_path, two_cpus):
    """`final` is where exec'd processes run (from config.json or --process); the init is
    not affected (the spec: not applicable to it); with `initial` only, the process is
    back on the container's CPUs (its cpuset) once it has joined the cgroups."""
    affinity = {"initial": "0", "final": "1"}
    bundle = bundle_with(["sleep", "1000"], process={"execCPUAffinity": affinity})
    cid, init = start_detached(runtime, bundle)
    with open(f"/proc/{init}/status") as f:
        assert cpus_allowed(f.read()) == cpus_allowed(Path("/proc/self/status").read_text())
    r = runtime("exec", cid, "grep", "Cpus_allowed_list", "/proc/self/status", check=True)
    assert cpus_allowed(r.stdout) == "1"

    process = tmp_path / "process.json"
    for initial, final, want in (("1", "0", "0"), ("0-1", "0,1", "0-1"), ("1", "", None)):
        spec = {"args": ["grep", "Cpus_allowed_list", "/proc/self/status"], "cwd": "/",
                "execCPUAffinity": {"initial": initial, "final": final}}  # fmt: skip
        process.write_text(json.dumps(spec))
        r = runtime("exec", "--process", str(process), cid, check=True)
        if want is None:  # only initial: the container's default
            want = container_cpuset(init)
        assert cpus_allowed(r.stdout) == want, (initial, final)


def test_exec_cpu_affinity_errors(runtime, bundle_with, tmp_path):
    """A CPU the machine lacks: the kernel refuses `initial` in exec's child, before it
    joins anything (exit 255, nothing left). A malformed list: refused by create."""
    bundle = bundle_with(["sleep", "1000"])
    cid, _ = start_detached(runtime, bundle)
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["true"], "cwd": "/",
                                   "execCPUAffinity": {"initial": "4095"}}))  # fmt: skip
    expect_error(runtime, ["exec", "--process", str(process), cid],
                 f"--process {process}: /execCPUAffinity/initial", "Invalid argument",
                 code=255)  # fmt: skip
    process.write_text(json.dumps({"args": ["true"], "cwd": "/",
                                   "execCPUAffinity": {"final": "3-1"}}))  # fmt: skip
    expect_error(runtime, ["exec", "--process", str(process), cid],
                 f"--process {process}: /execCPUAffinity/final", code=255)  # fmt: skip

    bundle = bundle_with(["true"], process={"execCPUAffinity": {"initial": "0, 3-1"}})
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()],
                 "/process/execCPUAffinity/initial", "invalid CPU range '3-1'")  # fmt: skip


# --- the session keyring (and --no-new-keyring) --------------------------------------------


def own_session_keyring() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(512)
    n = libc.syscall(250, 6, -3, buf, len(buf))  # keyctl(KEYCTL_DESCRIBE, session)
    assert n > 0, os.strerror(ctypes.get_errno())
    return buf.value.decode()


def test_session_keyring_per_container(runtime, bundle_with):
    """The init joins a new session keyring `_ses.<id>`, searchable by its user (the
    permissions runc sets: 3f1b0000), listed in the container's /proc/keys; exec'd
    processes join the same one."""
    bundle = bundle_with(["sleep", "1000"])
    cid, _ = start_detached(runtime, bundle)
    r = runtime("exec", cid, "sh", "-c", "/procinfo; grep _ses /proc/keys", check=True)
    lines = r.stdout.splitlines()
    assert info(r.stdout)["session"] == f"keyring;0;0;3f1b0000;_ses.{cid}"
    assert any(line.split()[-2:] == [f"_ses.{cid}:", "empty"] for line in lines), lines

    ours = info(run_ok(runtime, bundle_with(["/procinfo"])))["session"]
    theirs = info(run_under_runc(bundle_with(["/procinfo"])))["session"]
    assert ours.split(";")[:4] == theirs.split(";")[:4]  # same type, owner, permissions


def test_no_new_keyring_keeps_the_callers(runtime, bundle_with):
    """create --no-new-keyring: the init and exec'd processes keep the session keyring of
    whoever ran the runtime (as runc)."""
    mine = own_session_keyring()
    assert "_ses.t-" not in mine
    bundle = bundle_with(["sleep", "1000"])
    cid, _ = start_detached(runtime, bundle, "--no-new-keyring")
    r = runtime("exec", cid, "/procinfo", check=True)
    assert info(r.stdout)["session"] == mine
    bundle = bundle_with(["/procinfo"])
    assert info(run_ok(runtime, bundle, "--no-new-keyring"))["session"] == mine


# --- AppArmor and SELinux on a host without them -------------------------------------------


def lsm_enabled() -> set[str]:
    found = set()
    if os.path.exists("/sys/module/apparmor/parameters/enabled"):
        found.add("apparmor")
    if os.path.exists("/sys/fs/selinux/enforce"):
        found.add("selinux")
    return found


@pytest.fixture
def no_lsm():
    if lsm_enabled():
        pytest.skip("these tests check the behaviour on a host without AppArmor/SELinux")


def runc_error(bundle, exec_args: list[str] | None = None) -> tuple[int, str]:
    """runc 1.1.5's exit code and message for `run`, or, with `exec_args` ([flags...,
    None, command...], None standing for the id), for `exec` in a running container."""
    if not shutil.which("runc"):
        pytest.skip("runc (the reference runtime) is not installed")
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    cid = "ref-" + root[-8:]

    def runc(*args: str, output: int = subprocess.PIPE) -> subprocess.CompletedProcess:
        return subprocess.run(["runc", "--root", root, *args], stdout=output, stderr=output,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip

    try:
        if exec_args is None:
            p = runc("run", "--bundle", str(bundle.path), cid)
        else:  # the detached init keeps its stdio: not a pipe we would wait on
            started = runc("run", "-d", "--bundle", str(bundle.path), cid,
                           output=subprocess.DEVNULL)  # fmt: skip
            assert started.returncode == 0
            p = runc("exec", *(cid if a is None else a for a in exec_args))
    finally:
        runc("delete", "--force", cid)
        shutil.rmtree(root, ignore_errors=True)
    return p.returncode, p.stderr


@pytest.mark.parametrize(
    ("process", "linux", "needles", "runc_says"),
    [
        ({"apparmorProfile": "acme_secure_profile"}, {},
         ["config.json: /process/apparmorProfile: acme_secure_profile",
          "apparmor failed to apply profile"],
         "apparmor failed to apply profile"),
        ({"selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675"}, {},
         ["config.json: /process/selinuxLabel", "selinux is disabled or not supported"],
         "selinux label is specified in config, but selinux is disabled or not supported"),
        ({}, {"mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811"},
         ['config.json: /mounts/1: error mounting "tmpfs" to rootfs at "/dev" (type tmpfs)',
          "/linux/mountLabel", "Invalid argument"],
         "invalid argument"),
    ],
)  # fmt: skip
def test_lsm_fields_fail_like_runc_without_the_lsm(runtime, bundle_with, no_lsm, process,
                                                   linux, needles, runc_says):  # fmt: skip
    """runc 1.1.5 applies these whether or not the host has the LSM, and fails: so do we
    (exit 1, one line naming the field, nothing left behind)."""
    bundle = bundle_with(["true"], process=process, linux=linux)
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()], *needles)
    code, stderr = runc_error(bundle)
    assert code == 1 and runc_says in stderr, stderr


def test_exec_lsm_flags_fail_like_runc_without_the_lsm(runtime, bundle_with, no_lsm, tmp_path):
    """exec --apparmor, --process-label and a --process file with a profile: refused as
    runc 1.1.5 refuses them here (exit 255), the container unharmed."""
    bundle = bundle_with(["sleep", "1000"])
    cid, _ = start_detached(runtime, bundle)
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["true"], "cwd": "/", "apparmorProfile": "bar"}))
    apparmor = "apparmor failed to apply profile"
    selinux = "selinux label is specified in config, but selinux is disabled or not supported"
    cases = [  # (exec arguments, None for the id; what names the field; runc's words)
        (["--apparmor", "foo", None, "true"], "config.json: /process/apparmorProfile: foo",
         apparmor),
        (["--process-label", "system_u:system_r:foo_t:s0", None, "true"], "--process-label",
         selinux),
        (["--process", str(process), None], f"--process {process}: /apparmorProfile: bar",
         apparmor),
    ]  # fmt: skip
    for args, field, runc_says in cases:
        ours = [cid if a is None else a for a in args]
        expect_error(runtime, ["exec", *ours], "exec failed", field, runc_says, code=255)
        code, stderr = runc_error(bundle, args)
        assert code == 255 and runc_says in stderr, stderr
    assert runtime("exec", cid, "true").returncode == 0


@pytest.mark.pure
def test_features_report_the_lsms():
    """features.md: whether the runtime implements them, not whether this host has them."""
    from ociruntime.commands.features import features

    linux = features()["linux"]
    assert linux["apparmor"] == {"enabled": True} and linux["selinux"] == {"enabled": True}
