"""runc parity (issue #11): behaviours where ociruntime differed from runc 1.1.5.

Real containers, each run under ociruntime and, where runc is installed, under runc with
the same bundle: the test asserts what both do. Everything that could hang runs under a
timeout, and a timeout fails the test.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.build import static_binary
from tests.conftest import OCIRUNTIME

TIMEOUT = 30  #: seconds for any one runtime call: a hang fails the test


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def under_runc(bundle, *args: str, stdin: int | None = subprocess.DEVNULL) -> Outcome:
    """`runc run` of the bundle (with `args` before the id): runc 1.1.5 is the reference."""
    if not shutil.which("runc"):
        pytest.skip("runc (the reference runtime) is not installed")
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    cid = "ref-" + root[-8:]
    try:
        p = subprocess.run(["runc", "--root", root, "run", "--bundle", str(bundle.path), *args,
                            cid], stdin=stdin, capture_output=True, text=True,
                           timeout=TIMEOUT)  # fmt: skip
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", cid],
                       capture_output=True, timeout=TIMEOUT)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    return Outcome(p.returncode, p.stdout, p.stderr)


def under_ours(runtime, bundle, *args: str) -> Outcome:
    """`run` of the bundle under ociruntime (stdin /dev/null, under the timeout)."""
    r = runtime("run", "--bundle", str(bundle.path), *args, runtime.new_id(), timeout=TIMEOUT)
    return Outcome(r.returncode, r.stdout, r.stderr)


# --- item 15: a cwd only root can enter, with a non-root user -------------------------


def cwd_bundle(make_bundle, cwd: str, mode: int, owner: int = 0):
    """A bundle whose process (uid/gid 1000) starts in `cwd`, made with `mode`/`owner`."""
    bundle = make_bundle(["sh", "-c", "pwd; id -u"])
    path = bundle.rootfs / cwd.lstrip("/")
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    shutil.chown(path, owner, owner)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["cwd"] = cwd
    return bundle.write()


@pytest.mark.parametrize(("cwd", "mode", "owner"), [
    ("/root", 0o700, 0),  # only root may enter: runc enters it before the user switch
    ("/home/user", 0o700, 1000),  # the user's own
])  # fmt: skip
def test_cwd_entered_before_and_after_the_user_switch(runtime, make_bundle, cwd, mode, owner):
    bundle = cwd_bundle(make_bundle, cwd, mode, owner)
    ours = under_ours(runtime, bundle)
    assert (ours.returncode, ours.stdout) == (0, f"{cwd}\n1000\n"), ours.stderr
    theirs = under_runc(bundle)
    assert (theirs.returncode, theirs.stdout) == (0, ours.stdout), theirs.stderr


def test_missing_cwd_is_made_as_runc_makes_it(runtime, make_bundle):
    """runc makes a process.cwd the rootfs lacks (mkdir -p, 0755) before the process
    starts; it had failed `No such file or directory`."""
    bundle = make_bundle(["sh", "-c", "pwd; stat -c %a ."])
    bundle.config["process"]["cwd"] = "/no/such/dir"
    bundle.write()
    ours = under_ours(runtime, bundle)
    assert (ours.returncode, ours.stdout) == (0, "/no/such/dir\n755\n"), ours.stderr
    shutil.rmtree(bundle.rootfs / "no")
    theirs = under_runc(bundle)
    assert (theirs.returncode, theirs.stdout) == (0, ours.stdout), theirs.stderr


def test_exec_cwd_only_root_can_enter(runtime, make_bundle):
    """exec's C shares the finalize step: `exec --user 1000 --cwd /root` works too."""
    bundle = cwd_bundle(make_bundle, "/root", 0o700)
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True, timeout=TIMEOUT)
    r = runtime("exec", "--user", "1000:1000", "--cwd", "/root", cid, "pwd", timeout=TIMEOUT)
    assert (r.returncode, r.stdout) == (0, "/root\n"), r.stderr


