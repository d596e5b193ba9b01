"""Parity with runc 1.1.5 (issue #11 items 12, 13, 14, 21 and the error words of 19): the
same bundle runs under ociruntime and under runc (`/usr/sbin/runc`, the reference), and
what a container, a hook or an error line shows is compared with runc's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import Bundle

from testkit.build import static_binary

RUNC = "/usr/sbin/runc"

pytestmark = pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is not installed")


def run_runc(bundle: Bundle, *args: str, cwd: str = "/") -> subprocess.CompletedProcess:
    """`runc run` of the bundle (a private --root), from `cwd`; deleted afterwards."""
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    cid = "ref-" + root[-8:]
    try:
        return subprocess.run(
            [RUNC, "--root", root, "run", *args, "--bundle", str(bundle.path), cid],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=cwd,
        )  # fmt: skip
    finally:
        subprocess.run([RUNC, "--root", root, "delete", "--force", cid], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run_ours(runtime, bundle: Bundle, *args: str, cwd: str = "/"):
    """`ociruntime run` of the bundle, from `cwd` (the runtime fixture cleans up)."""
    return runtime("run", *args, "--bundle", str(bundle.path), runtime.new_id(), cwd=cwd)


def both(runtime, bundle: Bundle, *args: str, cwd: str = "/") -> tuple:
    """(ours, runc's) results of the same bundle."""
    return run_ours(runtime, bundle, *args, cwd=cwd), run_runc(bundle, *args, cwd=cwd)


def both_refuse(runtime, bundle: Bundle, words: str) -> str:
    """Both runtimes fail the bundle (exit 1), runc in `words`; our one error line."""
    ours, runc = both(runtime, bundle)
    assert runc.returncode == 1 and words in runc.stderr, runc.stderr
    assert ours.returncode == 1, ours
    return ours.stderr.strip()


def runc_message(stderr: str) -> str:
    """runc's error line (logrus text) without its time and level."""
    line = [x for x in stderr.splitlines() if "level=error" in x][-1]
    quoted = line.split('msg="', 1)[1].rsplit('"', 1)[0]
    return quoted.replace('\\"', '"').replace("\\n", "\n")


# --- item 12: a read-only /dev (and tmpfs) is filled first, made read-only last -------

_SHOW_RO = (
    'awk \'$5=="/dev"||$5=="/tmp"||$5=="/tmp/sub"{print $5, $6}\' /proc/self/mountinfo;'
    " ls /dev; touch /dev/x 2>/dev/null; echo dev-write=$?;"
    " touch /tmp/x 2>/dev/null; echo tmp-write=$?"
)


def test_read_only_dev_and_tmpfs_are_filled_then_read_only(runtime, make_bundle):
    """runc mounts a read-only /dev read-write, makes /dev/pts, /dev/shm, /dev/mqueue, the
    nodes and links in it, and remounts it read-only last; so for a read-only tmpfs in
    which a later entry makes its mountpoint."""
    bundle = make_bundle(["sh", "-c", _SHOW_RO])
    mounts = bundle.config["mounts"]
    next(m for m in mounts if m["destination"] == "/dev")["options"].append("ro")
    mounts += [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]},
        {"destination": "/tmp/sub", "type": "tmpfs", "source": "tmpfs"},
    ]
    bundle.write()
    ours, runc = both(runtime, bundle)
    assert runc.returncode == 0, runc.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == runc.stdout
    lines = ours.stdout.splitlines()
    assert "/dev ro,nosuid" in lines and "/tmp ro,relatime" in lines
    assert {"pts", "shm", "mqueue", "null", "ptmx", "fd"} <= set(lines)
    assert "dev-write=1" in lines and "tmp-write=1" in lines


# --- item 13: --no-pivot leaves no full procfs or sysfs of the host behind -------------

NESTEDPROC_SOURCE = Path(__file__).with_name("nestedproc.c")


@pytest.fixture(scope="session")
def nestedproc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_binary(NESTEDPROC_SOURCE, tmp_path_factory.mktemp("nestedproc"))


