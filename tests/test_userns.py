"""User namespaces: the container's root is an unprivileged uid on the host; id-mapped
mounts; rootless containers run by an unprivileged host user (`spec --rootless`).

As with runc, a container in a user namespace must be able to reach its bundle as its
own (mapped) root: the helpers here open the test's directories to everyone and give the
rootfs to the mapped ids, as engines do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import OCIRUNTIME, REPO
from test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    assert_nothing_left,
    expect_error,
    no_leftover_processes,
)
from test_isolation import run_in, run_under_runc
from test_terminal import (  # noqa: F401 - console_socket is a fixture
    EXPECTED,
    _runner,
    console_session,
    console_socket,
    terminal_bundle,
)

HOST_BASE = 100000  # container id 0 is host id HOST_BASE
MAPPING = [{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]
ROOTLESS_UID = 4242  # any unprivileged uid: it needs no passwd entry


def reachable(path: Path) -> None:
    """Let every uid walk down to `path` (pytest makes its temp dirs 0700)."""
    for p in [path, *path.parents]:
        if p == Path("/tmp") or p == Path("/"):
            break
        p.chmod(p.stat().st_mode | 0o755)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    subprocess.run(["chown", "-R", "-h", f"{uid}:{gid}", str(path)], check=True)


@pytest.fixture
def userns_bundle(make_bundle, tmp_path):
    """make(args) -> a bundle with a new user namespace mapping 0 -> HOST_BASE."""

    def make(args: list[str]):
        bundle = make_bundle(args)
        bundle.config["linux"]["namespaces"].append({"type": "user"})
        bundle.config["linux"]["uidMappings"] = MAPPING
        bundle.config["linux"]["gidMappings"] = MAPPING
        chown_tree(bundle.rootfs, HOST_BASE, HOST_BASE)
        reachable(bundle.path)
        return bundle.write()

    return make


def host_ids(pid: int) -> tuple[list[int], list[int]]:
    """Real/effective/saved/fs uids and gids of `pid`, as the host sees them."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return [int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()]


SHOW_IDS = ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"]
MAP_LINE = ["0", str(HOST_BASE), "65536"]


def test_root_inside_is_unprivileged_outside(runtime, userns_bundle):
    """Inside: uid/gid 0 with the configured maps (as under runc). Outside: the init
    belongs to HOST_BASE, before and after start."""
    bundle = userns_bundle(SHOW_IDS)
    inside = run_in(runtime, bundle)
    assert inside.split() == ["0", "0", *MAP_LINE, *MAP_LINE]
    assert inside == run_under_runc(bundle)

    bundle.config["process"]["args"] = ["sleep", "1000"]
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    pid = runtime.state(cid)["pid"]
    assert host_ids(pid) == ([HOST_BASE] * 4, [HOST_BASE] * 4)
    runtime("start", cid, check=True)
    assert host_ids(pid) == ([HOST_BASE] * 4, [HOST_BASE] * 4)
    with open(f"/proc/{pid}/cmdline") as f:
        assert f.read().split("\0")[0] == "sleep"
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")


def test_user_inside_maps_to_its_host_uid(runtime, userns_bundle):
    bundle = userns_bundle(["sleep", "1000"])
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [20]}
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    pid = runtime.state(cid)["pid"]
    assert host_ids(pid) == ([HOST_BASE + 1000] * 4, [HOST_BASE + 1001] * 4)
    with open(f"/proc/{pid}/status") as f:
        groups = next(line for line in f if line.startswith("Groups:"))
    assert groups.split()[1:] == [str(HOST_BASE + 20)]


def test_files_written_inside_belong_to_mapped_ids(runtime, userns_bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, HOST_BASE, HOST_BASE)
    bundle = userns_bundle(["touch", "/shared/by-root"])
    bundle.config["mounts"].append(
        {"destination": "/shared", "type": "bind", "source": str(shared), "options": ["rbind"]}
    )
    bundle.write()
    run_in(runtime, bundle)
    shared.chmod(0o777)
    bundle.config["process"]["args"] = ["touch", "/shared/by-user"]
    bundle.config["process"]["user"] = {"uid": 7, "gid": 8}
    bundle.write()
    run_in(runtime, bundle)
    owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in shared.iterdir()}
    assert owners == {"by-root": (HOST_BASE, HOST_BASE), "by-user": (HOST_BASE + 7, HOST_BASE + 8)}


