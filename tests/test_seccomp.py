"""linux.seccomp (issue #4): real containers with filters built by libseccomp, compared
with runc where the outcome is observable."""

from __future__ import annotations

import json
import os
import platform
import socket
import uuid

import pytest

from testkit.seccomp_agent import SeccompAgent
from tests.conftest import OCIRUNTIME
from tests.test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    expect_error,
    no_leftover_processes,
    processes_of,
)
from tests.test_isolation import run_under_runc

PODMAN_PROFILE = "/usr/share/containers/seccomp.json"
DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ],
}


def run_ok(runtime, bundle) -> str:
    r = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert r.returncode == 0, r
    return r.stdout


def seccomp_bundle(make_bundle, script: str, profile: dict, **process):
    bundle = make_bundle(["sh", "-c", script])
    bundle.config["linux"]["seccomp"] = profile
    bundle.config["process"].update(process)
    bundle.config["root"]["readonly"] = False  # a private copy: the tests write in /tmp
    return bundle.write()


MKDIR_SCRIPT = (
    "grep ^Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo mkdir=$?; "
    "echo hi > /tmp/file && cat /tmp/file; ls -d /tmp/x 2>&1; true"
)


def test_errno_rule_denies_mkdir_only(runtime, make_bundle):
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, DENY_MKDIR)
    out = run_ok(runtime, bundle)
    assert "Seccomp:\t2" in out
    assert "Operation not permitted" in out and "mkdir=1" in out
    assert "hi\n" in out  # other syscalls (open, write, read) still work
    assert out == run_under_runc(bundle)


def test_errno_default_is_eperm_and_unknown_names_are_skipped(runtime, make_bundle):
    profile = json.loads(json.dumps(DENY_MKDIR))
    del profile["syscalls"][0]["errnoRet"]  # ERRNO without errnoRet: EPERM, as runc
    profile["syscalls"][0]["names"] += ["no_such_syscall", "socketcall"]  # skipped / x86
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, profile)
    r = runtime("--debug", "run", "--bundle", str(bundle.path), runtime.new_id())
    assert r.returncode == 0 and "Operation not permitted" in r.stdout and "mkdir=1" in r.stdout
    with open(runtime.log) as f:
        log = f.read()
    assert "unknown seccomp syscall 'no_such_syscall' ignored" in log, log
    assert "socketcall" not in log  # an x86 syscall: known to libseccomp, kept for x86


def test_default_errno_ret(runtime, make_bundle):
    """An allow-list without mkdir: mkdir gets defaultAction ERRNO with defaultErrnoRet."""
    import pyseccomp

    names = set()
    for number in range(0, 460):
        try:
            names.add(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, number).decode())
        except ValueError:
            pass
    names -= {"mkdir", "mkdirat"}
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,  # EACCES
        "syscalls": [{"names": sorted(names), "action": "SCMP_ACT_ALLOW"}],
    }
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, profile)
    out = run_ok(runtime, bundle)
    assert "Permission denied" in out and "mkdir=1" in out and "hi\n" in out
    assert out == run_under_runc(bundle)


ARGS_SCRIPT = (
    "touch /tmp/f; for m in 700 711 755 750; do chmod $m /tmp/f 2>/dev/null; echo $m=$?; done"
)


def _mode_rules(args_for_mode_index) -> list[dict]:
    """The same conditions on chmod (mode is arg 1) and fchmodat (mode is arg 2)."""
    return [
        {"names": [name], "action": "SCMP_ACT_ERRNO", "args": args_for_mode_index(index)}
        for name, index in (("chmod", 1), ("fchmodat", 2))
    ]


#: The args conditions (given the mode's index) and the modes whose chmod they refuse.
ARGS_RULES = {
    "rule-equal": (lambda i: [{"index": i, "value": 0o700, "op": "SCMP_CMP_EQ"}], {"700"}),
    # runc: when an index appears twice on a rule, each condition is a rule of its own.
    "same-index-twice-is-or-like-runc": (
        lambda i: [
            {"index": i, "value": 0o700, "op": "SCMP_CMP_EQ"},
            {"index": i, "value": 0o711, "op": "SCMP_CMP_EQ"},
        ],
        {"700", "711"},
    ),
    # mode & 0o077 == 0o050 (i.e. 750 but not 700/711/755), AND a second, always-true test
    "different-indexes-are-and-and-masked-eq": (
        lambda i: [
            {"index": i, "value": 0o077, "valueTwo": 0o050, "op": "SCMP_CMP_MASKED_EQ"},
            {"index": 0 if i == 1 else 1, "value": 0, "op": "SCMP_CMP_NE"},
        ],
        {"750"},
    ),
}


