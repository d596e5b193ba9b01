"""`exec`: a new process in a running container's namespaces, cgroups and identity, with
runc's flags and exit codes. Real containers."""

from __future__ import annotations

import json
import os
import select
import time
from pathlib import Path

import pytest
from test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    expect_error,
    no_leftover_processes,
)

from testkit.recvtty import ConsoleSocket

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "uts", "user", "time")


@pytest.fixture
def running(runtime, make_bundle):
    """A running container (sleep) with a user, env and cwd in its config: (id, init pid)."""
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [20]}
    bundle.config["process"]["env"] = ["PATH=/bin:/usr/bin", "FROM_CONFIG=yes"]
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    return cid, runtime.state(cid)["pid"]


def ns_links(pid: int | str) -> dict[str, str]:
    return {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES}


def test_exec_joins_namespaces_cgroups_and_root(runtime, running) -> None:
    cid, init = running
    script = "for n in " + " ".join(NAMESPACES) + "; do readlink /proc/self/ns/$n; done; "
    script += "echo pid=$$; cat /proc/self/cgroup; echo root; ls /"
    r = runtime("exec", cid, "sh", "-c", script, check=True)
    lines = r.stdout.splitlines()
    assert dict(zip(NAMESPACES, lines[: len(NAMESPACES)], strict=True)) == ns_links(init)
    assert lines[len(NAMESPACES)] != "pid=1"  # a new process in the container's PID ns
    cgroup = lines[len(NAMESPACES) + 1 : lines.index("root")]
    with open(f"/proc/{init}/cgroup") as f:
        assert cgroup == f.read().splitlines()
    assert lines[lines.index("root") + 1 :] == sorted(os.listdir(f"/proc/{init}/root"))


def test_exec_identity_env_and_cwd_from_config(runtime, running) -> None:
    cid, _ = running
    r = runtime("exec", cid, "sh", "-c", "id -u; id -g; id -G; echo $FROM_CONFIG; pwd")
    assert (r.returncode, r.stdout.split()) == (0, ["1000", "1000", "1000", "20", "yes", "/tmp"])


def test_exec_overrides(runtime, running) -> None:
    cid, _ = running
    r = runtime("exec", "-u", "0:0", "--additional-gids", "7", "-e", "FROM_CONFIG=no",
                "-e", "EXTRA=1", "--cwd", "/etc", cid,
                "sh", "-c", "id -u; id -g; id -G; echo $FROM_CONFIG $EXTRA; pwd")  # fmt: skip
    assert (r.returncode, r.stdout.split()) == (0, ["0", "0", "0", "7", "20", "no", "1", "/etc"])


def test_exec_capabilities(runtime, running) -> None:
    cid, init = running
    r = runtime("exec", "-u", "0", cid, "grep", "CapBnd", "/proc/self/status", check=True)
    with open(f"/proc/{init}/status") as f:
        assert r.stdout in f.read()


def test_exec_exit_code_passthrough(runtime, running) -> None:
    cid, _ = running
    assert runtime("exec", cid, "sh", "-c", "exit 5").returncode == 5
    assert runtime("exec", cid, "sh", "-c", "kill -9 $$").returncode == 128 + 9


