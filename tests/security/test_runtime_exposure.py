"""Issue #9, findings 1 and 2: a container must not reach the host through the runtime's
own processes (CVE-2019-5736 and its kin: /proc/<pid>/exe, map_files, fd, root, cwd).

Each attack runs from inside a real container against ociruntime running under a private
copy of the interpreter (a `venv --copies` in a temp dir), never the real one, and against
a private build of the compiled launcher (ociruntime/launcher.c: there the launcher is the
interpreter). Each has a
control: the same attack against a deliberately unprotected build of the same code (the
protections patched out in its launcher), which must succeed, so these tests can fail.
The map_files attack only *opens* host files for writing and writes nothing, so even the
control leaves them as they were.

The same attacks against runc 1.1.5 (a private copy of the binary) are in
`test_runc_1_1_5_for_comparison`; STATUS.md's Security section shows both.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO, Runtime, cgroup_dirs_named

from ociruntime import launcher

RUNC = shutil.which("runc") or "/usr/sbin/runc"
ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip


def _host_bounding_set() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)


#: Every capability this host can give (root here lacks CAP_SYS_RESOURCE, for one).
ALL_CAPS = [name for bit, name in enumerate(ALL_CAPS) if _host_bounding_set() >> bit & 1]

LAUNCHER = """#!{python} -IS
import sys
sys.path[0:0] = {paths!r}
{patch}
from ociruntime.cli import run_and_exit
run_and_exit()
"""
#: The control build: the same code with the protections of ociruntime.security.containersafe off.
UNPROTECTED = """import ociruntime.security.containersafe as containersafe
containersafe.hide = lambda: None
containersafe.detach_from_host_files = lambda: 0"""

#: In the container: open the init's /proc/1/exe now, and once the test says so (the
#: container started: the init no longer runs that file), write through the open fd.
EXE_ATTACK = """
attack() {
    echo opened > /tmp/sync
    while [ ! -e /tmp/go ]; do sleep 0.01; done
    if echo pwned >> /proc/self/fd/3; then result=written; else result=refused; fi
    echo $result > /tmp/sync
    return 0
}
attack 3</proc/1/exe 2>/dev/null || echo noopen > /tmp/sync
"""
#: In the container, with every capability: how many of the init's mapped files, fds,
#: root and cwd open for writing. Opening writes nothing, so no file changes.
MAPPED_FILES_ATTACK = """
n=0
for f in /proc/1/map_files/* /proc/1/exe; do (: >> "$f") 2>/dev/null && n=$((n+1)); done
echo "writable=$n"
echo "mapped=$(ls /proc/1/map_files 2>/dev/null | wc -l)"
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def interpreter_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose python is a copy of the host's: the file the attacks aim at."""
    venv = tmp_path_factory.mktemp("venv-copy") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--copies", "--without-pip", str(venv)],
                   check=True)  # fmt: skip
    return venv


def private_runtime(venv: Path, protected: bool, tmp_path: Path) -> tuple[str, Path]:
    """A launcher for ociruntime under the venv's own python copy (made afresh, so that
    every test attacks a file nobody else runs): (launcher path, interpreter path)."""
    python = tmp_path / "python3"
    shutil.copy2(venv / "bin" / "python3", python)
    (tmp_path / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    launcher = tmp_path / ("ociruntime" if protected else "ociruntime-unprotected")
    patch = "" if protected else UNPROTECTED
    launcher.write_text(LAUNCHER.format(python=python, paths=[str(REPO), str(site)], patch=patch))
    launcher.chmod(0o755)
    return str(launcher), python


def private_compiled(protected: bool, tmp_path: Path) -> tuple[str, Path]:
    """The compiled launcher (ociruntime/launcher.c), built afresh: it is the interpreter
    there, the file the attacks aim at. (launcher path, that same path)."""
    binary = tmp_path / ("ociruntime" if protected else "ociruntime-unprotected")
    launcher.build(str(binary), prelude="" if protected else UNPROTECTED + "\n")
    return str(binary), binary


@pytest.fixture(params=["script", "compiled"])
def private(request, runtime: Runtime, interpreter_copy: Path, tmp_path: Path):
    """private(protected) -> (runtime driving that build, the interpreter file it runs):
    under the script launcher (a copy of the interpreter) and as the compiled launcher."""

    def make(protected: bool) -> tuple[Runtime, Path]:
        where = tmp_path / ("protected" if protected else "unprotected")
        where.mkdir()
        if request.param == "compiled":
            runtime.binary, python = private_compiled(protected, where)
        else:
            runtime.binary, python = private_runtime(interpreter_copy, protected, where)
        return runtime, python

    return make


def read_fifo(path: Path, timeout: float = 30) -> str:
    """One message the container writes into a fifo of its rootfs (an event, not a
    sleep: the kernel reports no hang-up before a writer came)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"nothing came through {path} within {timeout} s"
        return os.read(fd, 4096).decode().strip()
    finally:
        os.close(fd)


def process_json(bundle, args: list[str], caps: list[str] | None = None) -> str:
    proc = dict(bundle.config["process"], args=args, terminal=False)
    if caps is not None:
        proc["capabilities"] = {s: caps for s in ("bounding", "effective", "permitted")}
    path = bundle.path / f"process-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(proc))
    return str(path)


def init_pid(rt: Runtime, cid: str) -> int:
    return rt.state(cid)["pid"]


# -- 1. /proc/1/exe of a created container -------------------------------------------


def exe_attack(rt: Runtime, bundle, caps: list[str] | None) -> str:
    """Create, let a container process open /proc/1/exe, start (the init execs the user
    program), then have it write through the fd it kept. Returns what it reported."""
    bundle.config["process"]["args"] = ["sleep", "1000"]
    bundle.write()
    os.mkfifo(bundle.rootfs / "tmp" / "sync")
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.path), cid, check=True)
    attacker = process_json(bundle, ["sh", "-c", EXE_ATTACK], caps)
    rt("exec", "-d", "--process", attacker, cid, check=True)
    opened = read_fifo(bundle.rootfs / "tmp" / "sync")
    if opened != "opened":
        return opened
    rt("start", cid, check=True)
    (bundle.rootfs / "tmp" / "go").touch()
    return read_fifo(bundle.rootfs / "tmp" / "sync")


@pytest.mark.parametrize("caps", [None, ALL_CAPS], ids=["default-caps", "all-caps"])
def test_init_exe_cannot_be_overwritten(private, make_bundle, caps) -> None:
    rt, python = private(protected=True)
    before = sha256(python)
    outcome = exe_attack(rt, make_bundle(), caps)
    # Default capabilities: the init is not dumpable, so its exe cannot even be opened;
    # every capability: it opens an empty sealed memfd, not the interpreter.
    assert outcome == ("noopen" if caps is None else "refused")
    assert sha256(python) == before


def test_control_unprotected_init_exe_is_overwritten(private, make_bundle) -> None:
    """The same attack succeeds without the protections: the test above can fail."""
    rt, python = private(protected=False)
    before = sha256(python)
    assert exe_attack(rt, make_bundle(), None) == "written"
    assert sha256(python) != before
    assert python.read_bytes().endswith(b"pwned\n")


# -- 1. #!/proc/self/exe -------------------------------------------------------------


def shebang_self(bundle) -> None:
    evil = bundle.rootfs / "evil"
    evil.write_text("#!/proc/self/exe\n")
    evil.chmod(0o755)


def test_shebang_proc_self_exe_runs_no_host_binary(private, make_bundle) -> None:
    """The init and an exec'd process executing `#!/proc/self/exe` get an empty file
    (exec format error), never the host's interpreter."""
    rt, python = private(protected=True)
    before = sha256(python)
    bundle = make_bundle(["/evil"])
    shebang_self(bundle)
    result = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert result.returncode != 0
    assert "Python" not in result.stdout + result.stderr
    assert "exec format error" in result.stderr.lower()

    bundle = make_bundle(["sleep", "1000"], name="running")
    shebang_self(bundle)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    result = rt("exec", cid, "/evil")
    assert result.returncode == 255
    assert "Python" not in result.stdout + result.stderr
    assert "exec format error" in result.stderr.lower()
    assert sha256(python) == before


def test_control_unprotected_shebang_reaches_the_host_interpreter(private, make_bundle) -> None:
    """Without the protections /proc/self/exe is the host's interpreter: the kernel runs
    it inside the container (Debian's 6.1 does; it then dies for want of its standard
    library there) or, where it refuses an interpreter outside the caller's mount
    namespace (this 6.18 host: ENOENT), fails otherwise than on an empty file."""
    rt, _ = private(protected=False)
    bundle = make_bundle(["sleep", "1000"])
    shebang_self(bundle)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    output = (lambda r: r.stdout + r.stderr)(rt("exec", cid, "/evil"))
    assert "exec format error" not in output.lower()
    assert "Python" in output or "No such file or directory" in output


# -- 1. map_files, with every capability ----------------------------------------------


def mapped_files_attack(rt: Runtime, bundle) -> dict[str, int]:
    bundle.config["process"]["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.path), cid, check=True)
    attacker = process_json(bundle, ["sh", "-c", MAPPED_FILES_ATTACK], ALL_CAPS)
    out = rt("exec", "--process", attacker, cid, check=True).stdout
    return {k: int(v) for k, v in (line.split("=") for line in out.split())}


def test_no_mapped_file_of_the_init_is_writable(private, make_bundle) -> None:
    rt, _ = private(protected=True)
    seen = mapped_files_attack(rt, make_bundle())
    # The interpreter, libc... are there, read-only, or (where overlayfs cannot stack
    # on the host's filesystem, as in the v2 lane's VM) copied: no map_files entry.
    assert seen["writable"] == 0


def test_control_unprotected_mapped_files_are_writable(private, make_bundle) -> None:
    rt, _ = private(protected=False)
    assert mapped_files_attack(rt, make_bundle())["writable"] > 0


def test_mapped_files_are_read_only_overlays_or_anonymous(runtime, make_bundle) -> None:
    """Seen from the host: what the created container's init maps is reached through a
    read-only overlayfs (or was copied), and its exe is a sealed memfd."""
    bundle = make_bundle(["true"])
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    pid = init_pid(runtime, cid)
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:")
    for name in os.listdir(f"/proc/{pid}/map_files"):
        fd = os.open(f"/proc/{pid}/map_files/{name}", os.O_RDONLY)
        try:
            fstype = subprocess.run(
                ["stat", "-f", "-c", "%T", f"/proc/self/fd/{fd}"],
                capture_output=True,
                text=True,
                pass_fds=[fd],
            ).stdout
        finally:
            os.close(fd)  # fmt: skip
        assert fstype.strip() == "overlayfs", (name, os.readlink(f"/proc/{pid}/map_files/{name}"))


# -- 2. fds, root and cwd of the created container's init ------------------------------


def test_created_init_holds_no_host_fd_root_or_cwd(runtime, make_bundle) -> None:
    bundle = make_bundle(["true"])
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    pid = init_pid(runtime, cid)
    fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    extra = {n: target for n, target in fds.items() if n > 2}
    # The exec fifo (until start) and the container's own /proc/1/fd to reopen it by
    # (ociruntime.security.procfs.fd_dir), nothing else: no namespace, host directory or socket.
    assert sorted(extra.values()) == ["/proc/1/fd", f"{runtime.root}/{cid}/exec.fifo"], extra
    rootfs_listing = sorted(os.listdir(bundle.rootfs))
    assert sorted(os.listdir(f"/proc/{pid}/root")) == rootfs_listing
    assert os.stat(f"/proc/{pid}/cwd").st_ino == os.stat(f"/proc/{pid}/root").st_ino


# -- 2. exec: no process the container can see has the host's root ----------------------


def pid_ns(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def test_exec_is_never_visible_with_the_host_root(runtime, make_bundle) -> None:
    """Freeze an `exec` half-way (the container is paused: its process stops as soon as
    it joins the cgroup) and look at every process of the container's PID namespace."""
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    init = init_pid(runtime, cid)
    dirs = cgroup_dirs_named({cid})  # the freezer's (v1), or the only one (v2)
    procs_file = Path(next((d for d in dirs if "/freezer/" in d), dirs[0]), "cgroup.procs")
    interpreter = os.stat(os.path.realpath(sys.executable))
    runtime("pause", cid, check=True)
    cmd = [runtime.binary, "--root", runtime.root, "exec", "--ignore-paused", cid, "true"]
    execing = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        joined = _wait_for_new_member(procs_file, {str(init)})
        container_root = os.stat(f"/proc/{init}/root/")
        for pid in [init, *joined]:
            if pid_ns(pid) != pid_ns(init):
                continue  # not visible from inside the container
            root = os.stat(f"/proc/{pid}/root/")
            assert (root.st_dev, root.st_ino) == (container_root.st_dev, container_root.st_ino)
            exe = os.stat(f"/proc/{pid}/exe")
            assert (exe.st_dev, exe.st_ino) != (interpreter.st_dev, interpreter.st_ino)
    finally:
        runtime("resume", cid, check=True)
        assert execing.wait(timeout=60) == 0


def _wait_for_new_member(procs_file: Path, known: set[str]) -> list[int]:
    """The pids that joined the cgroup besides `known` (waits on inotify-less polling of
    the kernel's list, bounded: the exec joins within milliseconds)."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        members = set(procs_file.read_text().split()) - known
        if members:
            return [int(p) for p in members]
        os.sched_yield()
    raise AssertionError("the exec never joined the container's cgroup")


# -- runc 1.1.5, the same attacks, for STATUS.md's table ------------------------------


def runc_version() -> str:
    if not os.path.exists(RUNC):
        return ""
    return subprocess.run([RUNC, "--version"], capture_output=True, text=True).stdout


@pytest.mark.skipif("1.1.5" not in runc_version(), reason="runc 1.1.5 is the reference")
def test_runc_1_1_5_for_comparison(make_bundle, tmp_path) -> None:
    """What the same attacks find in runc 1.1.5 (a private copy of its binary). These
    are STATUS.md's figures: runc protects its exe (a sealed memfd copy of itself) but
    its init still maps the host's libc and libseccomp, which a container holding every
    capability can open for writing."""
    runc = tmp_path / "runc"
    shutil.copy2(RUNC, runc)
    before = sha256(runc)
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Output through files: a created container's init would hold pipes open."""
        with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as err:
            done = subprocess.run([str(runc), "--root", root, *args], stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
            out.seek(0), err.seek(0)
            done.stdout, done.stderr = out.read(), err.read()
        assert not check or done.returncode == 0, done.stderr
        return done

    ids: list[str] = []
    try:
        bundle = make_bundle(["sleep", "1000"])
        ids.append(cid := f"runc-{uuid.uuid4().hex[:8]}")
        run("create", "--bundle", str(bundle.path), cid)
        attacker = process_json(bundle, ["sh", "-c", MAPPED_FILES_ATTACK], ALL_CAPS)
        out = run("exec", "--process", attacker, cid).stdout
        seen = {k: int(v) for k, v in (line.split("=") for line in out.split())}
        assert seen["writable"] > 0  # runc 1.1.5: host libraries open for writing
        state = json.loads(run("state", cid).stdout)
        fds = os.listdir(f"/proc/{state['pid']}/fd")
        assert len(fds) > 3 + 1  # more than stdio and the exec fifo (its log and init pipes)
        # Its own binary it reaches through a detached read-only bind mount (1.1.5's
        # try_bindfd): the same file, not writable through that link.
        with pytest.raises(OSError):
            os.close(os.open(f"/proc/{state['pid']}/exe", os.O_WRONLY | os.O_APPEND))
        bundle = make_bundle(["sleep", "1000"], name="shebang")
        shebang_self(bundle)
        ids.append(cid := f"runc-{uuid.uuid4().hex[:8]}")
        run("run", "-d", "--bundle", str(bundle.path), cid)
        out = run("exec", cid, "/evil", check=False)
        assert sha256(runc) == before  # the memfd copy ran, or nothing did
    finally:
        for cid in ids:
            subprocess.run([str(runc), "--root", root, "delete", "--force", cid],
                           capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
