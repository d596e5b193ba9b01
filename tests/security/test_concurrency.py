"""Concurrency (issue #9): many containers through their lifecycle at once while `list`
and `state` read in a loop, and two `create`s racing for one id."""

from __future__ import annotations

import json
import random
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

from ociruntime.commands import query
from ociruntime.container.container import Container
from testkit.processes import wait_exited

CONTAINERS = 100
IN_FLIGHT = 20
STATUSES = {"creating", "created", "running", "paused", "stopped"}


def _clean_failure(r, what: str) -> str | None:  # noqa: ANN001
    """None if `r` is a success or a runc-style failure: exit 1, one line, no traceback."""
    if r.returncode == 0:
        return None
    lines = r.stderr.strip().splitlines()
    if r.returncode != 1 or len(lines) != 1 or "Traceback" in r.stderr:
        return f"{what}: exit {r.returncode}: {r.stderr.strip()[-500:]}"
    return None


def _list_loop(runtime, ids: list[str], done, problems: list[str], reads: dict) -> None:  # noqa: ANN001
    """`list --format json` until `done`: valid JSON, known ids and statuses."""
    while not done.is_set():
        r = runtime("list", "--format", "json")
        reads["list"] += 1
        if r.returncode != 0:
            problems.append(f"list: exit {r.returncode}: {r.stderr.strip()[-500:]}")
            continue
        try:
            entries = json.loads(r.stdout) or []
        except ValueError:
            problems.append(f"list printed no JSON: {r.stdout[:300]!r}")
            continue
        reads["seen"] += len(entries)
        for e in entries:
            if e.get("status") not in STATUSES or e.get("id") not in ids:
                problems.append(f"list entry: {e}")


def _state_loop(runtime, ids: list[str], done, problems: list[str], reads: dict) -> None:  # noqa: ANN001
    """`state` of random ids until `done`: a state, or runc's one-line failure."""
    rng = random.Random(9)
    while not done.is_set():
        cid = rng.choice(ids)
        r = runtime("state", cid)
        reads["state"] += 1
        problem = _clean_failure(r, f"state {cid}")
        if problem:
            problems.append(problem)
        elif r.returncode == 0:
            try:
                st = json.loads(r.stdout)
                assert st["id"] == cid and st["status"] in STATUSES
            except (ValueError, KeyError, AssertionError):
                problems.append(f"state {cid}: {r.stdout[:300]!r}")
        elif "container does not exist" not in r.stderr:
            problems.append(f"state {cid}: {r.stderr.strip()}")


def test_lifecycles_while_list_and_state_read(runtime, make_bundle) -> None:
    """100 containers, 20 at a time, each created, started, seen running, killed, seen
    stopped and deleted by the CLI, while two readers run `list --format json` and
    `state` of random ids in a loop: every lifecycle step succeeds, `list` always
    prints valid JSON with known statuses, `state` either prints a state or fails as
    runc does ("container does not exist", one line), never with a traceback."""
    bundle = make_bundle(["sleep", "1000"])
    ids = [runtime.new_id() for _ in range(CONTAINERS)]
    done = threading.Event()
    problems: list[str] = []
    reads = {"list": 0, "state": 0, "seen": 0}

    def lifecycle(cid: str) -> None:
        runtime("create", "--bundle", str(bundle.path), cid, check=True)
        runtime("start", cid, check=True)
        st = runtime.state(cid)
        assert st["status"] == "running", st
        runtime("kill", cid, "KILL", check=True)
        wait_exited(st["pid"])
        assert runtime.state(cid)["status"] == "stopped"
        runtime("delete", cid, check=True)

    shared = (runtime, ids, done, problems, reads)
    readers = [threading.Thread(target=loop, args=shared) for loop in (_list_loop, _state_loop)]
    for t in readers:
        t.start()
    try:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            for future in [pool.submit(lifecycle, cid) for cid in ids]:
                future.result()
    finally:
        done.set()
        for t in readers:
            t.join()
    assert problems == []
    assert reads["list"] > 5 and reads["state"] > 5 and reads["seen"] > 0, reads
    assert json.loads(runtime("list", "--format", "json", check=True).stdout) is None


