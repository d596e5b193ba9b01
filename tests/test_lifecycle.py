"""The lifecycle as a user drives it: create -> start -> kill -> delete, run's exit code,
hooks at the right moments with the state on stdin, and state/list output."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

HOST_SH = "/bin/sh"


def wait_stopped(runtime, cid: str) -> dict:
    """The init is not our child, so wait on its pidfd (an event, not a timer)."""
    st = runtime.state(cid)
    if st["status"] != "stopped":
        import select

        try:
            fd = os.pidfd_open(st["pid"])
        except ProcessLookupError:
            fd = None  # exited and reaped since (where PID 1 reaps orphans)
        if fd is not None:
            try:
                assert select.select([fd], [], [], 30)[0], "container did not stop in 30 s"
            finally:
                os.close(fd)
    st = runtime.state(cid)
    assert st["status"] == "stopped"
    return st


def process_gone(pid: int) -> bool:
    """Exited: reaped already, or a zombie (this host's PID 1 does not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_state_transitions(runtime, make_bundle):
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == str(bundle.path)
    assert st["rootfs"] == str(bundle.rootfs) and st["pid"] > 0
    assert list(st) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]
    # The created init is waiting: it has not exec'd the user process yet.
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()

    runtime("start", cid, check=True)
    assert runtime.state(cid)["status"] == "running"
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"

    runtime("kill", cid, "KILL", check=True)
    st = wait_stopped(runtime, cid)
    assert st["pid"] == 0
    runtime("delete", cid, check=True)
    assert runtime("state", cid).returncode == 1


def test_run_returns_exit_code(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "exit 3"])
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 3


def test_run_returns_128_plus_signal(runtime, make_bundle):
    # Without its own PID namespace the process is not a PID 1 that ignores SIGKILL
    # from inside, so it can kill itself.
    bundle = make_bundle(["sh", "-c", "kill -9 $$"])
    namespaces = bundle.config["linux"]["namespaces"]
    bundle.config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "pid"]
    bundle.write()
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 128 + signal.SIGKILL


def test_run_deletes_the_container(runtime, make_bundle):
    cid = runtime.new_id()
    runtime("run", "--bundle", str(make_bundle(["true"]).path), cid, check=True)
    assert runtime("state", cid).returncode == 1


def test_run_detached_leaves_it_running(runtime, make_bundle):
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"]).path), cid,
            check=True)  # fmt: skip
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "--force", cid, check=True)


def test_pid_file(runtime, make_bundle, tmp_path):
    cid = runtime.new_id()
    pid_file = tmp_path / "pid"
    runtime("create", "--pid-file", str(pid_file), "--bundle",
            str(make_bundle(["sleep", "1000"]).path), cid, check=True)  # fmt: skip
    assert pid_file.read_text() == str(runtime.state(cid)["pid"])


def test_delete_created_container_needs_force(runtime, make_bundle):
    """runtime.md: deleting a container that is not stopped MUST fail and change nothing
    (runc deletes a created one anyway); --force kills it first."""
    cid = runtime.new_id()
    runtime("create", "--bundle", str(make_bundle(["sleep", "1000"]).path), cid, check=True)
    pid = runtime.state(cid)["pid"]
    refused = runtime("delete", cid)
    assert refused.returncode == 1 and "not stopped: created" in refused.stderr
    assert runtime.state(cid)["status"] == "created"
    runtime("delete", "--force", cid, check=True)
    assert process_gone(pid)