# --- item 11: no mount namespace --------------------------------------------------------


def without_mount_namespace(make_bundle, *, masks: bool):
    bundle = make_bundle(["true"])
    linux = bundle.config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "mount"]
    if not masks:
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    return bundle.write()


def test_no_mount_namespace_with_masked_paths_refused_in_runcs_words(runtime, make_bundle):
    """runc 1.1.5: `unable to restrict sys entries without a private MNT namespace`."""
    bundle = without_mount_namespace(make_bundle, masks=True)
    words = "unable to restrict sys entries without a private MNT namespace"
    ours = under_ours(runtime, bundle)
    assert ours.returncode == 1 and f"/linux/namespaces: {words}" in ours.stderr, ours.stderr
    theirs = under_runc(bundle)
    assert theirs.returncode == 1 and words in theirs.stderr, theirs.stderr


def test_no_mount_namespace_refused_where_runc_mounts_on_the_host(runtime, make_bundle):
    """Without masks runc runs the config in the caller's mount namespace and leaves the
    rootfs's mounts there (seen here in a throwaway namespace, never the host's): we
    refuse instead (conformance/deviations.py D22), and mount nothing."""
    bundle = without_mount_namespace(make_bundle, masks=False)
    ours = under_ours(runtime, bundle)
    assert ours.returncode == 1, ours.stderr
    assert "/linux/namespaces: a mount namespace is required: without one" in ours.stderr
    assert "mounted in the host's mount namespace" in ours.stderr
    if not shutil.which("runc"):
        return
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    script = (f'runc --root {root} run --bundle {bundle.path} ref-{root[-8:]} </dev/null; '
              f'echo "rc=$?"; grep -c " {bundle.rootfs}" /proc/self/mountinfo')  # fmt: skip
    try:
        p = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c",
                            script], capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rc, mounts = p.stdout.split()[-2:]
    assert rc == "rc=0" and int(mounts) > 0, p.stdout + p.stderr


# --- item 20: the seccomp -ENOSYS stub ---------------------------------------------------

RAWSYSCALL_SOURCE = Path(__file__).with_name("rawsyscall.c")
#: getcpu: a syscall every kernel and libseccomp know, left out of the profile
GETCPU = {"x86_64": 309, "aarch64": 168}
HIGHEST_NAMED = {"x86_64": 334, "aarch64": 293}  #: rseq: the profile names nothing above
NATIVE_ARCHS = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}
ENOSYS, EPERM = 38, 1


@pytest.fixture(scope="session")
def rawsyscall(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_binary(RAWSYSCALL_SOURCE, tmp_path_factory.mktemp("rawsyscall"))


def enosys_bundle(make_bundle, rawsyscall: Path, architectures: bool):
    """A default-ERRNO(EPERM) profile allowing every known syscall up to rseq but getcpu;
    the helper calls 1000 (unknown to all), clone3 (435) and 449 (above the profile's
    highest), getcpu (known, not named) and getpid (allowed)."""
    import pyseccomp

    machine = platform.machine()
    names = set()
    for number in range(HIGHEST_NAMED[machine] + 1):
        try:
            names.add(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, number).decode())
        except ValueError:
            pass
    names.discard("getcpu")
    getpid = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "getpid")
    bundle = make_bundle(["/rawsyscall", "1000", "435", "449", str(GETCPU[machine]),
                          str(getpid)])  # fmt: skip
    shutil.copy(rawsyscall, bundle.rootfs / "rawsyscall")
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": sorted(names), "action": "SCMP_ACT_ALLOW"}]}  # fmt: skip
    if architectures:
        profile["architectures"] = NATIVE_ARCHS[machine]
    bundle.config["linux"]["seccomp"] = profile
    return bundle.write()


