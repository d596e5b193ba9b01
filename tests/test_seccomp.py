"""linux.seccomp (issue #4): real containers with filters built by libseccomp, compared
with runc where the outcome is observable."""

from __future__ import annotations

import json
import os
import platform

import pytest

from tests.conftest import OCIRUNTIME
from tests.test_bad_input import expect_error
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


def test_args_rule_equal(runtime, make_bundle):
    rules = _mode_rules(lambda i: [{"index": i, "value": 0o700, "op": "SCMP_CMP_EQ"}])
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    bundle = seccomp_bundle(make_bundle, ARGS_SCRIPT, profile)
    out = run_ok(runtime, bundle)
    assert "700=1" in out and "711=0" in out and "755=0" in out and "750=0" in out, out
    assert out == run_under_runc(bundle)


def test_args_same_index_twice_is_or_like_runc(runtime, make_bundle):
    """runc: when an index appears twice on a rule, each condition is a rule of its own."""
    rules = _mode_rules(
        lambda i: [
            {"index": i, "value": 0o700, "op": "SCMP_CMP_EQ"},
            {"index": i, "value": 0o711, "op": "SCMP_CMP_EQ"},
        ]
    )
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    bundle = seccomp_bundle(make_bundle, ARGS_SCRIPT, profile)
    out = run_ok(runtime, bundle)
    assert "700=1" in out and "711=1" in out and "755=0" in out and "750=0" in out, out
    assert out == run_under_runc(bundle)


def test_args_different_indexes_are_and_and_masked_eq(runtime, make_bundle):
    # mode & 0o077 == 0o050 (i.e. 750 but not 700/711/755), AND a second, always-true test
    rules = _mode_rules(
        lambda i: [
            {"index": i, "value": 0o077, "valueTwo": 0o050, "op": "SCMP_CMP_MASKED_EQ"},
            {"index": 0 if i == 1 else 1, "value": 0, "op": "SCMP_CMP_NE"},
        ]
    )
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    bundle = seccomp_bundle(make_bundle, ARGS_SCRIPT, profile)
    out = run_ok(runtime, bundle)
    assert "700=0" in out and "711=0" in out and "755=0" in out and "750=1" in out, out
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


def test_unsupported_architecture_is_an_error(runtime, make_bundle):
    bundle = seccomp_bundle(
        make_bundle, "true", dict(DENY_MKDIR, architectures=["SCMP_ARCH_LOONGARCH64"])
    )
    expect_error(
        runtime,
        ["run", "--bundle", str(bundle.path), runtime.new_id()],
        "/linux/seccomp/architectures/0",
        "SCMP_ARCH_LOONGARCH64",
    )


def test_unknown_action_is_an_error(runtime, make_bundle):
    bundle = seccomp_bundle(make_bundle, "true", dict(DENY_MKDIR, defaultAction="SCMP_ACT_FOO"))
    expect_error(
        runtime,
        ["run", "--bundle", str(bundle.path), runtime.new_id()],
        "/linux/seccomp/defaultAction",
    )


def test_notify_is_refused_clearly(runtime, make_bundle):
    profile = json.loads(json.dumps(DENY_MKDIR))
    profile["syscalls"][0]["action"] = "SCMP_ACT_NOTIFY"
    profile["listenerPath"] = "/run/nonexistent-seccomp-agent.sock"
    bundle = seccomp_bundle(make_bundle, "true", profile)
    expect_error(
        runtime,
        ["run", "--bundle", str(bundle.path), runtime.new_id()],
        "/linux/seccomp/",
        "not supported",
    )


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
    assert "SCMP_ACT_ERRNO" in seccomp["actions"] and "SCMP_ACT_NOTIFY" not in seccomp["actions"]
    assert "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(seccomp["archs"])
    assert "SECCOMP_FILTER_FLAG_LOG" in seccomp["supportedFlags"]


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


def test_unsupported_flag_is_an_error(runtime, make_bundle):
    flags = ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]  # not in libseccomp 2.5
    bundle = seccomp_bundle(make_bundle, "true", dict(DENY_MKDIR, flags=flags))
    expect_error(
        runtime,
        ["run", "--bundle", str(bundle.path), runtime.new_id()],
        "/linux/seccomp/flags/0",
        "WAIT_KILLABLE_RECV",
    )


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