@pytest.mark.parametrize("name", ARGS_RULES)
def test_args(runtime, make_bundle, name):
    conditions, refused = ARGS_RULES[name]
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": _mode_rules(conditions)}
    bundle = seccomp_bundle(make_bundle, ARGS_SCRIPT, profile)
    out = run_ok(runtime, bundle)
    for mode in ("700", "711", "755", "750"):
        assert f"{mode}={int(mode in refused)}" in out, out
    assert out == run_under_runc(bundle)


@pytest.mark.parametrize("nnp", [True, False])
def test_non_root_user_with_and_without_no_new_privileges(runtime, make_bundle, nnp):
    """Without noNewPrivileges the filter is loaded before the user switch (it needs
    CAP_SYS_ADMIN then); with it, after everything privileged."""
    bundle = seccomp_bundle(
        make_bundle,
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; id -u; mkdir /tmp/x; echo $?",
        DENY_MKDIR,
        noNewPrivileges=nnp,
        user={"uid": 1000, "gid": 1000},
    )
    out = run_ok(runtime, bundle)
    assert f"NoNewPrivs:\t{int(nnp)}" in out and "Seccomp:\t2" in out and "1000\n" in out
    assert out == run_under_runc(bundle)


def test_trap_and_kill_actions(runtime, make_bundle):
    for action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"):
        profile = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action}],
        }
        bundle = seccomp_bundle(make_bundle, "mkdir /tmp/x; echo survived", profile)
        r = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
        assert "survived" in r.stdout and r.returncode == 0, r  # only the mkdir child died