def test_seccomp_enosys_for_syscalls_newer_than_the_profile(runtime, make_bundle, rawsyscall):
    """runc's patchbpf: above the highest syscall the profile names, ENOSYS (new glibc
    falls back from clone3 & co. on it); a known syscall it does not name, EPERM."""
    bundle = enosys_bundle(make_bundle, rawsyscall, architectures=True)
    ours = under_ours(runtime, bundle)
    assert ours.returncode == 0, ours.stderr
    errnos = [int(line.split("=")[1]) for line in ours.stdout.split()]
    assert errnos == [ENOSYS, ENOSYS, ENOSYS, EPERM, 0], ours.stdout  # getcpu, getpid last
    theirs = under_runc(bundle)
    assert (theirs.returncode, theirs.stdout) == (0, ours.stdout), theirs.stderr


def test_seccomp_no_stub_without_architectures_as_runc(runtime, make_bundle, rawsyscall):
    """runc 1.1.5 stubs only the listed architectures: none listed, the default EPERM."""
    bundle = enosys_bundle(make_bundle, rawsyscall, architectures=False)
    ours = under_ours(runtime, bundle)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split()[:3] == ["1000=1", "435=1", "449=1"], ours.stdout
    theirs = under_runc(bundle)
    assert (theirs.returncode, theirs.stdout) == (0, ours.stdout), theirs.stderr


def run_stub(program: list[tuple[int, int, int, int]], arch: int, nr: int) -> str:
    """Interpret the stub (its instructions only) for one syscall: "ENOSYS", or "filter"
    when it falls through to libseccomp's program."""
    from ociruntime.security import seccomp_stub as st

    pc, acc = 0, 0
    while pc < len(program):
        code, jt, jf, k = program[pc]
        pc += 1
        if code == st.LD_W_ABS:
            acc = {st.NR: nr, st.ARCH: arch}[k]
        elif code == st.JA:
            pc += k
        elif code == st.RET_K:
            assert k == 0x50000 | ENOSYS
            return "ENOSYS"
        else:
            taken = {st.JEQ_K: acc == k, st.JGT_K: acc > k, st.JSET_K: bool(acc & k)}[code]
            pc += jt if taken else jf
    assert pc == len(program), "a jump past the stub's end"
    return "filter"


