"""runc 1.1.5 parity of the cgroup items of issue #11, on real containers, each case run
under runc too (the reference, when installed) and compared with what it did:

- item 2: a cgroup that exists and is frozen is refused (`container's cgroup
  unexpectedly frozen`), nothing left but the cgroup that was there;
- item 3: `events` ends once the container is deleted, even when its cgroup stays
  (it existed before `create`, so `delete` keeps it);
- item 16: v1 cpuset directories of the path that exist with empty cpus/mems get their
  parent's values, down the whole path;
- item 17: device access strings as runc reads them (r, w, m; repeats and other letters
  ignored, an empty one refused) and `update` writing only the device rules that change;
- item 18: a cgroup that already holds processes: runc 1.1.5's two warnings, and on;
- item 19: runc's words (`invalid configuration`, `container's cgroup unexpectedly
  frozen`) in the errors, after ociruntime's pointer.

Every run that could hang has a timeout (the runtime driver's, or an explicit one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Runtime

from ociruntime.cgroups import cgroupfs

RUNC = shutil.which("runc")
HIERARCHIES = cgroupfs.hierarchies()
#: A create that hangs (the bug of item 2) fails the test after this many seconds.
SHORT = 20


def sleeper(make_bundle, cgroups_path: str | None = None):
    """A bundle whose process sleeps, in `cgroups_path` (absolute) if given."""
    bundle = make_bundle(["sleep", "1000"])
    if cgroups_path:
        bundle.config["linux"]["cgroupsPath"] = cgroups_path
    return bundle.write()


@pytest.fixture
def runc(tmp_path: Path) -> Iterator[Runtime]:
    """runc, the reference, with a private --root (JSON log in tmp_path/runc.log)."""
    if RUNC is None:
        pytest.skip("runc (the reference runtime) is not installed")
    rt = Runtime(root=f"/run/ocirt-parity-runc-{uuid.uuid4().hex[:8]}",
                 log=str(tmp_path / "runc.log"), binary=RUNC)  # fmt: skip
    try:
        yield rt
    finally:
        rt.cleanup()
        shutil.rmtree(rt.root, ignore_errors=True)


class Cgroup:
    """A cgroup made by the test (not by a runtime) in every hierarchy: `path` is the
    absolute cgroupsPath, `dirs` hierarchy -> directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pairs = cgroupfs.placement(path, "unused", HIERARCHIES)
        self.created: list[str] = []

    def make(self, fill_cpuset: bool = True) -> Cgroup:
        """mkdir -p in every hierarchy; v1 cpuset directories get their parent's values
        unless `fill_cpuset` is False (then they stay empty, as the kernel makes them)."""
        for h, d in self.pairs:
            cur = h.mountpoint
            for part in os.path.relpath(d, h.mountpoint).split("/"):
                cur = os.path.join(cur, part)
                if not os.path.isdir(cur):
                    os.mkdir(cur)
                    self.created.append(cur)
                    if fill_cpuset and "cpuset" in h.controllers:
                        for name in ("cpuset.cpus", "cpuset.mems"):
                            parent = Path(os.path.dirname(cur), name).read_text()
                            Path(cur, name).write_text(parent)
        return self

    def dir_of(self, controller: str) -> str:
        return cgroupfs.paths_of(self.pairs)[controller]

    def exists(self) -> bool:
        return all(os.path.isdir(d) for _, d in self.pairs)

    def remove(self) -> None:
        """Thawed first (a frozen cgroup's processes would never die), then rmdir all
        (what a runtime made below too), deepest first."""
        freezer = cgroupfs.paths_of(self.pairs).get("freezer")
        if freezer and os.path.exists(freezer):
            Path(freezer, "freezer.state").write_text("THAWED")
        below = [d for _, top in self.pairs for d, _dirs, _files in os.walk(top)]
        cgroupfs.remove(sorted(set(below + self.created), key=len))


