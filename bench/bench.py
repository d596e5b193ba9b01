"""Time ociruntime against runc: same run, same bundle, the two runtimes interleaved.

    .venv/bin/python bench/bench.py [--runs N] [--markdown] [--profile]

Every runtime command is a fresh process, exactly as an engine (containerd, CRI-O, Podman)
runs it, timed with `time.perf_counter_ns` around `subprocess` with all stdio on /dev/null.
Scenarios, each timed run by run, the runtimes' order rotating (runc, ociruntime, then
ociruntime, runc, ...):

  run        `run --bundle B ID` of `true`: the container's whole life, deletion included
  lifecycle  `create`, `start`, (poll `state` until stopped: shown, never counted), `delete`
  exec       `exec ID true` into a running container (one per runtime, started untimed)
  hot path   `state` of a created container, `kill ID KILL`, (poll), `delete`
  parallel   20 `create`s started at once, until the last returns
  containerd `ctr run --rm --runc-binary RUNTIME IMAGE ID true` through a private
             containerd (testkit/containerd.py), end to end; skipped if not installed
  memory     peak RSS of the `create` process

`run`, `create` and `exec` also report CPU time, and are run a third way, interleaved with
the other two: "ociruntime unprotected", the same code through a launcher (written to the
temp dir, never installed) that turns ociruntime.security.containersafe's `hide` and
`detach_from_host_files` into no-ops. protected - unprotected is what those protections
cost (issue #9), measured in the same run.

`--profile` instead runs one ociruntime `create` under `python -X importtime` and times the
interpreter's startup floor, to show what a Python runtime's milliseconds are made of.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # testkit/ is a directory of the repo, not installed
from testkit import bundles, containerd, oci_image  # noqa: E402
from testkit.processes import cgroup_procs, command_lines, reap_children  # noqa: E402

PYTHON = REPO / ".venv" / "bin" / "python"
OCIRUNTIME = bundles.OCIRUNTIME
SOURCE_BUNDLE = REPO / "bundles" / "busybox"
BUILD_ROOTFS = bundles.BUILD_ROOTFS
CGROUP_MOUNT = "/sys/fs/cgroup"
WARMUP = 2
WAIT_TIMEOUT_S = 10.0
PR_SET_CHILD_SUBREAPER = 36
DEVNULL = subprocess.DEVNULL
# Container ids are bench<our pid>-<runc|oci>-<scenario>-<n> and the containerd namespace
# (the cgroup parent of its containers) bench<our pid>-ctd: leftovers are attributable.
ID_RE = re.compile(r"^bench(\d+)-(runc|oci|ocinp|ctd)(-|$)")
ROOT_RE = re.compile(r"^bench-(runc|ociruntime|unprotected)-(\d+)$")
# The temp dir (bundle, private containerd) is ociruntime-bench-<our pid>-<random>.
TMP_PREFIX = "ociruntime-bench-"
TMP_RE = re.compile(r"/" + TMP_PREFIX + r"(\d+)-[^/]*/")
CTD_IMAGE = "localhost/bench/busybox:latest"


class BenchError(Exception):
    pass


class Skip(Exception):
    """A scenario that cannot run here; the message says why (shown under the table)."""


class Runtime:
    def __init__(
        self, name: str, short: str, binary: str, root: str, unprotected: bool = False
    ) -> None:
        self.name, self.short, self.binary, self.root = name, short, binary, root
        self.unprotected = unprotected  # only in UNPROTECTED_SCENARIOS

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]


# ---------------------------------------------------------------------------------------
# Running and timing commands


def timed(argv: list[str], stderr: BinaryIO | None = None) -> float:
    """Run argv with stdin, stdout and stderr on /dev/null (or stderr to a file, quoted
    if argv fails); its wall time in ms.

    Never pipes: a `create`d container's init inherits the caller's stdio and would hold a
    pipe open for its whole life.
    """
    return timed_cpu(argv, stderr)[0]


def timed_cpu(argv: list[str], stderr: BinaryIO | None = None) -> tuple[float, float]:
    """timed(), and the CPU time (user + system, ms) of argv's process and of the
    descendants it waited for (wait4's rusage)."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=stderr or DEVNULL)
    _, wstatus, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter_ns() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(wstatus)
    if rc != 0:
        why = "(run it by hand to see why)"
        if stderr is not None:
            stderr.seek(0)
            why = "saying:\n" + stderr.read().decode(errors="replace")[-2000:].rstrip()
        raise BenchError(f"`{shlex.join(argv)}` exited with {rc} {why}")
    return elapsed / 1e6, (usage.ru_utime + usage.ru_stime) * 1e3


def state_pid(rt: Runtime, cid: str) -> int:
    argv = rt.argv("state", cid)
    p = subprocess.run(argv, stdin=DEVNULL, stdout=subprocess.PIPE, stderr=DEVNULL)
    if p.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited with {p.returncode}")
    return int(json.loads(p.stdout)["pid"])


def thread_cpu_ms(pid: int) -> float:
    """CPU time so far of the live threads of pid (/proc/PID/task/*/schedstat, in ns: the
    rusage fields of /proc/PID/stat count in 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just exited
    return total / 1e6


def status(rt: Runtime, cid: str) -> str:
    # `state` starts no process, so capturing its stdout with a pipe is safe.
    argv = rt.argv("state", cid)
    p = subprocess.run(argv, stdin=DEVNULL, stdout=subprocess.PIPE, stderr=DEVNULL)
    if p.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited with {p.returncode}")
    return json.loads(p.stdout)["status"]


def wait_stopped(rt: Runtime, cid: str) -> tuple[float, int]:
    """Poll the runtime's own `state` until the container is stopped: (ms, polls)."""
    t0 = time.perf_counter_ns()
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    polls = 0
    while True:
        polls += 1
        if status(rt, cid) == "stopped":
            return (time.perf_counter_ns() - t0) / 1e6, polls
        if time.monotonic() > deadline:
            raise BenchError(f"{rt.name}: container {cid} not stopped after {WAIT_TIMEOUT_S}s")


def become_subreaper() -> None:
    """Adopt orphaned container inits, as an engine's shim does, so they are reaped here
    (reap_children) whatever this machine's PID 1 does with zombies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Cleanup is not cut short by another Ctrl-C or a SIGTERM: a signal that arrives
    meanwhile takes effect (KeyboardInterrupt, exit 143) once the block is done."""
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if got:
        signal.raise_signal(got[0])


# ---------------------------------------------------------------------------------------
# Scenarios: each runs one container through one runtime and returns {step: ms}


def scenario_run(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    wall, cpu = timed_cpu(rt.argv("run", "--bundle", bundle, cid))
    return {"run": wall, "run cpu": cpu}


def scenario_lifecycle(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    wall, cpu = timed_cpu(rt.argv("create", "--bundle", bundle, cid))
    # The init outlives `create` (nobody waits for it yet): add what it used until it
    # blocked waiting for `start`, read untimed.
    steps = {"create": wall, "create cpu": cpu + thread_cpu_ms(state_pid(rt, cid))}
    steps["start"] = timed(rt.argv("start", cid))
    steps["wait"], steps["polls"] = wait_stopped(rt, cid)
    steps["delete"] = timed(rt.argv("delete", cid))
    steps["total"] = steps["create"] + steps["start"] + steps["delete"]
    return steps


def scenario_hot(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    timed(rt.argv("create", "--bundle", bundle, cid))
    steps = {"state": timed(rt.argv("state", cid))}
    steps["kill"] = timed(rt.argv("kill", cid, "KILL"))
    wait_stopped(rt, cid)  # SIGKILL is asynchronous: delete a container that is gone
    steps["delete"] = timed(rt.argv("delete", cid))
    return steps


@contextmanager
def running_containers(bundle: str, runtimes: list[Runtime]) -> Iterator[dict[str, str]]:
    """One container per runtime running `sleep`, on the bench's rootfs (read-only), for
    the whole exec scenario: {runtime name: container id}. Not timed."""
    sleeper = os.path.join(os.path.dirname(bundle), "sleeper")
    os.mkdir(sleeper)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["args"] = ["sleep", "1000000"]
    config["root"]["path"] = os.path.join(bundle, "rootfs")
    with open(os.path.join(sleeper, "config.json"), "w") as f:
        json.dump(config, f, indent="\t")
    ids = {rt.name: f"bench{os.getpid()}-{rt.short}-sleeper" for rt in runtimes}
    try:
        for rt in runtimes:
            timed(rt.argv("run", "--detach", "--bundle", sleeper, ids[rt.name]))
        yield ids
    finally:
        with signals_deferred():
            for rt in runtimes:
                subprocess.call(rt.argv("delete", "--force", ids[rt.name]), stdin=DEVNULL,
                                stdout=DEVNULL, stderr=DEVNULL)  # fmt: skip
            reap_children()


def scenario_exec(rt: Runtime, ids: dict[str, str], cid: str) -> dict[str, float]:
    wall, cpu = timed_cpu(rt.argv("exec", ids[rt.name], "true"))
    return {"exec": wall, "exec cpu": cpu}


PARALLEL = 20


def scenario_parallel(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    """PARALLEL `create`s started at once (engines start pods and compose stacks this
    way): wall time until the last one returned. Deletion is not timed."""
    ids = [f"{cid}-{k}" for k in range(PARALLEL)]
    t0 = time.perf_counter_ns()
    procs = [
        subprocess.Popen(rt.argv("create", "--bundle", bundle, i), stdin=DEVNULL,
                         stdout=DEVNULL, stderr=DEVNULL)
        for i in ids
    ]  # fmt: skip
    failed = [i for i, p in zip(ids, procs, strict=True) if p.wait() != 0]
    elapsed = (time.perf_counter_ns() - t0) / 1e6
    for i in ids:
        subprocess.call(rt.argv("delete", "--force", i), stdin=DEVNULL, stdout=DEVNULL,
                        stderr=DEVNULL)  # fmt: skip
    if failed:
        raise BenchError(f"{rt.name}: parallel create failed for {failed}")
    return {"create20": elapsed}


MAXRSS_C = r"""
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
/* Run argv and print its peak RSS in KiB. A small C parent, because a child forked or
   vforked from the (large) Python bench inherits the bench's RSS as its high-water mark. */
int main(int argc, char **argv) {
    pid_t pid = fork();
    if (pid == 0) { execv(argv[1], argv + 1); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 126;
    printf("%ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}
"""
_maxrss_tool: list[str] = []


def maxrss_tool() -> str:
    """Compile the peak-RSS helper once (gcc is installed by tools/test.sh)."""
    if not _maxrss_tool:
        workdir = tempfile.mkdtemp(prefix="bench-maxrss-")
        atexit.register(shutil.rmtree, workdir, True)
        src = os.path.join(workdir, "maxrss.c")
        with open(src, "w") as f:
            f.write(MAXRSS_C)
        subprocess.run(["gcc", "-O1", "-o", src[:-2], src], check=True)
        _maxrss_tool.append(src[:-2])
    return _maxrss_tool[0]


def scenario_rss(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    """Peak resident memory of the `create` process itself, in MiB (the container's init
    outlives it and is not counted)."""
    argv = [maxrss_tool(), *rt.argv("create", "--bundle", bundle, cid)]
    with tempfile.TemporaryFile() as out:
        rc = subprocess.call(argv, stdin=DEVNULL, stdout=out, stderr=DEVNULL)
        out.seek(0)
        kib = out.read().split()[0]
    subprocess.call(rt.argv("delete", "--force", cid), stdin=DEVNULL, stdout=DEVNULL,
                    stderr=DEVNULL)  # fmt: skip
    if rc != 0:
        raise BenchError(f"{rt.name}: create exited with {rc}")
    return {"rss": int(kib) / 1024}


@dataclass
class CtrEnv:
    """The containerd scenario's setup: one private containerd, the image imported, and
    a `--runc-root` per runtime (under the temp dir: the shim sees containerd's /run)."""

    ctd: containerd.Containerd
    roots: dict[str, Path]


@contextmanager
def containerd_env(bundle: str, runtimes: list[Runtime]) -> Iterator[CtrEnv]:
    """Start containerd (not timed) for the whole scenario, stop it afterwards."""
    missing = containerd.missing_tools()
    if missing:
        raise Skip(
            f"containerd scenario skipped: {', '.join(missing)} not installed "
            "(`tools/install-clients.sh containerd` installs it)"
        )
    base = Path(bundle).parent / "containerd"
    base.mkdir()
    archive = oci_image.build_oci_archive(Path(bundle) / "rootfs", base / "image.tar", CTD_IMAGE)
    roots = {rt.name: base / f"{rt.name}-root" for rt in runtimes}
    ctd = containerd.Containerd(base, f"bench{os.getpid()}-ctd", roots.values())
    try:
        ctd.start()
        ctd.import_image(archive.path, CTD_IMAGE)
        yield CtrEnv(ctd, roots)
    except containerd.ContainerdError as e:
        raise BenchError(str(e)) from None
    finally:
        with signals_deferred():
            leftovers = ctd.stop()
            reap_children()  # the shims: the bench is their subreaper
            for what in leftovers:
                print(f"bench: cleaned up leftover {what}", file=sys.stderr)


def scenario_containerd(rt: Runtime, env: CtrEnv, cid: str) -> dict[str, float]:
    """`ctr run --rm` of `true`, as a user types it, with the shim running rt's executable
    itself: from ctr's start to its exit (create, start, wait, delete, snapshot, shim)."""
    args = env.ctd.run_args(rt.binary, env.roots[rt.name], "--rm", CTD_IMAGE, cid, "true")
    with tempfile.TemporaryFile() as err:  # ctr's stderr: the reason if it fails
        ms = timed(env.ctd.ctr_argv(*args), stderr=err)
    # Not timed: the shim exits just after ctr; the next run starts on a quiet machine.
    left = env.ctd.check_clean([cid])
    if left:
        raise BenchError(f"{rt.name}: `ctr run --rm` left behind {left}")
    return {"ctr": ms}


@contextmanager
def bundle_only(bundle: str, runtimes: list[Runtime]) -> Iterator[str]:
    yield bundle


# fn(runtime, what setup yields, container id) -> {step: ms}
Scenario = Callable[[Runtime, Any, str], dict[str, float]]
Setup = Callable[[str, list[Runtime]], AbstractContextManager[Any]]
SCENARIOS: list[tuple[str, str, Scenario, Setup]] = [
    ("run", "run", scenario_run, bundle_only),
    ("lifecycle", "cycle", scenario_lifecycle, bundle_only),
    ("exec", "exec", scenario_exec, running_containers),
    ("hot path", "hot", scenario_hot, bundle_only),
    ("parallel", "par", scenario_parallel, bundle_only),
    ("containerd", "ctd", scenario_containerd, containerd_env),
    ("memory", "rss", scenario_rss, bundle_only),
]
# The scenarios "ociruntime unprotected" runs in too.
UNPROTECTED_SCENARIOS = ("run", "lifecycle", "exec")
# (scenario, step key, row label); the "wait" row is shown but never part of a total.
ROWS = [
    ("run", "run", "`run` of `true` (whole life + delete)"),
    ("run", "run cpu", "`run`: **CPU ms** (it and what it waited for)"),
    ("lifecycle", "create", "`create`"),
    ("lifecycle", "create cpu", "`create`: **CPU ms** (it, what it waited for, the init)"),
    ("lifecycle", "start", "`start`"),
    ("lifecycle", "wait", "(poll `state` until stopped; excluded)"),
    ("lifecycle", "delete", "`delete` (stopped)"),
    ("lifecycle", "total", "**create + start + delete**"),
    ("exec", "exec", "`exec ID true` (running container)"),
    ("exec", "exec cpu", "`exec`: **CPU ms** (it and what it waited for)"),
    ("hot path", "state", "`state` (created)"),
    ("hot path", "kill", "`kill ID KILL` (created)"),
    ("hot path", "delete", "`delete` (killed)"),
    ("parallel", "create20", f"{PARALLEL} `create`s at once, until the last returns"),
    ("containerd", "ctr", "`ctr run --rm` of `true` (end to end: ctr, containerd, shim)"),
    ("memory", "rss", "peak RSS of the `create` process (**MiB**, not ms)"),
]


def benchmark(
    runtimes: list[Runtime], bundle: str, runs: int, skipped: list[str]
) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(scenario, step): {runtime name: [ms per measured run]}}; appends to `skipped`
    why a scenario could not run."""
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    me = os.getpid()
    progress = sys.stderr.isatty()
    for scenario, tag, fn, setup in SCENARIOS:
        rts = [rt for rt in runtimes if scenario in UNPROTECTED_SCENARIOS or not rt.unprotected]
        try:
            with setup(bundle, rts) as env:
                for i in range(WARMUP + runs):
                    if progress:
                        print(f"\r{scenario}: {i + 1}/{WARMUP + runs}   ", end="", file=sys.stderr)
                    # ABC BCA CAB ...: machine noise hits every runtime alike, and none
                    # always runs just after another (whose exit may still be settling).
                    k = i % len(rts)
                    for rt in rts[k:] + rts[:k]:
                        steps = fn(rt, env, f"bench{me}-{rt.short}-{tag}-{i}")
                        reap_children()
                        if i < WARMUP:
                            continue
                        for step, ms in steps.items():
                            per = results.setdefault((scenario, step), {})
                            per.setdefault(rt.name, []).append(ms)
        except Skip as e:
            skipped.append(str(e))
            if progress:
                print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
            print(f"bench: {e}", file=sys.stderr)
    if progress:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    return results


# ---------------------------------------------------------------------------------------
# Bundle, roots, cleanup


UNPROTECT = """import ociruntime.security.containersafe as c
c.hide = lambda: None
c.detach_from_host_files = lambda: 0
"""


def unprotected_launcher(parent: str) -> str:
    """.venv/bin/ociruntime with ociruntime.security.containersafe's `hide` and
    `detach_from_host_files` made no-ops before run_and_exit(): the same code, the same
    imports, without those two protections. Written to the temp dir, never installed."""
    text = OCIRUNTIME.read_text()
    if text.count("\nrun_and_exit()\n") != 1:
        raise BenchError(f"{OCIRUNTIME}: no `run_and_exit()` line to patch before")
    path = os.path.join(parent, "ociruntime-unprotected")
    with open(path, "w") as f:
        f.write(text.replace("\nrun_and_exit()\n", "\n" + UNPROTECT + "run_and_exit()\n"))
    os.chmod(path, 0o755)
    return path


def make_bundle(parent: str) -> str:
    bundle = os.path.join(parent, "bundle")
    os.mkdir(bundle)
    with open(SOURCE_BUNDLE / "config.json") as f:
        config = json.load(f)
    config["process"]["args"] = ["true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent="\t")
    subprocess.run(
        [str(BUILD_ROOTFS), os.path.join(bundle, "rootfs")],
        stdin=DEVNULL,
        stdout=DEVNULL,
        check=True,
    )
    return bundle


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_root(rt: Runtime) -> list[str]:
    """`delete -f` every container left in rt's root, then remove the root."""
    left: list[str] = []
    if os.path.isdir(rt.root):
        p = subprocess.run(
            rt.argv("list", "-q"), stdin=DEVNULL, stdout=subprocess.PIPE, stderr=DEVNULL
        )
        for cid in p.stdout.decode().split():
            left.append(f"{rt.name} container {cid}")
            subprocess.call(rt.argv("delete", "-f", cid), stdin=DEVNULL, stdout=DEVNULL)
        reap_children()
        shutil.rmtree(rt.root, ignore_errors=True)
    return left


def clean_cgroups() -> list[str]:
    """Remove cgroups named like a container of this run or of a dead earlier run, after
    killing what still runs in them (an init that never got its `start`)."""
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_MOUNT):
        for d in dirnames:
            m = ID_RE.match(d)
            if m and (int(m.group(1)) == os.getpid() or not pid_alive(int(m.group(1)))):
                found.append(os.path.join(dirpath, d))
    pids = cgroup_procs(found)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    containerd.wait_pids_gone(pids, timeout=5)
    reap_children()
    for path in sorted(found, key=len, reverse=True):  # children first
        for sub, _, _ in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass
    return [f"cgroup {p}" for p in found]


def clean_stale_roots(runc: str) -> None:
    """Roots of earlier runs that died without cleaning up (SIGKILL, power loss...)."""
    for name in sorted(os.listdir("/run")):
        m = ROOT_RE.match(name)
        if not m or pid_alive(int(m.group(2))):
            continue
        # The unprotected launcher went with its temp dir: the state is ociruntime's.
        binary = runc if m.group(1) == "runc" else str(OCIRUNTIME)
        rt = Runtime(m.group(1), m.group(1), binary, os.path.join("/run", name))
        for what in clean_root(rt):
            print(f"bench: removed stale {what} from {rt.root}", file=sys.stderr)


def clean_stale_containerd() -> None:
    """The private containerd and shims of an earlier run that was SIGKILLed (containerd
    gets SIGTERM when the bench dies, its shims do not), then that run's temp dir."""
    procs = []
    for pid, raw in command_lines():
        argv = b"\0".join(raw).decode(errors="replace").split("\0")
        if os.path.basename(argv[0]) not in ("containerd", "containerd-shim-runc-v2"):
            continue
        m = TMP_RE.search(" ".join(argv))
        if m and not pid_alive(int(m.group(1))):
            procs.append(pid)
            print(f"bench: killing stale {argv[0]} (pid {pid})", file=sys.stderr)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    containerd.wait_pids_gone(procs, timeout=5)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = TMP_RE.match(f"/{name}/")
        if m and not pid_alive(int(m.group(1))):
            print(f"bench: removing stale {os.path.join(tmp, name)}", file=sys.stderr)
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def cleanup(runtimes: list[Runtime]) -> None:
    left = [w for rt in runtimes for w in clean_root(rt)]
    left += clean_cgroups()
    for what in left:
        print(f"bench: cleaned up leftover {what}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Reporting


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def describe_machine(runc: str, runs: int, load_before: str, ctd_version: str) -> str:
    def out(argv: list[str]) -> str:
        p = subprocess.run(argv, stdin=DEVNULL, capture_output=True, text=True, cwd=REPO)
        return p.stdout.strip() if p.returncode == 0 else ""

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    runc_version = out([runc, "--version"]).splitlines()
    runc_version = runc_version[0].removeprefix("runc version ") if runc_version else "?"
    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "?"
    # --no-optional-locks: never refresh the index (other people work in this tree).
    dirty = out(["git", "--no-optional-locks", "status", "--porcelain", "--", "ociruntime"])
    if dirty:
        commit += " (+ uncommitted changes in ociruntime/)"
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = f"{os.cpu_count()} CPUs" + (f" ({cpu})" if cpu else "")
    ctd = f"containerd {ctd_version} · " if ctd_version else ""
    return (
        f"{date} · Linux {os.uname().release} · {cpus} · runc {runc_version} · {ctd}"
        f"ociruntime {commit} · Python {sys.version.split()[0]} · "
        f"{runs} runs per runtime after {WARMUP} warm-ups, interleaved · "
        f"load average {load_before} before, {loadavg()} after"
    )


def table_rows(results: dict[tuple[str, str], dict[str, list[float]]]) -> list[list[str]]:
    rows = []
    for scenario, step, label in ROWS:
        if (scenario, step) not in results:  # a skipped scenario
            continue
        per = results[(scenario, step)]
        runc_m, runc_s = mean_sd(per["runc"])
        oci_m, oci_s = mean_sd(per["ociruntime"])
        unprotected, cost = "", ""
        if UNPROTECTED in per:
            un_m, un_s = mean_sd(per[UNPROTECTED])
            unprotected = f"{un_m:.1f} ± {un_s:.1f}"
            cost = f"{oci_m - un_m:+.1f} ({(oci_m - un_m) / un_m * 100:+.0f}%)"
        rows.append(
            [
                scenario,
                label,
                f"{runc_m:.1f} ± {runc_s:.1f}",
                f"{oci_m:.1f} ± {oci_s:.1f}",
                f"{oci_m / runc_m:.2f}×",
                unprotected,
                cost,
            ]
        )
    return rows


UNPROTECTED = "ociruntime unprotected"
HEADER = [
    "Scenario",
    "Step",
    "runc (ms)",
    "ociruntime (ms)",
    "ociruntime/runc",
    "unprotected (ms)",
    "protection cost",
]


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|---|---|--:|--:|--:|--:|--:|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    rows = [[c.replace("`", "").replace("**", "") for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(cells))

    return "\n".join([line(HEADER), line(["-" * w for w in widths]), *map(line, rows)])


def notes(results: dict[tuple[str, str], dict[str, list[float]]], skipped: list[str]) -> str:
    polls = results[("lifecycle", "polls")]
    text = (
        "Mean ± sample stdev over the measured runs; ratio = ociruntime mean / runc mean "
        "(> 1: ociruntime is slower). Polling uses each runtime's own `state` "
        f"(mean polls: runc {statistics.fmean(polls['runc']):.1f}, "
        f"ociruntime {statistics.fmean(polls['ociruntime']):.1f})."
    )
    if any(UNPROTECTED in per for per in results.values()):
        text += (
            " unprotected: ociruntime with `containersafe.hide` and "
            "`containersafe.detach_from_host_files` patched to no-ops by a temporary launcher, "
            "interleaved with the other two; protection cost = ociruntime mean - unprotected "
            "mean (and % of unprotected). CPU: user + system time of the command and the "
            "processes it waited for (wait4); for `create` plus the init's own until it waits "
            "for `start` (/proc/PID/task/*/schedstat)."
        )
    if ("containerd", "ctr") in results:
        text += (
            " containerd: one private containerd for the whole scenario (started and "
            "stopped untimed), `--runc-binary` is the runtime's executable itself, each "
            "runtime with its own `--runc-root`."
        )
    return "\n\n".join([text, *(f"Note: {s}." for s in skipped)])


# ---------------------------------------------------------------------------------------
# --profile


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """`-X importtime` lines as (self us, cumulative us, depth, module), in output order
    (a module's line comes after those of the modules it imported)."""
    entries = []
    for ln in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", ln)
        if m:
            depth = len(m.group(3)) // 2
            entries.append((int(m.group(1)), int(m.group(2)), depth, m.group(4)))
    return entries


def importers(entries: list[tuple[int, int, int, str]], site_end: int) -> list[str]:
    """Who imported each entry: the next entry one level up, or the interpreter's startup
    or the console script for top-level ones."""
    who = []
    for i, (_, _, depth, _) in enumerate(entries):
        if depth == 0:
            who.append("(startup)" if i <= site_end else "(console script)")
            continue
        who.append(next((e[3] for e in entries[i + 1 :] if e[2] == depth - 1), "?"))
    return who


def profile(runc: str, bundle: str, runs: int, oci: Runtime, runc_rt: Runtime) -> str:
    wall, text = _create_under_importtime(bundle, oci)
    entries = parse_importtime(text)
    out, top = _import_report(entries, wall)
    modules = list(dict.fromkeys(e[3] for e in top))
    out += _startup_floor(runc, bundle, runs, oci, runc_rt, modules)
    return "\n".join(out)


def _create_under_importtime(bundle: str, oci: Runtime) -> tuple[float, str]:
    """One `ociruntime create` under `python -X importtime`: its wall time (ms) and the
    importtime lines."""
    me = os.getpid()
    py = str(PYTHON)
    # Warm the page cache and the bundle, then one create under -X importtime.
    timed(oci.argv("create", "--bundle", bundle, f"bench{me}-oci-prof-warm"))
    timed(oci.argv("delete", "--force", f"bench{me}-oci-prof-warm"))
    reap_children()
    cid = f"bench{me}-oci-prof-0"
    argv = [py, "-X", "importtime", str(OCIRUNTIME), *oci.argv("create")[1:]]
    argv += ["--bundle", bundle, cid]
    # stderr to a file, not a pipe: the container's init inherits it.
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter_ns()
        rc = subprocess.call(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=err)
        wall = (time.perf_counter_ns() - t0) / 1e6
        err.seek(0)
        text = err.read()
    if rc != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited with {rc}:\n{text[-2000:]}")
    timed(oci.argv("delete", "--force", cid))
    reap_children()
    return wall, text


def _import_report(
    entries: list[tuple[int, int, int, str]], wall: float
) -> tuple[list[str], list[tuple[int, int, int, str]]]:
    """The lines on what create imported, and its top-level imports."""
    out = []
    # Interpreter startup (encodings, site, .pth files) ends with the top-level `site`.
    site_end = next((i for i, e in enumerate(entries) if e[3] == "site" and e[2] == 0), -1)
    startup_us = sum(e[0] for e in entries[: site_end + 1])
    script_us = sum(e[0] for e in entries[site_end + 1 :])
    who = importers(entries, site_end)
    out.append(f"One `ociruntime create` under `python -X importtime` ({wall:.1f} ms wall):")
    out.append(f"  {len(entries)} modules imported; importtime's (inflated) totals:")
    out.append(f"  {startup_us / 1e3:6.1f} ms  interpreter startup (encodings, site, .pth files)")
    out.append(f"  {script_us / 1e3:6.1f} ms  the console script and ociruntime")
    out.append("")
    out.append("15 most expensive imports, by self time (cumulative includes sub-imports):")
    out.append(f"  {'self ms':>7}  {'cumul ms':>8}  {'module':<30}  imported by")
    ranked = sorted(range(len(entries)), key=lambda i: entries[i][0], reverse=True)
    for i in ranked[:15]:
        self_us, cum_us, _, mod = entries[i]
        out.append(f"  {self_us / 1e3:7.2f}  {cum_us / 1e3:8.2f}  {mod:<30}  {who[i]}")
    top = [e for e in entries[site_end + 1 :] if e[2] == 0]
    out.append("")
    out.append("Top-level imports of the console script, by cumulative time:")
    for _, cum_us, _, mod in sorted(top, key=lambda e: e[1], reverse=True):
        out.append(f"  {cum_us / 1e3:7.2f}  {mod}")
    out.append("")
    return out, top


def _startup_floor(
    runc: str, bundle: str, runs: int, oci: Runtime, runc_rt: Runtime, modules: list[str]
) -> list[str]:
    """The lines on the startup floors, `modules` imported without importtime, and the real
    create, interleaved."""
    me = os.getpid()
    py = str(PYTHON)
    out = []
    # Startup floors, the same imports without importtime, and the real thing: interleaved.
    import_all = "import " + ", ".join(modules)

    def create_delete(rt: Runtime) -> Callable[[int], float]:
        def go(i: int) -> float:
            cid = f"bench{me}-{rt.short}-floor-{i}"
            ms = timed(rt.argv("create", "--bundle", bundle, cid))
            timed(rt.argv("delete", "--force", cid))
            reap_children()
            return ms

        return go

    cases: list[tuple[str, Callable[[int], float]]] = [
        ("python -I -S -c pass", lambda i: timed([py, "-I", "-S", "-c", "pass"])),
        ("python -c pass", lambda i: timed([py, "-c", "pass"])),
        ("python -c 'import <create's modules>'", lambda i: timed([py, "-c", import_all])),
        ("ociruntime --version", lambda i: timed([str(OCIRUNTIME), "--version"])),
        ("ociruntime create", create_delete(oci)),
        ("runc --version", lambda i: timed([runc, "--version"])),
        ("runc create", create_delete(runc_rt)),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for i in range(WARMUP + runs):
        for name, fn in cases:
            ms = fn(i)
            if i >= WARMUP:
                times[name].append(ms)
    mean = {name: statistics.fmean(ts) for name, ts in times.items()}
    out.append(f"Startup floor ({runs} runs each, interleaved, after {WARMUP} warm-ups):")
    for name, _ in cases:
        m, sd = mean_sd(times[name])
        out.append(f"  {name:<38} {m:6.1f} ± {sd:4.1f} ms")
    out.append(f"  (<create's modules> = {', '.join(modules)})")
    out.append("")
    floor, imports = mean["python -c pass"], mean["python -c 'import <create's modules>'"]
    create = mean["ociruntime create"]
    out.append(
        f"So one `ociruntime create` ({create:.1f} ms; runc: {mean['runc create']:.1f} ms) is"
    )
    out.append(
        f"  {floor:6.1f} ms  Python interpreter startup (of which `-I -S` floor: "
        f"{mean['python -I -S -c pass']:.1f} ms)"
    )
    out.append(f"  {imports - floor:6.1f} ms  importing the console script's modules")
    out.append(
        f"  {create - imports:6.1f} ms  everything else: the work, forking the init, "
        "the init's setup"
    )
    return out


# ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="measured runs per runtime (20)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument(
        "--profile", action="store_true", help="import profile of create + startup floor"
    )
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--json", metavar="FILE", help="also write every measured run to FILE")
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (for a stdev)")
    if os.geteuid() != 0:
        ap.error("must run as root (runtimes need it)")
    for path in (args.runc, str(OCIRUNTIME)):
        if not os.access(path, os.X_OK):
            ap.error(f"{path}: not executable")
    return args


def prepare_host(runc: str) -> None:
    """Byte-compiled modules, SIGTERM handled, this process a subreaper, and nothing left
    of an earlier run."""
    # Measure what engines run: byte-compiled modules. PYTHONDONTWRITEBYTECODE (or a
    # legacy install) can leave ociruntime or a dependency in the venv (prctl.py) without
    # .pyc, and then every invocation recompiles it.
    site_packages = [str(p) for p in REPO.glob(".venv/lib/python3*/site-packages")]
    subprocess.run(
        [str(PYTHON), "-m", "compileall", "-q", str(REPO / "ociruntime"), *site_packages],
        stdout=DEVNULL,
        check=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so cleanup runs
    become_subreaper()
    clean_stale_containerd()
    clean_stale_roots(runc)
    clean_cgroups()


def main() -> int:
    args = parse_args()
    prepare_host(args.runc)
    me = os.getpid()
    runc = Runtime("runc", "runc", args.runc, f"/run/bench-runc-{me}")
    oci = Runtime("ociruntime", "oci", str(OCIRUNTIME), f"/run/bench-ociruntime-{me}")
    runtimes = [runc, oci]
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{me}-")
    try:
        runtimes.append(
            Runtime(UNPROTECTED, "ocinp", unprotected_launcher(tmp),
                    f"/run/bench-unprotected-{me}", unprotected=True)
        )  # fmt: skip
        bundle = make_bundle(tmp)
        if args.profile:
            text = profile(args.runc, bundle, args.runs, oci, runc)
            print(f"```\n{text}\n```" if args.markdown else text)
            return 0
        load_before = loadavg()
        skipped: list[str] = []
        results = benchmark(runtimes, bundle, args.runs, skipped)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({f"{sc}/{st}": per for (sc, st), per in results.items()}, f)
        ctd_version = containerd.version() if ("containerd", "ctr") in results else ""
        print(describe_machine(args.runc, args.runs, load_before, ctd_version))
        print()
        print(render(table_rows(results), args.markdown))
        print()
        text = notes(results, skipped)
        print(text if args.markdown else text.replace("`", ""))
        return 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        with signals_deferred():
            cleanup(runtimes)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
