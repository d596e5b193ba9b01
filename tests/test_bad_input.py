"""Bad input: every mistake a user or an engine can make is reported as runc reports it.

Each failure must exit 1 (3 for an unknown command), print exactly one line on stderr that
names what is at fault (a JSON pointer, a path, the id...), record the same message as one
JSON object (level, msg, time) in the --log file, and leave nothing behind: no state dir,
no cgroup, no mount (the `runtime` fixture checks those two) and no process.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.processes import state_dirs

SLEEP = ["sleep", "1000"]
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --- helpers -------------------------------------------------------------------------------


def log_size(runtime) -> int:
    try:
        return os.path.getsize(runtime.log)
    except FileNotFoundError:
        return 0


def new_log_lines(runtime, offset: int) -> list[str]:
    try:
        with open(runtime.log, "rb") as f:
            f.seek(offset)
            return f.read().decode().splitlines()
    except FileNotFoundError:
        return []


def expect_error(runtime, args: list[str], *needles: str, code: int = 1) -> str:
    """Run a command that must fail; check the exit code, the single stderr line (it must
    contain every needle, case-insensitively) and the single JSON log record carrying the
    same message. Returns the message."""
    offset = log_size(runtime)
    r = runtime(*args)
    where = f"{args!r}: rc={r.returncode} stderr={r.stderr!r}"
    assert r.returncode == code, where
    assert r.stdout == "", where
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"want one stderr line: {where}"
    message = lines[0]
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not named: {where}"
    records = new_log_lines(runtime, offset)
    assert len(records) == 1, f"want one log record, got {records!r}"
    record = json.loads(records[0])
    assert list(record) == ["level", "msg", "time"], record
    assert record["level"] == "error", record
    assert record["msg"].replace("\n", " ") == message, record
    assert TIME_RE.match(record["time"]), record
    return message


def expect_silent_success(runtime, args: list[str]) -> None:
    offset = log_size(runtime)
    r = runtime(*args)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
    assert new_log_lines(runtime, offset) == []


def _inode(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _belongs(pid: str, paths: list[str], roots: set) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except OSError:
        return False
    links = [f"/proc/{pid}/root", f"/proc/{pid}/cwd"]
    if any(p in cmdline for p in paths) or {_inode(link) for link in links} & roots:
        return True
    targets = [_readlink(link) + "/" for link in links]
    return any(t.startswith(p + "/") for t in targets for p in paths)


def processes_of(bundles: list[Path]) -> list[int]:
    """PIDs belonging to these bundles: a bundle path on the command line (the runtime, or
    a container init before its exec) or as the root or cwd (a hook, say), or a bundle's
    rootfs as root or cwd (a container process: across mount namespaces readlink shows
    "/", so inodes are compared)."""
    roots = {i for b in bundles if (i := _inode(b / "rootfs"))}
    paths = [str(b) for b in bundles]
    me = str(os.getpid())
    return [
        int(p) for p in os.listdir("/proc") if p.isdigit() and p != me and _belongs(p, paths, roots)
    ]


def assert_nothing_left(runtime, bundle, keep: tuple[str, ...] = ()) -> None:
    """No state dir but those in keep, and no process of the bundle."""
    left = state_dirs(runtime.root)
    assert left == sorted(keep), f"state dirs left behind: {left}"
    assert processes_of([bundle.path]) == [], "processes left behind"


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path: Path):
    """Autouse, so set up before `runtime` and checked after its cleanup: once every
    container is deleted, no process may still belong to a bundle of the test."""
    yield
    bundles = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert processes_of(bundles) == [], "processes left behind"


def created(runtime, make_bundle, args: list[str] | None = None) -> tuple[str, int]:
    """A container in the `created` state: (id, init pid)."""
    cid = runtime.new_id()
    bundle = make_bundle(args or SLEEP)
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    return cid, runtime.state(cid)["pid"]


def running(runtime, make_bundle, args: list[str] | None = None) -> tuple[str, int]:
    cid, pid = created(runtime, make_bundle, args)
    runtime("start", cid, check=True)
    return cid, pid


def wait_stopped(runtime, cid: str, pidfd: int | None) -> None:
    """Wait for the init's exit on its pidfd; the bounded poll of `state` after it only
    covers the instant between the exit and the zombie state the runtime looks for."""
    if pidfd is not None:
        try:
            assert select.select([pidfd], [], [], 10)[0], "container did not stop"
        finally:
            os.close(pidfd)
    deadline = time.monotonic() + 5
    while runtime.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, "state never says stopped"


def open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def kill_and_wait(runtime, cid: str, pid: int) -> None:
    pidfd = open_pidfd(pid)
    runtime("kill", cid, "KILL", check=True)
    wait_stopped(runtime, cid, pidfd)


def assert_status(runtime, cid: str, status: str, pid: int) -> None:
    st = runtime.state(cid)
    assert (st["status"], st["pid"]) == (status, pid), st


# --- bundle and config.json ----------------------------------------------------------------


def _container(config: dict, pointer: str) -> tuple[dict | list, str | int]:
    *parents, last = pointer.strip("/").split("/")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node, int(last) if isinstance(node, list) else last


def set_field(pointer: str, value: object) -> Callable:
    def edit(bundle) -> None:
        node, key = _container(bundle.config, pointer)
        node[key] = value
        bundle.write()

    return edit


def delete_field(pointer: str) -> Callable:
    def edit(bundle) -> None:
        node, key = _container(bundle.config, pointer)
        del node[key]
        bundle.write()

    return edit


def append_to(pointer: str, value: object) -> Callable:
    def edit(bundle) -> None:
        node, key = _container(bundle.config, pointer)
        node[key] = [*node.get(key, []), value]
        bundle.write()

    return edit


def remove_bundle(bundle) -> None:
    shutil.rmtree(bundle.path)


def remove_config(bundle) -> None:
    (bundle.path / "config.json").unlink()


def truncate_config(bundle) -> None:
    text = json.dumps(bundle.config, indent=2)
    (bundle.path / "config.json").write_text(text[: len(text) // 2])


def remove_rootfs(bundle) -> None:
    shutil.rmtree(bundle.rootfs)


BIND_MISSING = {
    "destination": "/mnt",
    "type": "bind",
    "source": "/nonexistent-src",
    "options": ["rbind"],
}

# (edit of a valid bundle, what the message must name; {bundle}/{rootfs} are filled in)
CREATE_FAILURES = {
    "missing-bundle-dir": (remove_bundle, ["{bundle}"]),
    "missing-config": (remove_config, ["config.json"]),
    "truncated-json": (truncate_config, ["config.json"]),
    "wrong-type-args": (set_field("/process/args", "sleep"), ["config.json", "/process/args"]),
    "wrong-type-bool": (set_field("/root/readonly", "yes"), ["config.json", "/root/readonly"]),
    "missing-ociVersion": (delete_field("/ociVersion"), ["config.json", "ociVersion"]),
    "missing-mount-destination": (
        delete_field("/mounts/0/destination"),
        ["config.json", "/mounts/0", "destination"],
    ),
    "bad-namespace-enum": (
        set_field("/linux/namespaces/0/type", "bogus"),
        ["config.json", "/linux/namespaces/0/type", "bogus"],
    ),
    "empty-args": (set_field("/process/args", []), ["/process/args"]),
    "ociVersion-2": (set_field("/ociVersion", "2.0.0"), ["/ociVersion", "2.0.0"]),
    "missing-rootfs": (remove_rootfs, ["{rootfs}"]),
    "arg0-absolute-missing": (set_field("/process/args", ["/nonexistent"]), ["/nonexistent"]),
    "arg0-bare-missing": (set_field("/process/args", ["nonexistent-bin"]), ["nonexistent-bin"]),
    "relative-cwd": (set_field("/process/cwd", "tmp"), ["/process/cwd"]),
    "bind-source-missing": (append_to("/mounts", BIND_MISSING), ["/nonexistent-src"]),
    "createRuntime-hook-fails": (
        set_field("/hooks", {"createRuntime": [{"path": "/bin/false"}]}),
        ["createRuntime", "/bin/false"],
    ),
}


@pytest.mark.parametrize("case", list(CREATE_FAILURES))
def test_create_rejects_bad_bundle(runtime, make_bundle, case: str) -> None:
    """create fails with the culprit named, and nothing of the container remains."""
    edit, needles = CREATE_FAILURES[case]
    bundle = make_bundle(SLEEP)
    edit(bundle)
    cid = runtime.new_id()
    wanted = [n.format(bundle=bundle.path, rootfs=bundle.rootfs) for n in needles]
    expect_error(runtime, ["create", "--bundle", str(bundle.path), cid], *wanted)
    assert_nothing_left(runtime, bundle)
    expect_error(runtime, ["state", cid], "container does not exist")


# --- ids -----------------------------------------------------------------------------------

BAD_IDS = {
    "empty": "",
    "too-long": "a" * 300,
    "slash": "a/b",
    "dotdot": "..",
    "dot": ".",
    "escape": "../x",
    "newline": "a\nb",
    "tab": "a\tb",
    "control": "a\x01b",
}


@pytest.mark.parametrize("name", list(BAD_IDS))
def test_create_rejects_bad_id(runtime, make_bundle, name: str) -> None:
    bundle = make_bundle(SLEEP)
    expect_error(runtime, ["create", "--bundle", str(bundle.path), BAD_IDS[name]], "container id")
    assert_nothing_left(runtime, bundle)


@pytest.mark.parametrize("command", [["state"], ["delete", "--force"], ["kill"], ["start"]])
@pytest.mark.parametrize("name", ["empty", "slash", "dotdot", "newline"])
def test_other_commands_reject_bad_id(runtime, command: list[str], name: str) -> None:
    """Even `delete --force`, silent for an unknown id, refuses an invalid one (runc)."""
    expect_error(runtime, [*command, BAD_IDS[name]], "container id")


def test_duplicate_id(runtime, make_bundle) -> None:
    """The second create fails; the first container is unharmed."""
    cid, pid = created(runtime, make_bundle)
    other = make_bundle(SLEEP)
    expect_error(runtime, ["create", "--bundle", str(other.path), cid], "already exists")
    assert_nothing_left(runtime, other, keep=(cid,))
    assert_status(runtime, cid, "created", pid)


# --- lifecycle -----------------------------------------------------------------------------


def test_start_twice(runtime, make_bundle) -> None:
    cid, pid = running(runtime, make_bundle)
    expect_error(runtime, ["start", cid], "already running")
    assert_status(runtime, cid, "running", pid)


def test_start_exited_container(runtime, make_bundle) -> None:
    cid, pid = created(runtime, make_bundle, ["true"])
    pidfd = open_pidfd(pid)
    runtime("start", cid, check=True)
    wait_stopped(runtime, cid, pidfd)
    expect_error(runtime, ["start", cid], "has stopped")


def test_start_killed_created_container(runtime, make_bundle) -> None:
    cid, pid = created(runtime, make_bundle)
    kill_and_wait(runtime, cid, pid)
    expect_error(runtime, ["start", cid], "has stopped")


def test_delete_running_needs_force(runtime, make_bundle) -> None:
    cid, pid = running(runtime, make_bundle)
    expect_error(runtime, ["delete", cid], cid, "not stopped", "running")
    assert_status(runtime, cid, "running", pid)
    expect_silent_success(runtime, ["delete", "--force", cid])
    expect_error(runtime, ["state", cid], "container does not exist")


@pytest.mark.parametrize("signal", ["FOO", "SIGFOO", "65", "99", "-1"])
def test_kill_bad_signal(runtime, make_bundle, signal: str) -> None:
    """An unknown name or an out-of-range number: refused, the container untouched."""
    cid, pid = created(runtime, make_bundle)
    expect_error(runtime, ["kill", cid, signal], "signal")
    assert_status(runtime, cid, "created", pid)


@pytest.mark.parametrize("signal", [[], ["KILL"]])
def test_kill_stopped(runtime, make_bundle, signal: list[str]) -> None:
    cid, pid = running(runtime, make_bundle)
    kill_and_wait(runtime, cid, pid)
    expect_error(runtime, ["kill", cid, *signal], "not running")


@pytest.mark.parametrize("command", [["state"], ["start"], ["kill"], ["kill", "KILL"], ["delete"]])
def test_unknown_id(runtime, command: list[str]) -> None:
    cid = runtime.new_id()
    expect_error(runtime, [command[0], cid, *command[1:]], "container does not exist")


def test_delete_force_unknown_id_is_silent(runtime) -> None:
    expect_silent_success(runtime, ["delete", "--force", runtime.new_id()])


# --- command line --------------------------------------------------------------------------


def test_unknown_command(runtime) -> None:
    expect_error(runtime, ["frobnicate"], "frobnicate", code=3)


@pytest.mark.parametrize("command", ["create", "state", "kill", "delete"])
def test_unknown_command_flag(runtime, command: str) -> None:
    expect_error(runtime, [command, "--frobnicate", runtime.new_id()], "-frobnicate")


def test_unknown_global_flag(runtime) -> None:
    """As in runc, a bad global flag is reported before --log/--log-format take effect:
    one text record on stderr, nothing in the log file."""
    r = runtime("--frobnicate", "state", runtime.new_id())
    assert r.returncode == 1, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "-frobnicate" in lines[0] and "level=error" in lines[0], r
    assert new_log_lines(runtime, 0) == []