def test_exec_detach_pid_file_and_ps(runtime, running, tmp_path: Path) -> None:
    cid, init = running
    pid_file = tmp_path / "exec.pid"
    r = runtime("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "999")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    text = pid_file.read_text()
    assert text.isdigit(), text  # no newline, as runc
    pid = int(text)
    assert ns_links(pid) == ns_links(init)
    assert json.loads(runtime("ps", "--format", "json", cid, check=True).stdout) == [init, pid]
    table = runtime("ps", cid, check=True).stdout
    assert any(line.split()[1] == text and "sleep 999" in line for line in table.splitlines())


def test_ps_without_a_ps_binary_is_one_line(runtime, running, tmp_path: Path) -> None:
    """A host without procps (a fresh Debian): one line, exit 1, no traceback (issue #11
    item 8; runc says the same words)."""
    cid, _ = running
    r = runtime("ps", cid, env={**os.environ, "PATH": str(tmp_path)})
    assert r.returncode == 1
    assert r.stderr == 'exec: "ps": executable file not found in $PATH (Debian: install procps)\n'


def test_exec_process_file(runtime, running, tmp_path: Path) -> None:
    """containerd's way: the whole process in a file, nothing from config.json."""
    cid, _ = running
    process = {"args": ["sh", "-c", "id -u; echo $ONLY; pwd"], "env": ["ONLY=file"],
               "cwd": "/", "user": {"uid": 5, "gid": 5}}  # fmt: skip
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    r = runtime("exec", "--process", str(path), cid, check=True)
    assert r.stdout.split() == ["5", "file", "/"]


def test_exec_console_socket(runtime, running, tmp_path: Path) -> None:
    cid, _ = running
    with ConsoleSocket(str(tmp_path / "console.sock")) as listener:
        pid_file = tmp_path / "exec.pid"
        runtime("exec", "-d", "-t", "--console-socket", listener.path, "--pid-file",
                str(pid_file), cid, "sh", "-c", "tty; read x; echo got-$x")  # fmt: skip
        term = listener.accept()
        assert term.expect(r"/dev/pts/\d+")
        term.write("hello\n")
        assert term.expect("got-hello")
        pid = int(pid_file.read_text())
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return  # it exited and was reaped already (where PID 1 reaps orphans)
        try:
            assert select.select([fd], [], [], 10)[0]
        finally:
            os.close(fd)


def test_exec_errors(runtime, make_bundle, running, tmp_path: Path) -> None:
    cid, _ = running
    expect_error(runtime, ["exec", "nosuch", "true"], "exec failed: container does not exist",
                 code=255)  # fmt: skip
    expect_error(runtime, ["exec", cid, "nonexistent"], "executable file not found", code=255)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    expect_error(runtime, ["exec", "--process", str(bad), cid], "invalid JSON", code=255)
    bad.write_text(json.dumps({"args": []}))
    expect_error(runtime, ["exec", "--process", str(bad), cid], "args", code=255)
    expect_error(runtime, ["exec", "-t", "-d", cid, "sh"], "console socket", code=255)
    bundle = make_bundle(["true"])
    stopped = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), stopped, check=True)
    deadline = time.monotonic() + 10
    while runtime.state(stopped)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    expect_error(runtime, ["exec", stopped, "true"], "cannot exec in a stopped container",
                 code=255)  # fmt: skip
    assert json.loads(runtime("ps", "--format", "json", cid, check=True).stdout) == [
        runtime.state(cid)["pid"]
    ]


def test_exec_time_namespace(runtime, make_bundle) -> None:
    """The PID and time namespaces apply to children: exec joins both (uptime shifted)."""
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 10**7}}
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    init = runtime.state(cid)["pid"]
    r = runtime("exec", cid, "sh", "-c", "cut -d. -f1 /proc/uptime", check=True)
    assert int(r.stdout) >= 10**7
    pid_file = bundle.path / "exec.pid"
    runtime("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "99", check=True)
    assert ns_links(pid_file.read_text()) == ns_links(init)


def test_exec_preserve_fds(runtime, running, tmp_path: Path) -> None:
    cid, _ = running
    extra = os.open(tmp_path, os.O_RDONLY)  # inheritable: fd 3 + n in the exec'd process
    try:
        os.set_inheritable(extra, True)
        script = f"[ -e /proc/self/fd/{extra} ] && echo kept || echo closed"
        r = runtime("exec", "--preserve-fds", str(extra - 2), cid, "sh", "-c", script,
                    pass_fds=(extra,))  # fmt: skip
        assert r.stdout == "kept\n", r
        r = runtime("exec", cid, "sh", "-c", script, pass_fds=(extra,))
        assert r.stdout == "closed\n", r
    finally:
        os.close(extra)
