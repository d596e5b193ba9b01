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

from ociruntime.cgroups import cgroupfs, existing

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
        existing.remove(sorted(set(below + self.created), key=len))


@pytest.fixture
def cgroup(runtime: Runtime, runc: Runtime) -> Iterator[Callable[..., Cgroup]]:
    """cgroup(path=None) -> a Cgroup of the test's (not yet made); removed afterwards,
    once both runtimes' containers are deleted (a failed test may leave some in it)."""
    made: list[Cgroup] = []

    def make(path: str | None = None) -> Cgroup:
        made.append(Cgroup(path or "/ocirt-parity-" + uuid.uuid4().hex[:8]))
        return made[-1]

    try:
        yield make
    finally:
        runc.cleanup()
        runtime.cleanup()
        for c in reversed(made):
            c.remove()


def log_records(runtime: Runtime) -> list[dict]:
    """The JSON records of the runtime's --log file (runc's or ours)."""
    if not os.path.exists(runtime.log):
        return []
    with open(runtime.log) as f:
        return [json.loads(line) for line in f if line.strip()]


def refused_by_both(runtime: Runtime, runc: Runtime, bundle, words: str) -> str:
    """runc and ociruntime each refuse `run -d` of the bundle (exit 1, `words` in the
    message, nothing left behind); our message."""
    for rt in (runc, runtime):
        cid = rt.new_id()
        r = rt("run", "-d", "--bundle", str(bundle.path), cid, timeout=SHORT)
        assert r.returncode == 1 and words in r.stderr, (rt.binary, r)
        nothing_left(rt, cid)
    return runtime(
        "run", "-d", "--bundle", str(bundle.path), runtime.new_id(), timeout=SHORT
    ).stderr


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
        assert not existing.procs([frozen.dir_of("pids")]), "a process was left in it"
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
    assert refused_by_both(runtime, runc, bundle, words).startswith(
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


# --- item 17: device rules ---------------------------------------------------------------------

DEVICES_V1 = any("devices" in h.controllers for h in HIERARCHIES)
needs_devices_v1 = pytest.mark.skipif(not DEVICES_V1, reason="no cgroup v1 devices controller")


def with_devices(make_bundle, rules: list[dict], cgroups_path: str | None = None):
    bundle = sleeper(make_bundle, cgroups_path)
    bundle.config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}, *rules]}
    return bundle.write()


def devices_list(rt: Runtime, cid: str, cgroups_path: str | None = None) -> list[str]:
    """The container's devices.list (its cgroup: cgroupsPath, or the id's default)."""
    c = cgroupfs.placement(cgroups_path, cid, HIERARCHIES)
    with open(os.path.join(cgroupfs.paths_of(c)["devices"], "devices.list")) as f:
        return f.read().splitlines()


@needs_devices_v1
@pytest.mark.parametrize(
    ("given", "listed"),
    [("rwa", "c 1:11 rw"), ("rrw", "c 1:11 rw"), ("wr", "c 1:11 rw"), ("mw", "c 1:11 wm"),
     ("rwmrwm", "c 1:11 rwm")],
)  # fmt: skip
def test_device_access_read_as_runc(runtime, runc, make_bundle, given, listed) -> None:
    """runc keeps the r, w, m of an access string (each once, other letters ignored) and
    the container runs; ociruntime wrote "rwa" as given and the kernel refused it."""
    bundle = with_devices(make_bundle, [{"allow": True, "type": "c", "major": 1, "minor": 11,
                                         "access": given}])  # fmt: skip
    seen = []
    for rt in (runc, runtime):
        cid = rt.new_id()
        r = rt("run", "-d", "--bundle", str(bundle.path), cid, timeout=SHORT)
        assert r.returncode == 0, (rt.binary, r)
        seen.append([line for line in devices_list(rt, cid) if line.startswith("c 1:11 ")])
        assert rt("delete", "--force", cid, timeout=SHORT).returncode == 0
    assert seen == [[listed], [listed]]


@needs_devices_v1
@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ([{"allow": True, "type": "c", "major": 1, "minor": 11, "access": ""}],
         "device access at 1 field cannot be empty"),
        ([{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "x"}],
         "resulting devices cgroup doesn't precisely match target"),
        ([{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "a"}],
         "resulting devices cgroup doesn't precisely match target"),
        ([{"allow": True, "type": "c", "access": "rwm"},
          {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
         "cannot punch hole in existing wildcard rule"),
    ],
)  # fmt: skip
def test_device_rules_refused_as_runc(runtime, runc, make_bundle, rules, words) -> None:
    """What runc refuses (exit 1, nothing left), in its words; ociruntime refuses it
    before anything is made, its pointer first. It had written "" as "rwm", and "x",
    "a" and the hole-punching deny as given (the kernel refused or ignored them)."""
    bundle = with_devices(make_bundle, rules)
    ours = refused_by_both(runtime, runc, bundle, words)
    assert ours.startswith(f"config.json: /linux/resources/devices/{len(rules)}"), ours