@pytest.mark.pure
def test_seccomp_stub_per_architecture() -> None:
    """x86_64 and x32 share one AUDIT_ARCH (bit 30 of the number tells them apart),
    i386 has its own; an architecture the profile does not list falls through."""
    import pyseccomp

    from ociruntime.security import seccomp_stub

    class Log:
        def warning(self, msg: str) -> None:
            raise AssertionError(msg)

    spec = {"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["read", "rseq"], "action": "SCMP_ACT_ALLOW"}]}  # fmt: skip
    stub = seccomp_stub.enosys_stub(pyseccomp, spec, Log())
    x86_64, i386, x32 = 0xC000003E, 0x40000003, 0x40000000
    rseq = {a: pyseccomp.resolve_syscall(getattr(pyseccomp.Arch, a), "rseq")
            for a in ("X86_64", "X86", "X32")}  # fmt: skip
    assert rseq["X32"] & x32
    cases = {
        (x86_64, rseq["X86_64"]): "filter", (x86_64, rseq["X86_64"] + 1): "ENOSYS",
        (x86_64, 1000): "ENOSYS", (x86_64, x32 | 5): "filter",
        (x86_64, rseq["X32"]): "filter", (x86_64, rseq["X32"] + 1): "ENOSYS",
        (i386, rseq["X86"]): "filter", (i386, rseq["X86"] + 1): "ENOSYS",
        (0xC00000B7, 1000): "filter",  # aarch64: not listed
    }  # fmt: skip
    assert {case: run_stub(stub, *case) for case in cases} == cases
    only_64 = dict(spec, architectures=["SCMP_ARCH_X86_64"])
    stub = seccomp_stub.enosys_stub(pyseccomp, only_64, Log())
    assert run_stub(stub, x86_64, x32 | 1000) == "filter"  # x32 is not ours to stub
    assert run_stub(stub, x86_64, 1000) == "ENOSYS"
    for permissive in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        assert (
            seccomp_stub.enosys_stub(pyseccomp, dict(spec, defaultAction=permissive), Log()) == []
        )
    assert seccomp_stub.enosys_stub(pyseccomp, dict(spec, defaultErrnoRet=ENOSYS), Log()) == []


# --- item 9: --debug with --log: the init's records through a log pipe ---------------------


def debug_run(runtime, log: str, cwd: Path, *args: str) -> Outcome:
    """`--debug --log LOG ARGS...` (text format) from `cwd`: LOG may be relative to it.
    Output to files, not pipes: a detached init would hold a pipe open."""
    cmd = [OCIRUNTIME, "--root", runtime.root, "--debug", "--log", log, *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                           timeout=TIMEOUT)  # fmt: skip
        out.seek(0)
        err.seek(0)
        return Outcome(p.returncode, out.read().decode(), err.read().decode())


def test_debug_log_has_the_inits_records_and_its_post_start_failure(runtime, make_bundle,
                                                                    tmp_path):  # fmt: skip
    """The init's debug lines and a failure after start (a startContainer hook) reach the
    --log file (runc: its init's log pipe), not the container's stdio; a relative --log
    and a read-only rootfs make no difference."""
    bundle = make_bundle(["true"])
    bundle.config["root"]["readonly"] = True
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    bundle.write()
    cid = runtime.new_id()
    ours = debug_run(runtime, "relative.log", tmp_path, "run", "--bundle", str(bundle.path), cid)
    log = (tmp_path / "relative.log").read_text()
    assert ours.returncode == 1 and "level=debug" not in ours.stderr, ours.stderr
    hook_failed = "config.json: /hooks/startContainer/0: error running hook #0: /bin/false"
    assert f"{hook_failed}: exit status 1" in ours.stderr
    assert 'level=debug msg="config.json: /process/capabilities/ambient: capability' in log, log
    assert f'level=error msg="{hook_failed}: exit status 1"' in log
    assert under_runc(bundle).returncode == 1


@pytest.mark.parametrize("where", ["relative", "host-only"])
def test_debug_never_fails_an_operation(runtime, make_bundle, tmp_path, where):
    """--debug with a --log path the container cannot have (relative, with a read-only
    rootfs; an absolute host path absent from the rootfs): run, create/start and exec
    all succeed, every record in the host's file."""
    bundle = make_bundle(["sh", "-c", "echo ran"])
    bundle.config["root"]["readonly"] = True
    bundle.write()
    host_dir = tmp_path / "only-on-the-host"
    host_dir.mkdir()
    log = "debug.log" if where == "relative" else str(host_dir / "debug.log")
    bundle_flag = ("--bundle", str(bundle.path))
    ours = debug_run(runtime, log, tmp_path, "run", *bundle_flag, runtime.new_id())
    assert (ours.returncode, ours.stdout) == (0, "ran\n"), ours.stderr
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = runtime.new_id()
    for step in (("create", *bundle_flag, cid), ("start", cid)):
        done = debug_run(runtime, log, tmp_path, *step)
        assert done.returncode == 0, done.stderr
    p = debug_run(runtime, log, tmp_path, "exec", cid, "echo", "exec'd")
    assert (p.returncode, p.stdout) == (0, "exec'd\n"), p.stderr
    text = (tmp_path / log).read_text()
    assert text.count("/process/capabilities/ambient: capability 5 not raised") == 3, text
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    theirs = under_runc(bundle)
    assert theirs.returncode == 0, theirs.stderr


# --- item 4: `run` with process.terminal and no terminal at all ---------------------------


def without_a_terminal(cmd: list[str]) -> Outcome:
    """`cmd` in a new session (no controlling terminal), stdin /dev/null, output to files:
    as from a script or a service. Under the timeout: a hang fails the test."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           start_new_session=True, timeout=TIMEOUT)  # fmt: skip
        out.seek(0)
        err.seek(0)
        return Outcome(p.returncode, out.read().decode(), err.read().decode())


def test_run_terminal_without_any_terminal_fails_at_once(runtime, make_bundle):
    """runc's initHostConsole: none of stderr/stdout/stdin a terminal and no controlling
    one -> `open /dev/tty: no such device or address`, exit 1, nothing made. (An
    interactive shell fed only EOF used to wait forever here.)"""
    bundle = make_bundle(["sh"])
    bundle.config["process"]["terminal"] = True
    bundle.write()
    words = "open /dev/tty: no such device or address"
    cid = runtime.new_id()
    ours = without_a_terminal([OCIRUNTIME, "--root", runtime.root, "run", "--bundle",
                               str(bundle.path), cid])  # fmt: skip
    assert ours.returncode == 1 and f"/process/terminal: {words}" in ours.stderr, ours
    assert len(ours.stderr.splitlines()) == 1
    assert not os.path.exists(os.path.join(runtime.root, cid))
    if not shutil.which("runc"):
        return
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    try:
        theirs = without_a_terminal(["runc", "--root", root, "run", "--bundle",
                                     str(bundle.path), "ref-" + root[-8:]])  # fmt: skip
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", "ref-" + root[-8:]],
                       capture_output=True, timeout=TIMEOUT)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    assert theirs.returncode == 1 and words in theirs.stderr, theirs


# --- item 1: a frozen exec holds no lock -------------------------------------------------


def test_resume_and_state_proceed_while_an_exec_waits_in_a_paused_container(runtime, make_bundle):
    """`exec --ignore-paused` into a paused container blocks (its process is frozen);
    runc lets `state`, `resume` (and `kill`, `pause`) go on meanwhile. ociruntime had
    held the container's lock across that wait: `resume` blocked in flock() forever."""
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True, timeout=TIMEOUT)
    runtime("pause", cid, check=True, timeout=TIMEOUT)
    command = [OCIRUNTIME, "--root", runtime.root, "exec", "--ignore-paused", cid, "echo", "in"]
    waiting = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        state = runtime("state", cid, timeout=TIMEOUT)
        assert state.returncode == 0 and '"paused"' in state.stdout, state
        assert runtime("resume", cid, timeout=TIMEOUT).returncode == 0
        out, _ = waiting.communicate(timeout=TIMEOUT)
        assert (waiting.returncode, out) == (0, "in\n")
    finally:
        waiting.kill()
        waiting.wait()