@pytest.fixture
def cgroup() -> Iterator[Callable[..., Cgroup]]:
    """cgroup(path=None) -> a Cgroup of the test's (not yet made); removed afterwards."""
    made: list[Cgroup] = []

    def make(path: str | None = None) -> Cgroup:
        made.append(Cgroup(path or "/ocirt-parity-" + uuid.uuid4().hex[:8]))
        return made[-1]

    try:
        yield make
    finally:
        for c in reversed(made):
            c.remove()


def log_records(runtime: Runtime) -> list[dict]:
    """The JSON records of the runtime's --log file (runc's or ours)."""
    if not os.path.exists(runtime.log):
        return []
    with open(runtime.log) as f:
        return [json.loads(line) for line in f if line.strip()]


def nothing_left(runtime: Runtime, cid: str) -> None:
    """No state dir and no process for `cid` (a refused create)."""
    assert not os.path.exists(os.path.join(runtime.root, cid)), "a state dir was left"
    assert runtime("state", cid).returncode != 0


# --- item 2: a frozen cgroup -----------------------------------------------------------------


@pytest.mark.parametrize("command", [["create"], ["run", "-d"]])
def test_frozen_cgroup_refused_as_runc(runtime, runc, make_bundle, cgroup, command) -> None:
    """runc: exit 1, `container's cgroup unexpectedly frozen`, no state dir, no process;
    the frozen cgroup (not the runtime's) stays. ociruntime put the init in it and waited
    forever."""
    frozen = cgroup().make()
    Path(frozen.dir_of("freezer"), "freezer.state").write_text("FROZEN")
    bundle = sleeper(make_bundle, frozen.path)
    for rt in (runc, runtime):
        cid = rt.new_id()
        r = rt(*command, "--bundle", str(bundle.path), cid, timeout=SHORT)
        assert r.returncode == 1, (rt.binary, r)
        assert "container's cgroup unexpectedly frozen" in r.stderr, (rt.binary, r)
        nothing_left(rt, cid)
        assert frozen.exists(), "the cgroup that was there before was removed"
        assert not cgroupfs.procs([frozen.dir_of("pids")]), "a process was left in it"
    ours = runtime(*command, "--bundle", str(bundle.path), runtime.new_id(), timeout=SHORT)
    assert "config.json: /linux/cgroupsPath: container's cgroup unexpectedly frozen" in (
        ours.stderr
    )


# --- item 18: a cgroup that already holds processes -------------------------------------------

#: runc 1.1.5's two warnings (libcontainer's factory, Create), level "warning".
NOT_EMPTY = [
    "container's cgroup is not empty: 1 process(es) found",
    "DEPRECATED: running container in a non-empty cgroup won't be supported in runc 1.2; "
    "https://github.com/opencontainers/runc/issues/3132",
]


@pytest.fixture
def busy(cgroup) -> Iterator[Callable[[], tuple[Cgroup, subprocess.Popen]]]:
    """busy() -> a cgroup of the test's in every hierarchy, holding one sleep."""
    sleepers: list[subprocess.Popen] = []

    def make() -> tuple[Cgroup, subprocess.Popen]:
        c = cgroup().make()
        sleepers.append(subprocess.Popen(["sleep", "1000"]))
        cgroupfs.join([d for _, d in c.pairs], sleepers[-1].pid)
        return c, sleepers[-1]

    try:
        yield make
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def test_cgroup_with_processes_warns_as_runc(runtime, runc, make_bundle, busy) -> None:
    """runc 1.1.5: the two warnings in its log, exit 0, the container runs; delete
    --force kills the container (its init: it has its own PID namespace) and not the
    process that was there before. ociruntime refused the cgroup (runc 1.2's way)."""
    for rt in (runc, runtime):
        c, outsider = busy()
        bundle = sleeper(make_bundle, c.path)
        cid = rt.new_id()
        r = rt("run", "-d", "--bundle", str(bundle.path), cid, timeout=SHORT)
        assert r.returncode == 0, (rt.binary, r)
        warnings = [(x["level"], x["msg"]) for x in log_records(rt) if x["level"] != "debug"]
        assert warnings == [("warning", w) for w in NOT_EMPTY], rt.binary
        assert rt.state(cid)["status"] == "running"
        assert rt("delete", "--force", cid, timeout=SHORT).returncode == 0
        assert outsider.poll() is None, f"{rt.binary}: delete killed a process not its own"
        assert c.exists()