#: Changes to DENY_MKDIR that are errors, and what the one line of the error names.
REFUSED = {
    "unsupported-architecture": (
        {"architectures": ["SCMP_ARCH_LOONGARCH64"]},
        ("/linux/seccomp/architectures/0", "SCMP_ARCH_LOONGARCH64"),
    ),
    "unknown-action": ({"defaultAction": "SCMP_ACT_FOO"}, ("/linux/seccomp/defaultAction",)),
    "unsupported-flag": (  # not in libseccomp 2.5
        {"flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]},
        ("/linux/seccomp/flags/0", "WAIT_KILLABLE_RECV"),
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_profile_is_an_error(runtime, make_bundle, name):
    change, needles = REFUSED[name]
    bundle = seccomp_bundle(make_bundle, "true", dict(DENY_MKDIR, **change))
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()], *needles)


def podman_profile_to_config(profile: dict, caps: list[str]) -> dict:
    """What podman (containers/common's seccomp package) puts in linux.seccomp for its
    default profile on this machine's architecture and the given capabilities."""
    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[platform.machine()]
    short = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    archs = [arch]
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == arch:
            archs += entry.get("subArchitectures") or []
    rules = []
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and short not in inc["arches"]:
            continue
        if exc.get("arches") and short in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if exc.get("caps") and set(exc["caps"]) & set(caps):
            continue
        out = {"names": rule["names"], "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = rule["args"]
        rules.append(out)
    config = {"defaultAction": profile["defaultAction"], "architectures": archs}
    if profile.get("defaultErrnoRet") is not None:
        config["defaultErrnoRet"] = profile["defaultErrnoRet"]
    config["syscalls"] = rules
    return config


@pytest.mark.skipif(not os.path.exists(PODMAN_PROFILE), reason="containers-common not installed")
def test_podman_default_profile_like_runc(runtime, make_bundle):
    with open(PODMAN_PROFILE) as f:
        profile = json.load(f)
    script = (
        "grep ^Seccomp: /proc/self/status; mkdir /tmp/x && echo mkdir-ok && rmdir /tmp/x; "
        "chroot / true 2>&1; echo chroot=$?; ls / | head -3; ps -o comm | head -3; "
        "cat /proc/self/status | grep -c ^Cap; sleep 0; echo done"
    )
    bundle = make_bundle(["sh", "-c", script])
    bundle.config["root"]["readonly"] = False
    caps = bundle.config["process"]["capabilities"]["bounding"]
    bundle.config["linux"]["seccomp"] = podman_profile_to_config(profile, caps)
    bundle.write()
    out = run_ok(runtime, bundle)
    assert "Seccomp:\t2" in out and "mkdir-ok" in out and "done" in out, out
    assert "chroot=1" in out  # no CAP_SYS_CHROOT: chroot(2) is denied by the profile
    assert out == run_under_runc(bundle)


def test_features_describe_seccomp():
    import subprocess

    out = subprocess.run([OCIRUNTIME, "features"], capture_output=True, text=True, check=True)
    seccomp = json.loads(out.stdout)["linux"]["seccomp"]
    assert seccomp["enabled"] is True
    assert {"SCMP_ACT_ERRNO", "SCMP_ACT_NOTIFY"} <= set(seccomp["actions"])
    assert "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(seccomp["archs"])
    assert "SECCOMP_FILTER_FLAG_LOG" in seccomp["supportedFlags"]
    # Known, refused (test_unsupported_flag_is_an_error): not claimed.
    assert "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" not in seccomp["supportedFlags"]


def test_flags(runtime, make_bundle):
    """Set through libseccomp's attributes. runc 1.1.5 refuses every flag ("seccomp flags
    are not yet supported by runc"): the spec allows them, so ociruntime applies them."""
    flags = [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ]
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, dict(DENY_MKDIR, flags=flags))
    out = run_ok(runtime, bundle)
    assert "Seccomp:\t2" in out and "mkdir=1" in out
    bundle.config["linux"]["seccomp"] = DENY_MKDIR
    assert out == run_under_runc(bundle.write())


def test_exec_gets_the_containers_filter(runtime, make_bundle):
    """As runc: an exec'd process runs under the container's linux.seccomp too."""
    bundle = seccomp_bundle(make_bundle, "sleep 1000", DENY_MKDIR)
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    runtime("start", cid, check=True)
    for user in ([], ["--user", "1000:1000"]):
        script = "grep ^Seccomp: /proc/self/status; mkdir /tmp/y; echo $?"
        r = runtime("exec", *user, cid, "sh", "-c", script)
        assert (r.returncode, r.stdout) == (0, "Seccomp:\t2\n1\n"), r
        assert "Operation not permitted" in r.stderr


# --- seccomp user notification (SCMP_ACT_NOTIFY, listenerPath) -----------------------------

ENOSPC = 28
X86 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
MKDIR_ENOSPC = {"mkdir": ("errno", ENOSPC), "mkdirat": ("errno", ENOSPC)}
NOTIFY_SCRIPT = (
    "mkdir /tmp/x 2>&1; echo mkdir=$?; ls -d /tmp/x 2>&1; echo hi > /tmp/f && cat /tmp/f; "
    "echo notify-fds=$(ls -l /proc/self/fd/ | grep -c seccomp)"
)


def notify_profile(listener: str, names=("mkdir", "mkdirat"), metadata: str = "meta-1") -> dict:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": listener,
        "listenerMetadata": metadata,
        "architectures": X86,
        "syscalls": [{"names": list(names), "action": "SCMP_ACT_NOTIFY"}],
    }


@pytest.fixture
def agent(tmp_path):
    """A seccomp agent that fails mkdir with ENOSPC and lets every other syscall run."""
    with SeccompAgent(str(tmp_path / "agent.sock"), MKDIR_ENOSPC) as a:
        yield a
    assert a.errors == []


def _notified(agent: SeccompAgent) -> list[tuple[str, str | None]]:
    return [(name, path) for name, _pid, path in agent.calls]


