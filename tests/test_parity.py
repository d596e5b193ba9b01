"""runc parity (issue #11): behaviours where ociruntime differed from runc 1.1.5.

Real containers, each run under ociruntime and, where runc is installed, under runc with
the same bundle: the test asserts what both do. Everything that could hang runs under a
timeout, and a timeout fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass

import pytest

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
