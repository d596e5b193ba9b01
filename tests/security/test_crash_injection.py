"""Finding 5 of issue #9: a runtime command SIGKILLed at any instant must leave nothing
that `delete --force ID` cannot remove, and nothing `state`/`list` do not show.

The sweep itself is tests/security/crash_sweep.py (run it by hand for any count); here
it runs as a child process (it makes itself a child subreaper to reap what the killed
commands orphan) with CI's counts: CRASH_SWEEP_COUNT kills per operation for ociruntime
(default 100), asserted leak-free, and CRASH_SWEEP_RUNC_COUNT (default 10) for runc
1.1.5, whose figures are printed only (tests/security/RESULTS-crash.md has a full run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.processes import wait_exited

HERE = Path(__file__).resolve().parent
SWEEP = str(HERE / "crash_sweep.py")
RUNC = "/usr/sbin/runc"
OPS = ("create", "start", "exec", "delete", "update", "pause")


def _sweep(
    runtime: str, count: int, rootfs: Path, ops: tuple[str, ...] = OPS, signal: str = "KILL"
) -> list[dict]:
    p = subprocess.run(
        [sys.executable, SWEEP, "--runtime", runtime, "--count", str(count), "--json",
         "--ops", ",".join(ops), "--rootfs-template", str(rootfs), "--signal", signal],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.splitlines()[-1])


def _report(results: list[dict]) -> str:
    return "\n".join(
        f"{r['runtime']} {r['op']}: {r['kills']} kills, {r['leaks']} leaks, {r['hidden']} hidden,"
        f" {r['delete_failed']} delete failures; {r['examples'][:2]}"
        for r in results
    )


def test_killed_commands_leave_nothing_delete_cannot_remove(rootfs_template: Path) -> None:
    """create (100 kills) and start, exec, delete, update, pause (100 each by default),
    each killed from its spawn to past its undisturbed duration: every kill leaves a
    container `state` and `list` show, `delete --force` exits 0 and leaves no state dir,
    cgroup (any hierarchy), mount or live process, and the id can be created again."""
    count = int(os.environ.get("CRASH_SWEEP_COUNT", "100"))
    results = _sweep("ociruntime", count, rootfs_template)
    print("\n" + _report(results))
    assert [r["op"] for r in results] == list(OPS)
    for r in results:
        assert r["kills"] >= count, _report([r])
    bad = [r for r in results if r["leaks"] or r["hidden"] or r["delete_failed"]]
    assert bad == [], _report(bad)


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc 1.1.5 is the reference")
def test_runc_under_the_same_sweep_is_reported(rootfs_template: Path) -> None:
    """runc's figures, for comparison only: its leaks are not ours to fix."""
    count = int(os.environ.get("CRASH_SWEEP_RUNC_COUNT", "10"))
    results = _sweep("runc", count, rootfs_template)
    print("\n" + _report(results))
    assert all(r["kills"] >= count for r in results)


def test_interrupted_commands_leave_nothing_delete_cannot_remove(rootfs_template: Path) -> None:
    """^C (SIGINT) at any instant of create, exec and delete leaves no more than SIGKILL
    does. It used to raise KeyboardInterrupt wherever the command was: a create
    interrupted while making its cgroups rolled back its record but left the cgroups,
    and one interrupted while taking its lock could wait for itself (found by the
    bench, a few in 30). SIGINT now kills (cli.run_and_exit)."""
    count = int(os.environ.get("CRASH_SWEEP_INT_COUNT", "40"))
    results = _sweep("ociruntime", count, rootfs_template, ("create", "exec", "delete"), "INT")
    print("\n" + _report(results))
    bad = [r for r in results if r["leaks"] or r["hidden"] or r["delete_failed"]]
    assert bad == [], _report(bad)
    assert all(r["kills"] >= count for r in results), _report(results)


def test_create_killed_before_ready_takes_its_init_along(runtime, make_bundle) -> None:
    """A prestart hook SIGKILLs the create running it, while the init waits for the hooks
    (so before it is ready): the init dies too (no process is left in the container's
    cgroups), `state` and `list` show the container as stopped, and `delete` removes
    it so that the id can be used again."""
    bundle = make_bundle(["sleep", "1000"])
    pid_file = bundle.path / "hook-saw-pid"
    bundle.config["hooks"] = {"prestart": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", f"cat > {pid_file}; kill -9 $PPID"],
    }]}  # fmt: skip
    bundle.write()
    cid = runtime.new_id()
    r = runtime("create", "--bundle", str(bundle.path), cid)
    assert r.returncode == -9, r
    init_pid = json.loads(pid_file.read_text())["pid"]
    wait_exited(init_pid)
    st = runtime.state(cid)
    assert (st["status"], st["pid"]) == ("stopped", 0)
    listed = json.loads(runtime("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "stopped")]
    r = runtime("start", cid)
    assert r.returncode == 1 and "cannot start a container that has stopped" in r.stderr
    runtime("delete", cid, check=True)
    assert runtime("state", cid).returncode == 1
    runtime("create", "--bundle", str(bundle.path), cid)  # the id is free: the hook kills again
    runtime("delete", "--force", cid, check=True)


def test_a_directory_without_a_record_is_shown_and_deleted(runtime, make_bundle) -> None:
    """What a create killed between making its directory and writing its first record
    leaves (or a delete killed after removing the record): `state` and `list` show a
    stopped container, `delete --force` removes it, and the id is free again."""
    cid = runtime.new_id()
    os.makedirs(os.path.join(runtime.root, cid))
    with open(os.path.join(runtime.root, cid, ".state.json.tmp"), "w") as f:
        f.write('{"id": "half wr')
    st = runtime.state(cid)
    assert (st["id"], st["status"], st["pid"]) == (cid, "stopped", 0)
    assert runtime("list", "-q", check=True).stdout.split() == [cid]
    r = runtime("create", "--bundle", str(make_bundle(["true"]).path), cid)
    assert r.returncode == 1 and "already exists" in r.stderr
    runtime("delete", "--force", cid, check=True)
    assert not os.path.exists(os.path.join(runtime.root, cid))
    runtime("create", "--bundle", str(make_bundle(["true"], name="again").path), cid, check=True)
    runtime("delete", "--force", cid, check=True)


def test_a_create_that_died_after_its_init_was_ready(runtime, make_bundle) -> None:
    """What a create killed between its init's "ready" and its last record leaves: the
    init alive, blocked on the exec fifo, and a record that still names the (dead)
    creator, here without even the init's pid. `state` and `list` say stopped, `start`
    refuses it, and `delete` finds the init through the recorded cgroups, kills it and
    removes everything."""
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    init_pid = runtime.state(cid)["pid"]
    record_path = os.path.join(runtime.root, cid, "state.json")
    with open(record_path) as f:
        record = json.load(f)
    record.update(creator=[os.getpid(), 1], pid=0, start_time=0)  # a create long gone
    with open(record_path, "w") as f:
        json.dump(record, f)
    assert (runtime.state(cid)["status"], runtime.state(cid)["pid"]) == ("stopped", 0)
    listed = json.loads(runtime("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "stopped")]
    assert runtime("start", cid).returncode == 1
    assert os.path.exists(f"/proc/{init_pid}")  # still blocked on the fifo
    runtime("delete", cid, check=True)
    wait_exited(init_pid)
    assert not os.path.exists(os.path.join(runtime.root, cid))