def test_kill_all_and_default_signal(runtime, make_bundle):
    # sh as PID 1 traps TERM so that the default signal (SIGTERM) ends it.
    bundle = make_bundle(["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    runtime("kill", cid, check=True)
    wait_stopped(runtime, cid)
    assert runtime("kill", cid, "KILL").returncode == 1  # not running any more
    assert runtime("kill", "--all", cid, "KILL").returncode == 0


def test_list(runtime, make_bundle):
    cids = sorted(runtime.new_id() for _ in range(2))
    for cid in cids:
        runtime("create", "--bundle", str(make_bundle(["sleep", "1000"]).path), cid, check=True)
    assert runtime("list", "-q", check=True).stdout.split() == cids
    entries = json.loads(runtime("list", "--format", "json", check=True).stdout)
    assert [e["id"] for e in entries] == cids
    assert {e["status"] for e in entries} == {"created"}
    assert {e["owner"] for e in entries} == {"root"}
    table = runtime("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert [row.split()[0] for row in table[1:]] == cids


HOOK_LOG = "/hooklog"


def hook(name: str, log_dir: str, shell: str = HOST_SH) -> dict:
    """A hook that records its name (in order) and the state JSON it got on stdin."""
    script = (
        f"cat > {log_dir}/{name}.json; echo {name} >> {log_dir}/order;"
        f' echo "$HOOKENV" > {log_dir}/{name}.env'
    )
    return {"path": shell, "args": ["sh", "-c", script], "env": [f"HOOKENV={name}-env"]}


def test_hooks_run_in_order_with_state(runtime, make_bundle, tmp_path):
    log = tmp_path / "hooks"
    log.mkdir()
    bundle = make_bundle(["sleep", "1000"])
    host_log = str(log)
    bundle.config["hooks"] = {
        "prestart": [hook("prestart", host_log)],
        "createRuntime": [hook("createRuntime", host_log)],
        "createContainer": [hook("createContainer", host_log)],
        # startContainer runs inside the container: its path and log dir are the container's.
        "startContainer": [hook("startContainer", HOOK_LOG, shell="/bin/sh")],
        "poststart": [hook("poststart", host_log)],
        "poststop": [hook("poststop", host_log)],
    }
    bundle.config["mounts"].append(
        {"destination": HOOK_LOG, "type": "bind", "source": host_log, "options": ["rbind", "rw"]}
    )
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)

    def order() -> list[str]:
        return (log / "order").read_text().split()

    assert order() == ["prestart", "createRuntime", "createContainer"]
    pid = runtime.state(cid)["pid"]
    runtime("start", cid, check=True)
    assert order() == ["prestart", "createRuntime", "createContainer", "startContainer",
                       "poststart"]  # fmt: skip
    runtime("delete", "--force", cid, check=True)
    assert order()[-1] == "poststop"

    for name in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                 "poststop"):  # fmt: skip
        state = json.loads((log / f"{name}.json").read_text())
        assert state["id"] == cid and state["bundle"] == str(bundle.path), name
        assert (log / f"{name}.env").read_text().strip() == f"{name}-env"
        if name != "poststop":
            assert state["pid"] == pid, name
    assert json.loads((log / "poststart.json").read_text())["status"] == "running"
    assert json.loads((log / "poststop.json").read_text())["status"] == "stopped"


def test_hook_timeout_fails_create(runtime, make_bundle):
    bundle = make_bundle(["true"])
    bundle.config["hooks"] = {
        "createRuntime": [{"path": HOST_SH, "args": ["sh", "-c", "sleep 100"], "timeout": 1}]
    }
    bundle.write()
    result = runtime("create", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 1
    assert "config.json: /hooks/createRuntime/0: error running hook #0: " in result.stderr
    assert "hook ran past specified timeout of 1.0s" in result.stderr


def test_failing_poststart_hook_is_a_warning(runtime, make_bundle):
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["hooks"] = {"poststart": [{"path": "/bin/false"}]}
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    result = runtime("start", cid)
    assert result.returncode == 0
    # A warning goes to the --log file (engines give the runtime the container's stdio).
    records = [json.loads(line) for line in open(runtime.log)]
    assert [r for r in records if r["level"] == "warning" and "/hooks/poststart/0: " in r["msg"]]
    assert "/hooks/poststart/0" not in result.stderr
    assert runtime.state(cid)["status"] == "running"


@pytest.mark.parametrize("annotations", [{"org.example/key": "value"}])
def test_state_carries_annotations(runtime, make_bundle, annotations):
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["annotations"] = annotations
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    assert runtime.state(cid)["annotations"] == annotations


def own_cgroups() -> dict[str, str]:
    with open("/proc/self/cgroup") as f:
        return {line.split(":")[1]: line.strip().split(":", 2)[2] for line in f}


@pytest.mark.parametrize("kind", ["default", "relative", "absolute"])
def test_cgroup_placement_and_removal(runtime, make_bundle, kind):
    """The init joins the cgroup named by linux.cgroupsPath in every hierarchy (v1 and
    the v2 unified one); delete removes it. Relative paths (and the default, the id) are
    taken from the runtime's own cgroup, as runc's cgroupfs driver does."""
    cid = runtime.new_id()
    bundle = make_bundle(["sleep", "1000"])
    path = {"default": None, "relative": f"ocitest-{cid}/inner",
            "absolute": f"/ocitest-{cid}/inner"}[kind]  # fmt: skip
    if path:
        bundle.config["linux"]["cgroupsPath"] = path
    bundle.write()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        theirs = {line.split(":")[1]: line.strip().split(":", 2)[2] for line in f}
    mine = own_cgroups()
    assert set(theirs) == set(mine)  # every hierarchy, including the unified one ("")
    for controllers, cgroup in theirs.items():
        base = "/" if kind == "absolute" else mine[controllers]
        expected = os.path.normpath(os.path.join(base, (path or cid).lstrip("/")))
        assert cgroup == expected, controllers
    leaf = os.path.basename(path or cid)
    runtime("delete", "--force", cid, check=True)
    left = [d for d, _, _ in os.walk("/sys/fs/cgroup") if f"ocitest-{cid}" in d or d.endswith(leaf)]
    assert left == []


def test_delete_kills_leftovers_of_a_shared_pid_namespace(runtime, make_bundle):
    """Without its own PID namespace the init can exit and leave children running in the
    container's cgroup; delete must not leave them behind."""
    bundle = make_bundle(["sh", "-c", "sleep 1000 & echo $! > /tmp/child; exit 0"])
    bundle.config["linux"]["namespaces"] = [
        ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "pid"
    ]
    bundle.config["root"]["readonly"] = False
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    wait_stopped(runtime, cid)
    child = int((bundle.rootfs / "tmp" / "child").read_text())
    os.kill(child, 0)  # still alive after its parent, the init, exited
    runtime("delete", cid, check=True)
    assert process_gone(child)


def test_start_waiting_on_a_stopped_init_blocks_no_other_command(runtime, make_bundle, tmp_path):
    """`start` waits for the init to exec; the lock does not wait with it. With the
    created init stopped (SIGSTOP: it cannot exec), `state` answers, `delete --force`
    removes the container, and the waiting `start` then fails."""
    import subprocess

    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    pid = runtime.state(cid)["pid"]
    os.kill(pid, signal.SIGSTOP)
    with open(tmp_path / "start.out", "w") as out:
        starter = subprocess.Popen(
            [runtime.binary, "--root", runtime.root, "start", cid],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Until start has taken the fifo the container is "created"; after, "running",
        # while start still waits: state answers all along (each call under a timeout).
        deadline = time.monotonic() + 30
        while runtime("state", cid, timeout=10).stdout.count('"running"') == 0:
            assert starter.poll() is None, "start returned though the init cannot exec"
            assert time.monotonic() < deadline, "start never took the fifo"
        runtime("delete", "--force", cid, check=True, timeout=20)
        assert starter.wait(timeout=20) != 0
    finally:
        starter.kill()
        starter.wait()
    assert process_gone(pid)
    assert runtime("state", cid).returncode == 1
    assert "exited before it could start" in (tmp_path / "start.out").read_text()


def test_two_forced_deletes_at_once_both_succeed(runtime, make_bundle, tmp_path):
    """Engines retry `delete --force`; two at once on a running container both exit 0
    (the second finds it gone, as runc's does) and nothing is left."""
    import subprocess

    cid = runtime.new_id()
    runtime(
        "run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"]).path), cid, check=True
    )
    pid = runtime.state(cid)["pid"]
    argv = [runtime.binary, "--root", runtime.root, "delete", "--force", cid]
    deletes = [
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"delete{n}.err", "w"),
        )
        for n in range(2)
    ]
    assert [d.wait(timeout=30) for d in deletes] == [0, 0], [
        (tmp_path / f"delete{n}.err").read_text() for n in range(2)
    ]
    assert process_gone(pid)
    assert runtime("state", cid).returncode == 1
