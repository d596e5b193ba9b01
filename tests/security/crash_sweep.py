"""Crash injection: SIGKILL a runtime command at many instants, then check that
`delete --force ID` still removes everything the container had.

    .venv/bin/python tests/security/crash_sweep.py [--count N] [--ops create,start,...]
        [--runtime ociruntime|runc|both] [--json]

For each operation (create, start, exec, delete, update, pause) the sweep first times the
operation as it runs undisturbed (median of 3, from spawn to exit), then for k = 0..N-1
prepares a container (nothing for create; create for start; create + start for the
others), spawns the operation, SIGKILLs it t = k * 1.15 * duration / N after the spawn
(so the kills cover the interpreter's start, every step, and the exit), and then:

  hidden  the state dir exists but `state ID` does not answer with a state, or
          `list -q` omits the id (a container the user cannot see nor name)
  leak    after `delete --force ID` (which must exit 0): a state dir, a cgroup directory
          named after the id anywhere under /sys/fs/cgroup, a mount naming the bundle or
          the state root, a live (non-zombie) process whose cgroup path or command line
          names the id; or (create) the id cannot be created again

One id per operation: each iteration's own `create` also proves the id is reusable.
This process is a child subreaper so that the container processes a killed runtime
orphans become its children: they are reaped after each check (this machine's PID 1
reaps nothing), never before it.

Prints one summary line per runtime and operation, or JSON with --json. Used by
tests/security/test_crash_injection.py (with the counts CI can afford) and, with the
full counts, to write tests/security/RESULTS-crash.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # testkit/ is a directory of the repo, not installed
from testkit import bundles  # noqa: E402
from testkit.processes import reap_children  # noqa: E402

OCIRUNTIME = str(bundles.OCIRUNTIME)
RUNC = "/usr/sbin/runc"
BUILD_ROOTFS = str(bundles.BUILD_ROOTFS)
EXAMPLE_CONFIG = bundles.EXAMPLE_CONFIG
OPS = ("create", "start", "exec", "delete", "update", "pause")
#: What each operation needs before it can run: the commands run undisturbed first.
SETUP = {
    "create": (),
    "start": ("create",),
    "exec": ("create", "start"),
    "delete": ("create", "start"),
    "update": ("create", "start"),
    "pause": ("create", "start"),
}
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def make_bundle(dest: Path, rootfs_template: Path | None) -> Path:
    """A bundle whose process runs until killed."""
    dest.mkdir(parents=True)
    if rootfs_template is not None:
        shutil.copytree(rootfs_template, dest / "rootfs", symlinks=True)
    else:
        subprocess.run([BUILD_ROOTFS, str(dest / "rootfs")], check=True, capture_output=True)
    config = json.loads(EXAMPLE_CONFIG.read_text())
    config["process"]["args"] = ["sleep", "1000"]
    config["process"]["terminal"] = False
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


class Sweep:
    def __init__(
        self, runtime: str, binary: str, work: Path, bundle: Path, signum: int = signal.SIGKILL
    ) -> None:
        self.runtime, self.binary, self.bundle = runtime, binary, str(bundle)
        self.signum = signum  # what "kill" sends (SIGINT: ^C, which must leave no more)
        self.root = f"/run/crash-{runtime}-{uuid.uuid4().hex[:8]}"
        self.work = work

    def argv(self, op: str, cid: str) -> list[str]:
        base = [self.binary, "--root", self.root]
        return (
            base
            + {
                "create": ["create", "--bundle", self.bundle, cid],
                "start": ["start", cid],
                "exec": ["exec", cid, "true"],
                "delete": ["delete", "--force", cid],
                "update": ["update", "--pids-limit", "100", cid],
                "pause": ["pause", cid],
                "state": ["state", cid],
                "list": ["list", "-q"],
            }[op]
        )

    def call(self, op: str, cid: str, timeout: float = 30) -> tuple[int, str, str]:
        """Run to completion (a command still running after `timeout` is killed and
        fails). Output to files: a created init keeps the caller's stdio."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                p = subprocess.run(self.argv(op, cid), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, timeout=timeout)  # fmt: skip
            except subprocess.TimeoutExpired:
                return 124, "", f"{op} still running after {timeout} s: killed"
            out.seek(0)
            err.seek(0)
            return p.returncode, out.read().decode(), err.read().decode()

    def setup(self, op: str, cid: str) -> None:
        for step in SETUP[op]:
            rc, _, err = self.call(step, cid)
            if rc != 0:
                raise SetupFailed(f"{self.runtime} {step} {cid} (before {op}): {err.strip()}")

    def duration(self, op: str, cid: str) -> float:
        """Median seconds from spawn to exit of an undisturbed `op`."""
        times = []
        for _ in range(3):
            self.setup(op, cid)
            t0 = time.perf_counter()
            rc, _, err = self.call(op, cid)
            times.append(time.perf_counter() - t0)
            if rc != 0:
                raise SetupFailed(f"{self.runtime} {op} {cid}: {err.strip()}")
            self.call("delete", cid)
            reap_children()
        return statistics.median(times)

    def kill_at(self, op: str, cid: str, delay: float) -> bool:
        """Spawn `op`, send our signal `delay` s later; False if it did not end within
        30 s after the signal (a command that survives ^C and hangs: then SIGKILLed)."""
        t0 = time.perf_counter()  # as in duration(): from before the spawn
        p = subprocess.Popen(self.argv(op, cid), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        remaining = delay - (time.perf_counter() - t0)
        if remaining > 0:
            time.sleep(remaining)
        p.send_signal(self.signum)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return False
        return True

    def unfinished_create_left_a_process(self, cid: str) -> bool:
        """Did a create killed before it finished leave a container process that does
        not die on its own (given 0.5 s: a SIGKILL on the parent's death is delivered
        asynchronously)? A create that finished (ociruntime: a record without
        `creator`; runc: any state.json) rightly leaves its init."""
        try:
            with open(os.path.join(self.root, cid, "state.json")) as f:
                record = json.load(f)
            if self.runtime == "runc" or record.get("creator") is None:
                return False
        except (OSError, ValueError):
            pass
        import select

        for entry in container_processes(cid):
            try:
                fd = os.pidfd_open(int(entry.split()[0]))
            except ProcessLookupError:
                continue
            try:
                if not select.select([fd], [], [], 0.5)[0]:
                    return True
            finally:
                os.close(fd)
        return False

    def visible(self, cid: str) -> str | None:
        """None if a user can see the container (or there is nothing to see)."""
        if not os.path.isdir(os.path.join(self.root, cid)):
            return None
        rc, out, err = self.call("state", cid)
        if rc != 0:
            return f"state fails: {err.strip()}"
        try:
            json.loads(out)
        except ValueError:
            return f"state prints no JSON: {out!r}"
        rc, out, err = self.call("list", cid)
        if rc != 0 or cid not in out.split():
            return f"list omits it: {err.strip()}"
        return None

    def leftovers(self, cid: str, exiting: list[str] | None = None) -> list[str]:
        found = []
        if os.path.exists(os.path.join(self.root, cid)):
            found.append("state dir")
        for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
            found += [f"cgroup {os.path.join(dirpath, d)}" for d in dirnames if d == cid]
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if self.bundle in line or self.root in line:
                    found.append(f"mount {line.split()[4]}")
        found += [f"process {p}" for p in container_processes(cid, exiting)]
        return found


class SetupFailed(Exception):
    pass


def container_processes(cid: str, exiting: list[str] | None = None) -> list[str]:
    """Live processes whose cgroup path or command line names the container id.

    Zombies do not count, nor (appended to `exiting` instead) processes already inside
    exit(2): a PID-namespace init stays there, with no memory left, until the zombies of
    its namespace are reaped, and an exec'd process whose `exec` was killed is the
    zombie of whoever adopted it (here this sweep, which reaps after the check)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):
                continue
            with open(f"/proc/{name}/cgroup") as f:
                cgroup = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace").split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        in_cgroup = any(
            cid in line.split(":", 2)[-1].removesuffix(" (deleted)").split("/")
            for line in cgroup.splitlines()
        )
        if in_cgroup or cid in cmdline:
            entry = f"{name} ({' '.join(cmdline).strip()[:60]})"
            if int(fields[6]) & 0x4:  # PF_EXITING
                if exiting is not None:
                    exiting.append(entry)
                continue
            out.append(entry)
    return out


def sweep_op(sw: Sweep, op: str, count: int, log=None) -> dict:  # noqa: ANN001
    cid = f"crash-{op}-{uuid.uuid4().hex[:6]}"
    result: dict = {"op": op, "kills": 0, "leaks": 0, "hidden": 0, "delete_failed": 0,
                    "not_reusable": 0, "exiting": 0, "alive_after_kill": 0,
                    "examples": []}  # fmt: skip
    started = time.perf_counter()
    duration = sw.duration(op, cid)
    result["duration_ms"] = round(duration * 1000, 1)
    for k in range(count):
        delay = k * duration * 1.15 / count
        try:
            sw.setup(op, cid)
        except SetupFailed as e:
            result["not_reusable"] += 1
            result["leaks"] += 1
            _example(result, f"t={delay * 1000:.1f}ms: setup: {e}")
            sw.call("delete", cid)
            reap_children()
            continue
        if not sw.kill_at(op, cid, delay):
            result["leaks"] += 1
            _example(result, f"t={delay * 1000:.1f}ms: still running 30 s after the signal")
        result["kills"] += 1
        if op == "create" and sw.unfinished_create_left_a_process(cid):
            result["alive_after_kill"] += 1
        problem = sw.visible(cid)
        if problem:
            result["hidden"] += 1
            _example(result, f"t={delay * 1000:.1f}ms: hidden: {problem}")
        rc, _, err = sw.call("delete", cid)
        if rc != 0:
            result["delete_failed"] += 1
            _example(result, f"t={delay * 1000:.1f}ms: delete --force: {err.strip()}")
        exiting: list[str] = []
        left = sw.leftovers(cid, exiting)
        result["exiting"] += bool(exiting)
        if op == "create" and not left:
            rc, _, err = sw.call("create", cid)
            if rc != 0:
                left.append(f"id not reusable: {err.strip()}")
                result["not_reusable"] += 1
            sw.call("delete", cid)
        if left or rc != 0:
            result["leaks"] += 1
            _example(result, f"t={delay * 1000:.1f}ms: left {left}")
            _force_clean(sw, cid)
        reap_children()
        if log is not None:
            log.write(f"{sw.runtime} {op} t={delay * 1000:.2f}ms: {left or 'clean'}"
                      f"{' exiting ' + str(exiting) if exiting else ''}\n")  # fmt: skip
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _example(result: dict, text: str) -> None:
    if len(result["examples"]) < 5:
        result["examples"].append(text)


def _force_clean(sw: Sweep, cid: str) -> None:
    """After a leak: kill what is left by hand so the next kill starts clean."""
    for entry in container_processes(cid):
        try:
            os.kill(int(entry.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.05)  # no event to wait for on someone else's process
    reap_children()
    sw.call("delete", cid)
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup", topdown=False):
        for d in dirnames:
            if d == cid:
                try:
                    with open(os.path.join(dirpath, d, "freezer.state"), "w") as f:
                        f.write("THAWED")
                except OSError:
                    pass
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError:
                    pass
    shutil.rmtree(os.path.join(sw.root, cid), ignore_errors=True)


def run_sweep(
    runtime: str,
    ops: list[str],
    count: int,
    work: Path,
    rootfs_template: Path | None = None,
    log=None,  # noqa: ANN001
    signum: int = signal.SIGKILL,
) -> list[dict]:
    binary = OCIRUNTIME if runtime == "ociruntime" else RUNC
    bundle = make_bundle(work / f"bundle-{runtime}", rootfs_template)
    sw = Sweep(runtime, binary, work, bundle, signum)
    try:
        return [dict(sweep_op(sw, op, count, log), runtime=runtime) for op in ops]
    finally:
        shutil.rmtree(sw.root, ignore_errors=True)


def summary(r: dict) -> str:
    return (f"{r['runtime']:10} {r['op']:7} kills {r['kills']:4}  leaks {r['leaks']:4}  "
            f"hidden {r['hidden']:4}  delete-failed {r['delete_failed']:3}  "
            f"exiting {r['exiting']:3}  op {r['duration_ms']} ms  "
            f"sweep {r['seconds']} s")  # fmt: skip


def markdown(results: list[dict]) -> str:
    """The table of tests/security/RESULTS-crash.md."""
    rows = ["| runtime | operation | op takes (ms) | kills | leaks | hidden "
            "| delete --force failed "
            "| init left exiting |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        rows.append(
            f"| {r['runtime']} | {r['op']} | {r['duration_ms']} | {r['kills']} | {r['leaks']} "
            f"| {r['hidden']} | {r['delete_failed']} | {r['exiting']} |"
        )
    for rt in sorted({r["runtime"] for r in results}):
        mine = [r for r in results if r["runtime"] == rt]
        rows.append(f"| {rt} | **all** | | {sum(r['kills'] for r in mine)} "
                    f"| {sum(r['leaks'] for r in mine)} | {sum(r['hidden'] for r in mine)} "
                    f"| {sum(r['delete_failed'] for r in mine)} "
                    f"| {sum(r['exiting'] for r in mine)} |")  # fmt: skip
    alive = [f"{r['runtime']} {r['alive_after_kill']}/{r['kills']}" for r in results
             if r["op"] == "create"]  # fmt: skip
    rows.append(f"\nKills of `create` before it finished that left a container process "
                f"running until `delete`: {', '.join(alive)}.")  # fmt: skip
    examples = [f"- {r['runtime']} {r['op']}: {ex}" for r in results for ex in r["examples"][:3]]
    return "\n".join(rows) + "\n\nExamples of what was found:\n\n" + "\n".join(examples) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100, help="kills per operation")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--runtime", choices=("ociruntime", "runc", "both"), default="both")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--from-json", help="print the markdown table of an earlier --json run")
    ap.add_argument("--log", help="a line per kill")
    ap.add_argument("--rootfs-template", help="a busybox rootfs to copy (default: build one)")
    ap.add_argument("--signal", choices=("KILL", "INT", "TERM"), default="KILL",
                    help="the signal each kill sends (default KILL)")  # fmt: skip
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            print(markdown(json.loads(f.read().splitlines()[-1])), end="")
        return 0
    become_subreaper()
    runtimes = ["ociruntime", "runc"] if a.runtime == "both" else [a.runtime]
    log = open(a.log, "w") if a.log else None  # noqa: SIM115
    results = []
    with tempfile.TemporaryDirectory(prefix="crash-sweep-") as work:
        for rt in runtimes:
            template = Path(a.rootfs_template) if a.rootfs_template else None
            signum = getattr(signal, "SIG" + a.signal)
            for r in run_sweep(rt, a.ops.split(","), a.count, Path(work), template, log, signum):
                results.append(r)
                if not a.json:
                    print(summary(r), flush=True)
                    for ex in r["examples"]:
                        print("    " + ex, flush=True)
    if a.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