# --- exec's command-line process: a failure to start it, in runc's words ----------------


def _exec_message(argv: list[str]) -> str:
    """The `msg` of the one error record `exec` logs (text format; stderr)."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT)  # fmt: skip
    assert p.returncode == 255, p
    return p.stderr.split('msg="', 1)[1].rsplit('"', 1)[0]


@pytest.mark.parametrize("program", ["/nonexistent", "/etc", "nonexistent"])
def test_exec_of_a_missing_program_fails_in_runcs_words(runtime, make_bundle, program):
    """`exec ID ARGS...` has no config.json field to blame (the arguments are the
    command line's): the message is runc's, word for word."""
    if not shutil.which("runc"):
        pytest.skip("runc (the reference runtime) is not installed")
    bundle = make_bundle(["sleep", "60"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True, timeout=TIMEOUT)
    ours = _exec_message([OCIRUNTIME, "--root", runtime.root, "exec", cid, program])
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    ref = "ref-" + root[-8:]
    try:
        subprocess.run(["runc", "--root", root, "run", "-d", "--bundle", str(bundle.path), ref],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=TIMEOUT)  # fmt: skip
        theirs = _exec_message(["runc", "--root", root, "exec", ref, program])
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", ref],
                       capture_output=True, timeout=TIMEOUT)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    assert ours == theirs
    assert ours.startswith("exec failed: unable to start container process: exec: ")