def test_host_root_files_stay_out_of_reach(runtime, userns_bundle, tmp_path):
    """Container root cannot write a host-root file bound in: it is not host root."""
    secret = tmp_path / "host-file"
    secret.write_text("host\n")
    secret.chmod(0o644)
    bundle = userns_bundle(["sh", "-c", "echo x >> /host-file; echo rc=$?; stat -c %u /host-file"])
    bundle.config["mounts"].append(
        {"destination": "/host-file", "type": "bind", "source": str(secret), "options": ["bind"]}
    )
    bundle.write()
    out = run_in(runtime, bundle)
    assert "rc=1" in out and out.split()[-1] == "65534"  # unmapped owner: the overflow uid
    assert secret.read_text() == "host\n"


def test_time_and_pid_namespaces_belong_to_the_user_namespace(runtime, userns_bundle):
    bundle = userns_bundle(["sh", "-c", "echo $$; cat /proc/uptime"])
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 1000000, "nanosecs": 0}}
    bundle.write()
    pid, uptime = run_in(runtime, bundle).split()[:2]
    assert pid == "1"
    with open("/proc/uptime") as f:
        assert float(uptime) >= float(f.read().split()[0]) + 1000000 - 60


def test_exec_joins_the_user_namespace(runtime, userns_bundle):
    bundle = userns_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    out = runtime("exec", cid, *SHOW_IDS, check=True).stdout
    assert out.split() == ["0", "0", *MAP_LINE, *MAP_LINE]
    out = runtime("exec", "--user", "33:34", cid, "sh", "-c", "id -u; id -g", check=True).stdout
    assert out.split() == ["33", "34"]


def fs_type(path: Path) -> str:
    """The filesystem type of the mount `path` is on (the longest mountpoint prefix)."""
    best, fstype = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mountpoint = left.split()[4]
            inside = (str(path) + "/").startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= len(best):
                best, fstype = mountpoint, right.split()[0]
    return fstype


def test_idmapped_mount_shows_host_files_as_container_ids(runtime, userns_bundle, tmp_path):
    """A host directory owned by root appears owned by the container's root through an
    id-mapped bind (mount_setattr MOUNT_ATTR_IDMAP), and as nobody without one."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    if fs_type(tmp_path) == "tmpfs" and release < (6, 3):
        pytest.skip("tmpfs takes id-mapped mounts from Linux 6.3 on (e.g. tools/vm-lane.sh)")
    data = tmp_path / "data"
    data.mkdir()
    (data / "file").write_text("x")
    os.chown(data / "file", 0, 0)
    os.chown(data, 0, 0)
    bundle = userns_bundle(["sh", "-c", "stat -c '%u %g' /mapped/file /plain/file; "
                                         "touch /mapped/new && echo wrote"])  # fmt: skip
    bundle.config["mounts"] += [
        {"destination": "/mapped", "type": "bind", "source": str(data),
         "options": ["rbind", "idmap"], "uidMappings": MAPPING, "gidMappings": MAPPING},
        {"destination": "/plain", "type": "bind", "source": str(data), "options": ["rbind"]},
    ]  # fmt: skip
    bundle.write()
    out = run_in(runtime, bundle).splitlines()
    assert out == ["0 0", "65534 65534", "wrote"]
    st = os.stat(data / "new")  # written as container root = on disk as host root
    assert (st.st_uid, st.st_gid) == (0, 0)


# --- bad input ----------------------------------------------------------------------------


def _drop(field: str):
    def edit(config: dict) -> None:
        del config["linux"][field]

    return edit


def _set(field: str, value: list):
    def edit(config: dict) -> None:
        config["linux"][field] = value

    return edit


def _idmap_on_tmpfs(config: dict) -> None:
    config["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                             "uidMappings": MAPPING, "gidMappings": MAPPING})  # fmt: skip


USERNS_FAILURES = {
    "no-uid-mappings": (_drop("uidMappings"), ["/linux/uidMappings", "uid mappings"]),
    "no-gid-mappings": (_drop("gidMappings"), ["/linux/gidMappings", "gid mappings"]),
    "root-unmapped": (
        _set("uidMappings", [{"containerID": 1, "hostID": HOST_BASE, "size": 10}]),
        ["/linux/uidMappings", "container uid 0"],
    ),
    "container-overlap": (
        _set("gidMappings", [*MAPPING, {"containerID": 100, "hostID": 300000, "size": 5}]),
        ["/linux/gidMappings/1", "containerID", "overlaps /linux/gidMappings/0"],
    ),
    "host-overlap": (
        _set("uidMappings", [*MAPPING, {"containerID": 70000, "hostID": 100100, "size": 5}]),
        ["/linux/uidMappings/1", "hostID", "overlaps"],
    ),
    "zero-size": (
        _set("uidMappings", [*MAPPING, {"containerID": 70000, "hostID": 300000, "size": 0}]),
        ["/linux/uidMappings/1/size"],
    ),
    "idmap-not-bind": (_idmap_on_tmpfs, ["/mounts/", "only bind mounts"]),
}


@pytest.mark.parametrize("case", list(USERNS_FAILURES))
def test_bad_mappings_are_refused(runtime, userns_bundle, case):
    edit, needles = USERNS_FAILURES[case]
    bundle = userns_bundle(["true"])
    edit(bundle.config)
    bundle.write()
    expect_error(runtime, ["create", "--bundle", str(bundle.path), runtime.new_id()], *needles)
    assert_nothing_left(runtime, bundle)


# --- rootless -----------------------------------------------------------------------------


def as_user(uid: int, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run argv as an unprivileged uid (no groups, no capabilities). Output goes to files:
    a detached container inherits it and would hold a pipe open."""
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, timeout=60,
                           stdin=subprocess.DEVNULL)  # fmt: skip
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, p.returncode, out.read().decode(),
                                           err.read().decode())  # fmt: skip