class WriteWatch:
    """inotify IN_MODIFY on files: counts the writes any process makes to them (cgroup
    files included: every write(2) that succeeds notifies)."""

    def __init__(self, paths: list[str]) -> None:
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        for p in paths:
            assert self.libc.inotify_add_watch(self.fd, p.encode(), 0x2) >= 0, p  # IN_MODIFY

    def writes(self) -> int:
        count = 0
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return count
            count += len(data) // 16  # struct inotify_event, no name for a watched file

    def close(self) -> None:
        os.close(self.fd)


@needs_devices_v1
def test_devices_written_only_when_they_change(runtime, runc, make_bundle, cgroup) -> None:
    """runc reads devices.list and writes only the transition to the rules: a second
    container in a cgroup that already allows exactly its rules writes nothing there (so
    the processes already in it never lose a device). ociruntime wrote "deny all", then
    every rule again."""
    rules = [{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"}]
    for rt in (runc, runtime):
        c = cgroup().make()
        bundle = with_devices(make_bundle, rules, c.path)
        first, second = rt.new_id(), rt.new_id()
        rt("run", "-d", "--bundle", str(bundle.path), first, check=True, timeout=SHORT)
        d = c.dir_of("devices")
        before = devices_list(rt, first, c.path)
        watch = WriteWatch([os.path.join(d, "devices.allow"), os.path.join(d, "devices.deny")])
        try:
            rt("run", "-d", "--bundle", str(bundle.path), second, check=True, timeout=SHORT)
            assert watch.writes() == 0, f"{rt.binary} wrote device rules that did not change"
        finally:
            watch.close()
        assert devices_list(rt, second, c.path) == before
        for cid in (second, first):  # the second shares the cgroup: it spares the first
            assert rt("delete", "--force", cid, timeout=SHORT).returncode == 0


@needs_devices_v1
def test_update_leaves_device_rules_as_runc(runtime, runc, make_bundle) -> None:
    """runc 1.1.5's update skips the devices (SkipDevices): a rule another tool added
    (a GPU plugin) stays, and nothing is written there. Both runtimes, the same."""
    bundle = with_devices(make_bundle, [])
    for rt in (runc, runtime):
        cid = rt.new_id()
        rt("run", "-d", "--bundle", str(bundle.path), cid, check=True, timeout=SHORT)
        d = cgroupfs.paths_of(cgroupfs.placement(None, cid, HIERARCHIES))["devices"]
        Path(d, "devices.allow").write_text("c 1:12 r")
        before = devices_list(rt, cid)
        watch = WriteWatch([os.path.join(d, "devices.allow"), os.path.join(d, "devices.deny")])
        try:
            rt("update", "--pids-limit", "100", cid, check=True, timeout=SHORT)
            assert watch.writes() == 0, rt.binary
        finally:
            watch.close()
        assert devices_list(rt, cid) == before and "c 1:12 r" in before
        assert rt("delete", "--force", cid, timeout=SHORT).returncode == 0


@pytest.mark.pure
def test_device_transition_model() -> None:
    """The model runc's writes come from (devicerules.py), without the kernel: a fresh
    cgroup under an allow-all parent gets a reset and every rule; one already there gets
    nothing; a changed one loses only what goes, before gaining what comes."""
    from ociruntime.cgroups import devicerules

    rules = cgroupfs.device_rules({"devices": [{"allow": False, "access": "rwm"}, {
        "allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]})  # fmt: skip
    target = devicerules.Emulator()
    for allow, rule in rules:
        target.apply(allow, rule)
    fresh = devicerules.Emulator.from_list("a *:* rwm\n").transition(target)
    assert fresh[0] == (False, "a *:* rwm") and (True, "c 1:11 rw") in fresh
    assert len(fresh) == 1 + len(target.rules)
    listed = "\n".join(f"{k[0]} {k[1]}:{k[2]} {p}" for k, p in target.rules.items())
    assert devicerules.Emulator.from_list(listed).transition(target) == []
    changed = devicerules.Emulator.from_list(listed + "\nc 1:12 r\n").transition(target)
    assert changed == [(False, "c 1:12 r")]
    assert devicerules.access("rwa") == "rw" and devicerules.access("mwrr") == "rwm"
