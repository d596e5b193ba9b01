"""The scale scenario: `create`, `state` and `list` with 0, 100 and 500 other containers
in the runtime's root. The others are created (not started: each is an init waiting
for `start`, as cheap as a container gets) untimed, a few at a time, before the runs of
each level, and deleted after the last, untimed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from measure import BenchError, Runtime, finish, quiet, signals_deferred, spawn, timed_cpu
from scenarios import Context, create_cpu, with_cpu

from testkit.processes import reap_children

LEVELS = (0, 100, 500)
#: `create`s (and `delete`s) of the other containers at once: enough to keep 2 CPUs busy.
POPULATE_PARALLEL = 4


def run_bounded(argvs: list[list[str]], parallel: int = POPULATE_PARALLEL) -> list[list[str]]:
    """Run each argv, at most `parallel` at a time, untimed; those that failed."""
    failed: list[list[str]] = []
    running: list[tuple[list[str], subprocess.Popen]] = []
    pending = list(reversed(argvs))
    try:
        while pending or running:
            while pending and len(running) < parallel:
                argv = pending.pop()
                running.append((argv, spawn(argv)))
            argv, p = running[0]
            if p.wait() != 0:
                failed.append(argv)
            running.pop(0)
    except BaseException:
        finish([p for _, p in running])
        raise
    return failed


class Crowd:
    """The other containers, the same number in each runtime's root; `level` is how many
    there are now, `levels` those the scenario is run at."""

    levels = LEVELS

    def __init__(self, ctx: Context, runtimes: list[Runtime]) -> None:
        self.bundle = ctx.bundle
        self.runtimes = runtimes
        self.me = ctx.me
        self.level = 0

    def ids(self, rt: Runtime, start: int, stop: int) -> list[str]:
        return [f"bench{self.me}-{rt.short}-other-{k}" for k in range(start, stop)]

    def at(self, level: int) -> None:
        """Create others until there are `level` in each root."""
        for rt in self.runtimes:
            argvs = [rt.argv("create", "--bundle", self.bundle, cid)
                     for cid in self.ids(rt, self.level, level)]  # fmt: skip
            failed = run_bounded(argvs)
            if failed:
                raise BenchError(f"{rt.name}: {len(failed)} creates failed, e.g. {failed[0]}")
        self.level = level

    def clear(self) -> None:
        """Delete every other container; a root that still lists one stops the bench."""
        for rt in self.runtimes:
            run_bounded([rt.argv("delete", "--force", cid) for cid in self.ids(rt, 0, self.level)])
        reap_children()
        for rt in self.runtimes:
            p = spawn(rt.argv("list", "-q"), stdout=subprocess.PIPE)
            out = p.communicate()[0].decode()
            left = [cid for cid in out.split() if "-other-" in cid]
            if left:
                raise BenchError(
                    f"{rt.name}: {len(left)} containers left after delete, e.g. {left[0]}"
                )
        self.level = 0


@contextmanager
def crowd(ctx: Context, runtimes: list[Runtime]) -> Iterator[Crowd]:
    env = Crowd(ctx, runtimes)
    try:
        yield env
    finally:
        with signals_deferred():
            env.clear()


def scenario_scale(rt: Runtime, env: Crowd, cid: str) -> dict[str, float]:
    """At env.level others: `create` (with the init's CPU), `state` of it, `list --format
    json` of the whole root; the container is deleted untimed."""
    n = env.level
    steps: dict[str, float] = {}
    try:
        with_cpu(steps, f"create@{n}", create_cpu(rt, env.bundle, cid))
        with_cpu(steps, f"state@{n}", timed_cpu(rt.argv("state", cid)))
        with_cpu(steps, f"list@{n}", timed_cpu(rt.argv("list", "--format", "json")))
    finally:
        quiet(rt.argv("delete", "--force", cid))
    return steps