@pytest.mark.parametrize("nnp", [True, False])
def test_notify_agent_answers_mkdir(runtime, make_bundle, agent, tmp_path, nnp):
    """The agent gets the notify fd and the process state; its answer (ENOSPC) is what
    the container's mkdir sees; everything else runs; the container holds no notify fd.
    Without noNewPrivileges the filter is loaded before the user switch, with it last."""
    bundle = seccomp_bundle(
        make_bundle, NOTIFY_SCRIPT, notify_profile(agent.path), noNewPrivileges=nnp
    )
    bundle.config["annotations"] = {"org.example.key": "value"}
    bundle.write()
    cid, pid_file = runtime.new_id(), tmp_path / "pid"
    r = runtime("run", "--pid-file", str(pid_file), "--bundle", str(bundle.path), cid)
    assert r.returncode == 0, r
    assert r.stdout == (
        "mkdir: can't create directory '/tmp/x': No space left on device\nmkdir=1\n"
        "ls: /tmp/x: No such file or directory\nhi\nnotify-fds=0\n"
    )
    pid = int(pid_file.read_text())
    assert agent.wait_for(1) == [
        {
            "ociVersion": "1.3.0",
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": "meta-1",
            "state": {
                "ociVersion": "1.3.0",
                "id": cid,
                "status": "creating",
                "bundle": str(bundle.path),
                "annotations": {"org.example.key": "value"},
                "pid": pid,
            },
        }
    ]
    assert _notified(agent) == [("mkdir", "/tmp/x")]
    # runc, with the same agent and config: the same output, the same kind of message.
    assert run_under_runc(bundle) == r.stdout
    ours, runcs = agent.wait_for(2)
    assert runcs.keys() == ours.keys() and runcs["state"].keys() == ours["state"].keys()
    assert (runcs["fds"], runcs["metadata"], runcs["state"]["status"]) == (
        ["seccompFd"], "meta-1", "creating",
    )  # fmt: skip
    assert _notified(agent) == [("mkdir", "/tmp/x")] * 2


def test_notify_agent_fakes_success_on_an_abstract_socket(runtime, make_bundle):
    """The agent can make mkdir "succeed" without running it; "@name" is the abstract
    socket "name" (Go's spelling, which runc inherits). No listenerMetadata: no field."""
    path = "@ociruntime-test-" + uuid.uuid4().hex[:12]
    with SeccompAgent(path, {"mkdir": ("value", 0), "mkdirat": ("value", 0)}) as agent:
        profile = notify_profile(path, metadata="")
        script = "mkdir /tmp/x && echo made; ls -d /tmp/x 2>&1; true"
        bundle = seccomp_bundle(make_bundle, script, profile)
        out = run_ok(runtime, bundle)
        assert out == "made\nls: /tmp/x: No such file or directory\n"
        (state,) = agent.wait_for(1)
        assert "metadata" not in state and state["fds"] == ["seccompFd"]
        assert out == run_under_runc(bundle)
    assert agent.errors == []


@pytest.mark.parametrize("nnp", [True, False])
def test_notify_on_the_syscalls_the_runtime_itself_uses(runtime, make_bundle, tmp_path, nnp):
    """runc's "important syscalls" case: open/read/close/execve notified, the agent lets
    them all run; the init's last steps under the filter (the hand-over's read and close,
    the exec fifo, execve) must then go through the agent and still work."""
    names = ["execve", "openat", "open", "read", "close"]
    with SeccompAgent(str(tmp_path / "agent.sock")) as agent:
        profile = notify_profile(agent.path, names=names)
        bundle = seccomp_bundle(make_bundle, "echo ran", profile, noNewPrivileges=nnp)
        assert run_ok(runtime, bundle) == "ran\n"
        notified = {name for name, _path in _notified(agent)}
        assert {"execve", "read", "close"} <= notified, notified
        assert run_under_runc(bundle) == "ran\n"
    assert agent.errors == []


def test_exec_sends_its_own_notify_fd(runtime, make_bundle, agent, tmp_path):
    """As runc: each exec'd process's filter has its own notify fd, sent to the agent with
    the exec'd pid and the container's state (its real status: runc always says
    "running"); both load points of exec (with and without no_new_privs)."""
    bundle = seccomp_bundle(
        make_bundle, "sleep 1000", notify_profile(agent.path), noNewPrivileges=False
    )
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    init = runtime.state(cid)["pid"]
    (first,) = agent.wait_for(1)
    assert first["pid"] == init
    pid_file = tmp_path / "exec.pid"
    cases = (([], "created"), (["--no-new-privs"], "running"))
    for n, (flags, status) in enumerate(cases, start=2):
        if status == "running":
            runtime("start", cid, check=True)
        r = runtime("exec", *flags, "--pid-file", str(pid_file), cid, "sh", "-c", NOTIFY_SCRIPT)
        assert r.returncode == 0, r
        assert "No space left on device" in r.stdout and "notify-fds=0" in r.stdout, r
        state = agent.wait_for(n)[-1]
        assert state["pid"] == int(pid_file.read_text()) != init
        assert state["metadata"] == "meta-1"
        assert {k: state["state"][k] for k in ("id", "status", "pid", "bundle")} == {
            "id": cid, "status": status, "pid": init, "bundle": str(bundle.path)
        }  # fmt: skip
    assert _notified(agent) == [("mkdir", "/tmp/x")] * 2


