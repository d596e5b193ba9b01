"""What every scenario of bench/bench.py measures with: a runtime's command line, one
command timed (wall and CPU), its peak RSS, the runtime's own `state`, and the signal
handling that keeps cleanup whole."""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

DEVNULL = subprocess.DEVNULL
#: Runs per runtime and scenario before the measured ones (not counted).
WARMUP = 2
WAIT_TIMEOUT_S = 10.0
PR_SET_CHILD_SUBREAPER = 36


class BenchError(Exception):
    pass


class Skip(Exception):
    """A scenario that cannot run here; the message says why (shown under the table)."""


class Runtime:
    def __init__(
        self, name: str, short: str, binary: str, root: str, unprotected: bool = False
    ) -> None:
        self.name, self.short, self.binary, self.root = name, short, binary, root
        self.unprotected = unprotected  # only in the scenarios that say so

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]


# ---------------------------------------------------------------------------------------
# Running and timing commands
#
# Every command runs in a process group of its own (as under an engine's shim, which runs
# in a session of its own): a Ctrl-C in the terminal reaches the bench only, never a
# runtime halfway through its work (which then would leave the state cleanup has to
# deal with). The bench then lets the commands in flight finish (finish()) before it
# cleans up.

#: How long an interrupted bench waits for a command in flight before killing it.
FINISH_TIMEOUT_S = 30.0


def spawn(argv: list[str], stdout: Any = DEVNULL, stderr: Any = DEVNULL,
          env: dict | None = None) -> subprocess.Popen:  # fmt: skip
    """Start argv, stdin on /dev/null, in a process group of its own."""
    return subprocess.Popen(argv, stdin=DEVNULL, stdout=stdout, stderr=stderr, env=env,
                            process_group=0)  # fmt: skip


def finish(procs: list[subprocess.Popen]) -> None:
    """After an interruption (Ctrl-C, SIGTERM): wait for these commands to exit, killing
    those that still run after FINISH_TIMEOUT_S; another signal meanwhile is deferred."""
    with signals_deferred():
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_all(procs: list[subprocess.Popen]) -> list[int]:
    """Their exit statuses; if interrupted, finish() them first."""
    try:
        return [p.wait() for p in procs]
    except BaseException:
        finish(procs)
        raise


#: Untimed quiet before each timed command (`settle`). The kernel's first cgroup
#: migration after a quiet spell waits for an RCU grace period (8-20 ms here, cgroup
#: v1); a migration that follows another within about a grace period does not. Back to
#: back, a command would inherit the window the previous one (often the other
#: runtime's) left open, so whoever migrates earliest in its run gains: measured here,
#: runc's `run` took 16 ms right after ours, 28-33 ms after 20 ms of quiet or more (and
#: ours 24.5 vs 37 ms). Every timed command starts from the same quiet kernel instead.
SETTLE_S = 0.05


def settle() -> None:
    """Let the kernel's cgroup rcu_sync go idle again (SETTLE_S); never timed."""
    time.sleep(SETTLE_S)


def timed(argv: list[str], stderr: BinaryIO | None = None, env: dict | None = None) -> float:
    """Run argv with stdin, stdout and stderr on /dev/null (or stderr to a file, quoted
    if argv fails); its wall time in ms.

    Never pipes: a `create`d container's init inherits the caller's stdio and would hold a
    pipe open for its whole life.
    """
    return timed_cpu(argv, stderr, env)[0]


def timed_cpu(
    argv: list[str], stderr: BinaryIO | None = None, env: dict | None = None
) -> tuple[float, float]:
    """timed(), and the CPU time (user + system, ms) of argv's process and of the
    descendants it waited for (wait4's rusage). Starts after `settle`."""
    settle()
    t0 = time.perf_counter_ns()
    p = spawn(argv, stderr=stderr or DEVNULL, env=env)
    try:
        _, wstatus, usage = os.wait4(p.pid, 0)
    except BaseException:
        finish([p])
        raise
    elapsed = time.perf_counter_ns() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(wstatus)
    if rc != 0:
        why = "(run it by hand to see why)"
        if stderr is not None:
            stderr.seek(0)
            why = "saying:\n" + stderr.read().decode(errors="replace")[-2000:].rstrip()
        raise BenchError(f"`{shlex.join(argv)}` exited with {rc} {why}")
    return elapsed / 1e6, (usage.ru_utime + usage.ru_stime) * 1e3


def quiet(argv: list[str]) -> int:
    """Run argv untimed, all stdio on /dev/null; its exit status."""
    return wait_all([spawn(argv)])[0]


def state_json(rt: Runtime, cid: str) -> dict:
    # `state` starts no process, so capturing its stdout with a pipe is safe.
    argv = rt.argv("state", cid)
    p = spawn(argv, stdout=subprocess.PIPE)
    try:
        out = p.communicate()[0]
    except BaseException:
        finish([p])
        raise
    if p.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited with {p.returncode}")
    return json.loads(out)


def state_pid(rt: Runtime, cid: str) -> int:
    return int(state_json(rt, cid)["pid"])


def status(rt: Runtime, cid: str) -> str:
    return state_json(rt, cid)["status"]


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


def machine_busy_ms() -> float:
    """CPU time every CPU of the machine has spent not idle so far (/proc/stat's first
    line: user, nice, system, irq, softirq; not idle, iowait, or the hypervisor's steal;
    USER_HZ ticks, so meant for spans of many ticks)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    busy = sum(ticks[:7]) - ticks[3] - ticks[4]
    return busy * 1000 / os.sysconf("SC_CLK_TCK")


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
        for s, handler in old.items():  # None: not set from Python (restore the default)
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
    if got:
        signal.raise_signal(got[0])


# ---------------------------------------------------------------------------------------
# Peak RSS

MAXRSS_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
/* Run argv, its stdout on /dev/null, and print its peak RSS in KiB. A small C parent,
   because a child forked or vforked from the (large) Python bench inherits the bench's
   RSS as its high-water mark. */
int main(int argc, char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) < 0) _exit(127);
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 126;
    printf("%ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}
"""
_maxrss_tool: list[str] = []


def maxrss_tool() -> str:
    """Compile the peak-RSS helper once (gcc is installed by tools/setup.sh)."""
    if not _maxrss_tool:
        workdir = tempfile.mkdtemp(prefix="bench-maxrss-")
        atexit.register(shutil.rmtree, workdir, True)
        src = os.path.join(workdir, "maxrss.c")
        with open(src, "w") as f:
            f.write(MAXRSS_C)
        subprocess.run(["gcc", "-O1", "-o", src[:-2], src], check=True)
        _maxrss_tool.append(src[:-2])
    return _maxrss_tool[0]


def peak_rss_mib(argv: list[str]) -> float:
    """argv's peak resident memory in MiB: its own, or that of a descendant it waited for
    if larger (wait4's ru_maxrss). A process that outlives it (a created init) is not
    counted."""
    with tempfile.TemporaryFile() as out:
        rc = wait_all([spawn([maxrss_tool(), *argv], stdout=out)])[0]
        out.seek(0)
        kib = out.read().split()
    if rc != 0 or not kib:
        raise BenchError(f"`{shlex.join(argv)}` exited with {rc}")
    return int(kib[0]) / 1024