# --- item 19: runc's words in the errors engines match ---------------------------------------


@pytest.mark.skipif(cgroupfs.host_mode(HIERARCHIES) == "v2", reason="unified is valid on v2")
def test_unified_on_v1_in_runcs_words(runtime, runc, make_bundle) -> None:
    """runc: `invalid configuration: cannot use unified on cgroup v1`, exit 1, nothing
    left. ociruntime's error is in its shape (the pointer, the value) with runc's words
    after it, so that a grep for them matches."""
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["linux"]["resources"] = {"unified": {"pids.max": "10"}}
    bundle.write()
    words = "invalid configuration: cannot use unified on cgroup v1"
    for rt in (runc, runtime):
        cid = rt.new_id()
        r = rt("run", "-d", "--bundle", str(bundle.path), cid, timeout=SHORT)
        assert r.returncode == 1 and words in r.stderr, (rt.binary, r)
        nothing_left(rt, cid)
    r = runtime("run", "-d", "--bundle", str(bundle.path), runtime.new_id(), timeout=SHORT)
    assert r.stderr.startswith(
        f'config.json: /linux/resources/unified: {{"pids.max":"10"}}: {words}'
    )


# --- item 16: v1 cpuset directories that exist with empty cpus/mems ---------------------------


@pytest.mark.skipif(
    not any("cpuset" in h.controllers for h in HIERARCHIES), reason="no cgroup v1 cpuset"
)
def test_empty_cpuset_parents_filled_as_runc(runtime, runc, make_bundle, cgroup) -> None:
    """Intermediate directories of cgroupsPath that exist with empty cpuset.cpus/mems (as
    mkdir makes them, without clone_children): runc copies the parent's values down the
    whole path and the container runs. ociruntime filled only the directories it made,
    and joining failed `No space left on device`."""
    for rt in (runc, runtime):
        parents = cgroup().make(fill_cpuset=False)
        cpuset = parents.dir_of("cpuset")
        assert Path(cpuset, "cpuset.cpus").read_text().strip() == ""  # the case
        bundle = sleeper(make_bundle, parents.path + "/mid/leaf")
        cid = rt.new_id()
        r = rt("run", "-d", "--bundle", str(bundle.path), cid, timeout=SHORT)
        assert r.returncode == 0, (rt.binary, r)
        want = [
            Path(os.path.dirname(cpuset), n).read_text() for n in ("cpuset.cpus", "cpuset.mems")
        ]
        for d in (cpuset, f"{cpuset}/mid", f"{cpuset}/mid/leaf"):
            got = [Path(d, n).read_text() for n in ("cpuset.cpus", "cpuset.mems")]
            assert got == want, (rt.binary, d)
        assert rt("delete", "--force", cid, timeout=SHORT).returncode == 0


# --- item 3: events after delete, when the cgroup existed before create -----------------------


def test_events_end_on_delete_of_precreated_cgroup(runtime, runc, make_bundle, cgroup) -> None:
    """runc: `events` exits 0 soon after `delete --force` (it removes the cgroup, even one
    it did not make, which ends its OOM watch). ociruntime keeps a cgroup it did not make
    and its stream waited for that cgroup to go: forever."""
    for rt in (runc, runtime):
        c = cgroup().make()
        bundle = sleeper(make_bundle, c.path)
        cid = rt.new_id()
        rt("run", "-d", "--bundle", str(bundle.path), cid, check=True, timeout=SHORT)
        cmd = [rt.binary, "--root", rt.root, "events", "--interval", "1s", cid]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as events:
            try:
                first = events.stdout.readline()  # type: ignore[union-attr]
                assert json.loads(first)["type"] == "stats", (rt.binary, first)
                assert rt("delete", "--force", cid, timeout=SHORT).returncode == 0
                assert events.wait(timeout=10) == 0, rt.binary
            finally:
                events.kill()