@pytest.fixture(scope="session")
def rootless_ociruntime(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The runtime as ROOTLESS_UID can start it: the checkout's launcher when that user
    can read it, else (a checkout under a 0700 directory such as /root) a copy of what
    the launcher reads (the package, schemas/, the venv's site-packages) in a temp dir
    everyone can read, with a launcher for the system interpreter the venv points at."""
    if as_user(ROOTLESS_UID, OCIRUNTIME, "--version").returncode == 0:
        return OCIRUNTIME
    from ociruntime import launcher

    top = tmp_path_factory.mktemp("rootless-runtime")
    shutil.copytree(REPO / "ociruntime", top / "ociruntime", symlinks=True)
    shutil.copytree(REPO / "schemas", top / "schemas", symlinks=True)
    paths = [str(top)]
    libs = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    for i, lib in enumerate(libs):
        shutil.copytree(lib, top / f"lib{i}", symlinks=True)
        paths.append(str(top / f"lib{i}"))
    python = os.path.realpath(sys.executable)
    script = top / "ociruntime-launcher"
    script.write_text(launcher.TEMPLATE.format(python=python, paths=paths))
    script.chmod(0o755)
    reachable(top)
    done = as_user(ROOTLESS_UID, str(script), "--version")
    if done.returncode != 0:
        pytest.fail(f"uid {ROOTLESS_UID} cannot start the runtime, not even a copy in {top} "
                    f"with {python}: {done.stderr.strip().splitlines()[-1:]}")  # fmt: skip
    return str(script)


@pytest.fixture
def rootless_bundle(rootfs_template, tmp_path, rootless_ociruntime):
    """A bundle owned by ROOTLESS_UID with the config `ociruntime spec --rootless` wrote
    as that user; yields (bundle dir, state root); deletes what is left afterwards."""
    bundle = tmp_path / "rootless"
    bundle.mkdir()
    shutil.copytree(rootfs_template, bundle / "rootfs", symlinks=True)
    state_root = tmp_path / "state"
    state_root.mkdir()
    chown_tree(tmp_path, ROOTLESS_UID, ROOTLESS_UID)
    reachable(tmp_path)
    spec = as_user(ROOTLESS_UID, rootless_ociruntime, "spec", "--rootless", cwd=bundle)
    assert spec.returncode == 0, spec.stderr
    yield bundle, state_root, rootless_ociruntime
    rt = [rootless_ociruntime, "--root", str(state_root)]
    for cid in os.listdir(state_root):
        as_user(ROOTLESS_UID, *rt, "delete", "--force", cid)
    assert os.listdir(state_root) == []


def test_rootless_spec_runs_as_unprivileged_user(rootless_bundle):
    bundle, state_root, ociruntime = rootless_bundle
    config = json.loads((bundle / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"]
    assert config["linux"]["uidMappings"] == [
        {"containerID": 0, "hostID": ROOTLESS_UID, "size": 1}]  # fmt: skip
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"]
    (bundle / "config.json").write_text(json.dumps(config))
    rt = [ociruntime, "--root", str(state_root)]
    done = as_user(ROOTLESS_UID, *rt, "run", "rl-" + uuid.uuid4().hex[:8], cwd=bundle)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", str(ROOTLESS_UID), "1", "runc"]

    config["process"]["args"] = ["sleep", "1000"]
    (bundle / "config.json").write_text(json.dumps(config))
    cid = "rl-" + uuid.uuid4().hex[:8]
    done = as_user(ROOTLESS_UID, *rt, "run", "-d", cid, cwd=bundle)
    assert done.returncode == 0, done.stderr
    state = json.loads(as_user(ROOTLESS_UID, *rt, "state", cid).stdout)
    assert state["status"] == "running"
    assert host_ids(state["pid"]) == ([ROOTLESS_UID] * 4, [ROOTLESS_UID] * 4)
    assert as_user(ROOTLESS_UID, *rt, "kill", cid, "KILL").returncode == 0
    done = as_user(ROOTLESS_UID, *rt, "delete", "--force", cid)
    assert done.returncode == 0, done.stderr


SUBID_BASE = 200000  # the subordinate range /etc/subuid and /etc/subgid grant ROOTLESS_UID
SUBID_USER = "ociruntime-rootless-test"


@pytest.fixture
def subordinate_ids():
    """ROOTLESS_UID as a named user (newuidmap wants one) with 65536 subordinate ids in
    /etc/subuid and /etc/subgid; all removed afterwards."""
    if not shutil.which("newuidmap"):
        pytest.fail("newuidmap (Debian package uidmap) is needed: tools/test.sh installs it")
    # --system: no subordinate ids of its own (useradd would allocate some otherwise)
    subprocess.run(["groupadd", "--system", "--gid", str(ROOTLESS_UID), SUBID_USER], check=True)
    subprocess.run(["useradd", "--system", "--no-create-home", "--uid", str(ROOTLESS_UID),
                    "--gid", str(ROOTLESS_UID), SUBID_USER], check=True)  # fmt: skip
    line = f"{SUBID_USER}:{SUBID_BASE}:65536\n"
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        saved[path] = Path(path).read_text() if os.path.exists(path) else None
        with open(path, "a") as f:
            f.write(line)
    try:
        yield
    finally:
        for path, text in saved.items():
            if text is None:
                os.unlink(path)
            else:
                Path(path).write_text(text)
        subprocess.run(["userdel", SUBID_USER], check=True)
        subprocess.run(["groupdel", SUBID_USER], check=False)  # userdel may have removed it


def _rootless_run(rootless_bundle: tuple, uid_maps: list[dict], gid_maps: list[dict],
                  args: list[str], user: dict | None = None):  # fmt: skip
    bundle, state_root, ociruntime = rootless_bundle
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["uidMappings"], config["linux"]["gidMappings"] = uid_maps, gid_maps
    config["process"].update(terminal=False, args=args, user=user or {"uid": 0, "gid": 0})
    (bundle / "config.json").write_text(json.dumps(config))
    cid = "rl-" + uuid.uuid4().hex[:8]
    return as_user(ROOTLESS_UID, ociruntime, "--root", str(state_root), "run", cid, cwd=bundle)


def test_rootless_maps_subordinate_ids_with_newuidmap(rootless_bundle, subordinate_ids):
    """More than the caller's own id goes through newuidmap/newgidmap, which allow the
    ranges /etc/subuid and /etc/subgid grant: uid 1000 inside is SUBID_BASE + 999."""
    maps = [{"containerID": 0, "hostID": ROOTLESS_UID, "size": 1},
            {"containerID": 1, "hostID": SUBID_BASE, "size": 65536}]  # fmt: skip
    script = "id -u; cat /proc/self/uid_map; grep ^Uid /proc/self/status"
    done = _rootless_run(rootless_bundle, maps, maps, ["sh", "-c", script],
                         {"uid": 1000, "gid": 1000})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:7] == ["1000", "0", str(ROOTLESS_UID), "1",
                                       "1", str(SUBID_BASE), "65536"]  # fmt: skip


def test_rootless_cannot_map_ids_it_was_not_granted(rootless_bundle, subordinate_ids):
    """Beyond the caller's own id and its subordinate range: newuidmap refuses, and the
    error names the field and says why; nothing is left."""
    state_root = rootless_bundle[1]
    own = [{"containerID": 0, "hostID": ROOTLESS_UID, "size": 1}]
    done = _rootless_run(rootless_bundle, MAPPING, own, ["true"])  # HOST_BASE: not granted
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "/linux/uidMappings" in done.stderr and "newuidmap" in done.stderr
    assert os.listdir(state_root) == []


def test_console_socket_in_a_user_namespace(runtime, make_bundle, console_socket):  # noqa: F811
    """The terminal session of test_terminal, in a user namespace: the same observations
    (the pty belongs to the container's uid 1000 and devpts' gid 5, both mapped)."""
    bundle = terminal_bundle(make_bundle, uid=1000)
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = MAPPING
    bundle.config["linux"]["gidMappings"] = MAPPING
    chown_tree(bundle.rootfs, HOST_BASE, HOST_BASE)
    reachable(bundle.path)
    bundle.write()
    cid = runtime.new_id()
    base = [OCIRUNTIME, "--root", runtime.root, "--log", runtime.log]
    assert console_session(_runner(base, {"c": cid}), console_socket, bundle) == EXPECTED