@pytest.mark.parametrize("flags", [("--no-pivot",), ()], ids=["no-pivot", "pivot"])
def test_a_nested_user_namespace_cannot_mount_a_fresh_procfs(
    runtime, make_bundle, nestedproc, flags
):
    """runc's msMoveRoot detaches the host's procfs and sysfs mounts before its MS_MOVE;
    left there, the host's fully visible /proc would let a user namespace made inside the
    container mount an unmasked procfs (the kernel checks every mount of the namespace)."""
    bundle = make_bundle(["/nestedproc"])
    shutil.copy(nestedproc, bundle.rootfs / "nestedproc")
    ours, runc = both(runtime, bundle, *flags)
    assert (runc.returncode, runc.stdout) == (1, "mount proc: Operation not permitted\n")
    assert (ours.returncode, ours.stdout) == (runc.returncode, runc.stdout)


# --- item 14: each hook runs in runc's working directory -------------------------------

_HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
               "poststart", "poststop")  # fmt: skip


def _pwd_hooks(bundle: Bundle, out: Path) -> None:
    """Every kind of hook appends `<kind> <its cwd>` to `out` (startContainer, in the
    container, to /tmp/hooks.out of the rootfs)."""

    def hook(kind: str) -> list[dict]:
        target = "/tmp/hooks.out" if kind == "startContainer" else str(out)
        return [{"path": "/bin/sh", "args": ["sh", "-c", f'echo "{kind} $(pwd)" >> {target}']}]

    bundle.config["hooks"] = {kind: hook(kind) for kind in _HOOK_KINDS}
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["cwd"] = "/etc"
    bundle.write()


def _hook_cwds(bundle: Bundle, out: Path) -> dict[str, str]:
    lines = (
        out.read_text().splitlines() + (bundle.rootfs / "tmp/hooks.out").read_text().splitlines()
    )
    out.unlink()
    (bundle.rootfs / "tmp/hooks.out").unlink()
    found = dict(line.split(" ", 1) for line in lines)
    return {kind: found[kind].replace(str(bundle.path), "BUNDLE") for kind in _HOOK_KINDS}


def test_each_hook_runs_in_runcs_working_directory(runtime, make_bundle, tmp_path):
    """runc runs the runtime's hooks from the bundle (create and run chdir into it), the
    createContainer hooks from the rootfs (the init's cwd before pivot_root) and the
    startContainer hooks from the process's cwd: a hook naming a path relative to it
    works under both."""
    bundle = make_bundle(["true"])
    out = tmp_path / "hooks.out"
    _pwd_hooks(bundle, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runc = run_runc(bundle, cwd=str(elsewhere))
    assert runc.returncode == 0, runc.stderr
    expected = _hook_cwds(bundle, out)
    assert expected == {
        "prestart": "BUNDLE", "createRuntime": "BUNDLE", "createContainer": "BUNDLE/rootfs",
        "startContainer": "/etc", "poststart": "BUNDLE", "poststop": "BUNDLE",
    }  # fmt: skip
    ours = run_ours(runtime, bundle, cwd=str(elsewhere))
    assert ours.returncode == 0, ours.stderr
    assert _hook_cwds(bundle, out) == expected


# --- item 21: a failed mount names its source, destination and type --------------------

_BAD_MOUNTS = {
    "tmpfs-on-a-file": {"destination": "/etc/passwd", "type": "tmpfs", "source": "tmpfs"},
    "missing-bind-source": {"destination": "/mnt", "type": "bind", "source": "/nonexistent",
                            "options": ["rbind"]},
    "unknown-filesystem": {"destination": "/mnt", "type": "nosuchfs", "source": "none"},
    "file-bound-on-a-dir": {"destination": "/bin", "type": "bind", "source": "/etc/hostname",
                            "options": ["bind"]},
}  # fmt: skip


@pytest.mark.parametrize("case", list(_BAD_MOUNTS))
def test_a_failed_mount_says_which_source_went_where(runtime, make_bundle, case):
    """runc: `error mounting "<source>" to rootfs at "<destination>": ...: <errno>`; ours
    the same words after the entry's pointer, with its type, and the same errno."""
    bundle = make_bundle(["true"])
    entry = _BAD_MOUNTS[case]
    bundle.config["mounts"].append(entry)
    bundle.write()
    index = len(bundle.config["mounts"]) - 1
    ours, runc = both(runtime, bundle)
    words = f'error mounting "{entry["source"]}" to rootfs at "{entry["destination"]}"'
    assert runc.returncode == 1 and words in runc_message(runc.stderr), runc.stderr
    assert ours.returncode == 1
    line = ours.stderr.strip()
    assert line.startswith(f"config.json: /mounts/{index}: {words} (type {entry['type']}): ")
    errno_text = runc_message(runc.stderr).rsplit(": ", 1)[1]
    assert line.lower().endswith(": " + errno_text), (line, errno_text)


# --- item 19 (part): runc's words for a failed hook and an unreachable seccomp agent ----

_FAILING_HOOK = {"path": "/bin/sh", "args": ["sh", "-c", "echo out-text; exit 3"]}


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer",
                                  "startContainer"])  # fmt: skip