def test_exec_with_the_agent_gone_fails_cleanly(runtime, make_bundle, tmp_path):
    """exec of a notify profile whose agent has stopped listening: runc's exec error (255),
    naming listenerPath; the half-started process is gone."""
    with SeccompAgent(str(tmp_path / "agent.sock")) as agent:
        bundle = seccomp_bundle(make_bundle, "sleep 1000", notify_profile(agent.path))
        cid = runtime.new_id()
        runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
        agent.wait_for(1)
    message = expect_error(
        runtime, ["exec", cid, "true"], "exec failed", "/linux/seccomp/listenerPath", code=255
    )
    assert "No such file or directory" in message
    assert runtime.state(cid)["status"] == "running"
    assert processes_of([bundle.path]) == [runtime.state(cid)["pid"]]


def test_listener_path_without_notify_rules_is_ignored(runtime, make_bundle, tmp_path):
    """runc 1.1.5 ignores a listenerPath no rule needs (there is no agent here at all)."""
    profile = dict(DENY_MKDIR, listenerPath=str(tmp_path / "nobody.sock"), listenerMetadata="m")
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, profile)
    out = run_ok(runtime, bundle)
    assert "mkdir=1" in out
    assert out == run_under_runc(bundle)
    # A NOTIFY rule naming only syscalls unknown here puts no NOTIFY rule in the filter:
    # libseccomp makes no notify fd, so nothing goes to listenerPath. (Deliberately unlike
    # runc 1.1.5, which asks for a listener anyway and fails here for want of an agent.)
    unknown = {"names": ["no_such_syscall"], "action": "SCMP_ACT_NOTIFY"}
    profile["syscalls"] = [*profile["syscalls"], unknown]
    assert run_ok(runtime, seccomp_bundle(make_bundle, MKDIR_SCRIPT, profile)) == out


def _refusing_socket(tmp_path) -> str:
    """A socket file nobody listens on: connect(2) is refused."""
    path = str(tmp_path / "dead.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
    return path


BAD_NOTIFY = {
    "no-listener-path": (lambda tmp: dict(notify_profile(""), listenerPath=""),
                         ("/linux/seccomp/listenerPath", "not set", "syscalls/0")),
    "missing-socket": (lambda tmp: notify_profile(str(tmp / "nobody.sock")),
                       ("/linux/seccomp/listenerPath", "nobody.sock", "No such file")),
    "refusing-socket": (lambda tmp: notify_profile(_refusing_socket(tmp)),
                        ("/linux/seccomp/listenerPath", "dead.sock", "Connection refused")),
    "notify-write": (lambda tmp: notify_profile(_refusing_socket(tmp), names=["write"]),
                     ("/linux/seccomp/syscalls/0/names", "write syscall")),
    "notify-default": (lambda tmp: dict(notify_profile(_refusing_socket(tmp)),
                                        defaultAction="SCMP_ACT_NOTIFY"),
                       ("/linux/seccomp/defaultAction", "default action")),
}  # fmt: skip


@pytest.mark.parametrize("nnp", [True, False])
@pytest.mark.parametrize("case", sorted(BAD_NOTIFY))
def test_bad_notify_config(runtime, make_bundle, tmp_path, case, nnp):
    """Each fails create with one line naming the field, exit 1, nothing left (the
    `runtime` fixture and no_leftover_processes check), as runc 1.1.5 fails each."""
    make_profile, needles = BAD_NOTIFY[case]
    bundle = seccomp_bundle(make_bundle, "true", make_profile(tmp_path), noNewPrivileges=nnp)
    expect_error(runtime, ["run", "--bundle", str(bundle.path), runtime.new_id()], *needles)
    with pytest.raises(AssertionError):
        run_under_runc(bundle)