def test_two_creates_of_one_id(runtime, make_bundle) -> None:
    """Both started at once, ten times: exactly one wins; the other exits 1 with one
    line and leaves the winner alone, which then starts, runs and is deleted normally."""
    bundle = make_bundle(["sleep", "1000"])
    for _ in range(10):
        cid = runtime.new_id()
        barrier = threading.Barrier(2)
        results: list = [None, None]

        def create(i: int, cid: str = cid, barrier=barrier, results=results) -> None:  # noqa: ANN001
            barrier.wait()
            results[i] = runtime("create", "--bundle", str(bundle.path), cid)

        threads = [threading.Thread(target=create, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.returncode for r in results) == [0, 1], results
        loser = next(r for r in results if r.returncode == 1)
        assert loser.stderr.strip() == "container with given ID already exists", loser
        assert runtime.state(cid)["status"] == "created"
        runtime("start", cid, check=True)
        st = runtime.state(cid)
        assert st["status"] == "running"
        runtime("kill", cid, "KILL", check=True)
        wait_exited(st["pid"])
        runtime("delete", cid, check=True)
        assert runtime("state", cid).returncode == 1


def test_list_skips_a_container_deleted_while_it_lists(tmp_path, monkeypatch) -> None:
    """`list` reads each container's record, then its status, then its owner: a delete
    landing in between (here: right after the status) drops it from the output instead
    of failing the whole list (it raised FileNotFoundError)."""
    root = tmp_path / "root"
    for cid in ("a-stays", "b-goes"):
        (root / cid).mkdir(parents=True)
        (root / cid / "state.json").write_text(json.dumps({
            "id": cid, "pid": 0, "start_time": 0, "bundle": "/b", "rootfs": "/b/rootfs",
            "created": "2026-01-01T00:00:00Z",
        }))  # fmt: skip
    real_status = Container.status

    def status_then_delete(container):  # noqa: ANN001, ANN202
        status = real_status(container)
        if container.dir.id == "b-goes":
            shutil.rmtree(container.dir.path)
        return status

    monkeypatch.setattr(Container, "status", status_then_delete)
    entries = json.loads(query.list_containers(str(root), "json", False))
    assert [(e["id"], e["status"]) for e in entries] == [("a-stays", "stopped")]


def test_state_and_list_from_a_hook_while_create_runs(runtime, make_bundle) -> None:
    """create does not hold the container's lock while it waits for its init: a
    createRuntime hook that asks `state` and `list` (as hooks do) gets "creating" and
    the init's pid instead of waiting forever for a create that waits for it; `start`
    and `exec` meanwhile are refused in one line, and the container then starts."""
    from tests.conftest import OCIRUNTIME

    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    out = bundle.path / "hook-out"
    rt = f"{OCIRUNTIME} --root {runtime.root}"
    script = (
        f"cat > {out}.stdin; {rt} state {cid} > {out}.state 2>&1; "
        f"{rt} list --format json > {out}.list 2>&1; "
        f"{rt} start {cid} > {out}.start 2>&1; {rt} exec {cid} true > {out}.exec 2>&1; true"
    )
    bundle.config["hooks"] = {
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 20}]
    }
    bundle.write()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    init_pid = json.loads((bundle.path / "hook-out.stdin").read_text())["pid"]
    st = json.loads((bundle.path / "hook-out.state").read_text())
    assert (st["id"], st["status"], st["pid"]) == (cid, "creating", init_pid)
    listed = json.loads((bundle.path / "hook-out.list").read_text())
    assert [(e["id"], e["status"]) for e in listed] == [(cid, "creating")]
    start = (bundle.path / "hook-out.start").read_text().strip()  # runc's text log format
    assert start.endswith('level=error msg="cannot start a container in the creating state"')
    exec_ = (bundle.path / "hook-out.exec").read_text().strip()
    assert exec_.endswith('msg="exec failed: cannot exec in a container that is being created"')
    assert runtime.state(cid)["status"] == "created"
    runtime("start", cid, check=True)
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "--force", cid, check=True)