def test_a_failed_hook_says_error_running_hook(runtime, make_bundle, kind):
    """runc: `error running hook #0: error running hook: exit status 3, stdout: ...`; ours
    those words after the hook's pointer, then its own detail."""
    bundle = make_bundle(["true"])
    bundle.config["hooks"] = {kind: [_FAILING_HOOK, _FAILING_HOOK]}
    bundle.write()
    ours, runc = both(runtime, bundle)
    assert runc.returncode == 1
    assert "error running hook #0: error running hook: exit status 3" in runc.stderr
    assert ours.returncode == 1
    assert ours.stderr.strip().endswith(
        f"config.json: /hooks/{kind}/0: error running hook #0: /bin/sh: exit status 3: out-text"
    )


@pytest.mark.parametrize("kind", ["poststart", "poststop"])
def test_a_failed_late_hook_warns_with_runcs_words(runtime, make_bundle, kind):
    """poststart/poststop failures are warnings (the spec; runc 1.1.5 fails `run` on a
    poststart hook), in the same words."""
    bundle = make_bundle(["true"])
    bundle.config["hooks"] = {kind: [_FAILING_HOOK]}
    bundle.write()
    ours, runc = both(runtime, bundle)
    assert "error running hook #0: error running hook: exit status 3" in runc.stderr
    assert ours.returncode == 0, ours.stderr
    warnings = [json.loads(line)["msg"] for line in open(runtime.log)]
    expected = f"config.json: /hooks/{kind}/0: error running hook #0: /bin/sh: exit status 3"
    assert any(w.startswith(expected) for w in warnings), warnings


def test_a_hook_past_its_timeout_says_runcs_words(runtime, make_bundle):
    bundle = make_bundle(["true"])
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"],
                                            "timeout": 1}]}  # fmt: skip
    bundle.write()
    words = "error running hook #0: hook ran past specified timeout of 1.0s"
    assert both_refuse(runtime, bundle, words) == (
        "config.json: /hooks/prestart/0: error running hook #0: /bin/sleep: "
        "hook ran past specified timeout of 1.0s"
    )


def test_an_unreachable_seccomp_agent_says_failed_to_connect(runtime, make_bundle, tmp_path):
    """runc: `failed to connect with seccomp agent specified in the seccomp profile: dial
    unix <path>: connect: ...`; ours those words after listenerPath's pointer."""
    bundle = make_bundle(["true"])
    listener = str(tmp_path / "no-agent.sock")
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": listener,
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}],
    }  # fmt: skip
    bundle.write()
    words = "failed to connect with seccomp agent specified in the seccomp profile: "
    assert both_refuse(runtime, bundle, words) == (
        f"config.json: /linux/seccomp/listenerPath: {words}connect {listener}: "
        "No such file or directory"
    )
