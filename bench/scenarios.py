"""The scenarios that call the runtimes directly, as an engine's shim does: each runs one
container (or one command) through one runtime and returns {step: ms}; a step "X cpu" is
the CPU time of step X, "X" of the memory scenario is MiB.

A setup is a context manager, entered once per scenario before the first run and left
after the last (untimed), that yields what the scenario function gets as `env`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure import (
    BenchError,
    Runtime,
    machine_busy_ms,
    peak_rss_mib,
    quiet,
    settle,
    signals_deferred,
    spawn,
    state_pid,
    thread_cpu_ms,
    timed,
    timed_cpu,
    wait_all,
    wait_stopped,
)

from testkit.processes import reap_children

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
#: The engines' default seccomp profiles, as they send them (bench/profiles/README.md).
PROFILES = {"docker": "docker-default.json", "podman": "podman-default.json"}


@dataclass
class Context:
    """What every setup gets: the temp dir and the bench bundle (`true` on a busybox
    rootfs, runc spec's defaults)."""

    tmp: str
    bundle: str
    me: int = field(default_factory=os.getpid)


# fn(runtime, what setup yields, container id) -> {step: ms}
ScenarioFn = Callable[[Runtime, Any, str], dict[str, float]]
Setup = Callable[[Context, list[Runtime]], AbstractContextManager[Any]]


@dataclass
class Scenario:
    name: str  # for --only, the JSON keys, the container ids
    title: str  # the table's first column
    fn: ScenarioFn
    setup: Setup
    unprotected: bool = False  # "ociruntime unprotected" runs it too


# ---------------------------------------------------------------------------------------
# Bundles


def profile_bundle(ctx: Context, profile: str | None) -> str:
    """The bench bundle, or a copy of its config with an engine's default profile as
    `linux.seccomp` (on the same rootfs), made once."""
    if profile is None:
        return ctx.bundle
    path = os.path.join(ctx.tmp, f"bundle-{profile}")
    if not os.path.isdir(path):
        with open(os.path.join(ctx.bundle, "config.json")) as f:
            config = json.load(f)
        config["root"]["path"] = os.path.join(ctx.bundle, "rootfs")
        config["linux"]["seccomp"] = json.loads((PROFILES_DIR / PROFILES[profile]).read_text())
        os.mkdir(path)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f, indent="\t")
    return path


def bundle_with(profile: str | None) -> Setup:
    """A setup yielding the bench bundle, with `profile` as its seccomp section."""

    @contextmanager
    def setup(ctx: Context, runtimes: list[Runtime]) -> Iterator[str]:
        yield profile_bundle(ctx, profile)

    return setup


# ---------------------------------------------------------------------------------------
# One container, one command at a time


def create_cpu(rt: Runtime, bundle: str, cid: str) -> tuple[float, float]:
    """`create`'s wall time and CPU time: its own and what it waited for, plus the init's
    own until it blocked waiting for `start` (it outlives `create`: read untimed)."""
    wall, cpu = timed_cpu(rt.argv("create", "--bundle", bundle, cid))
    return wall, cpu + thread_cpu_ms(state_pid(rt, cid))


def with_cpu(steps: dict[str, float], step: str, measured: tuple[float, float]) -> None:
    steps[step], steps[f"{step} cpu"] = measured


def scenario_run(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    steps: dict[str, float] = {}
    with_cpu(steps, "run", timed_cpu(rt.argv("run", "--bundle", bundle, cid)))
    return steps


def scenario_lifecycle(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    steps: dict[str, float] = {}
    with_cpu(steps, "create", create_cpu(rt, bundle, cid))
    with_cpu(steps, "start", timed_cpu(rt.argv("start", cid)))
    steps["wait"], steps["polls"] = wait_stopped(rt, cid)
    with_cpu(steps, "delete", timed_cpu(rt.argv("delete", cid)))
    for suffix in ("", " cpu"):
        steps["total" + suffix] = sum(steps[s + suffix] for s in ("create", "start", "delete"))
    return steps


def scenario_create(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    """`create` alone (the profile scenarios); the container is deleted untimed."""
    steps: dict[str, float] = {}
    with_cpu(steps, "create", create_cpu(rt, bundle, cid))
    quiet(rt.argv("delete", "--force", cid))
    return steps


def scenario_hot(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    timed(rt.argv("create", "--bundle", bundle, cid))
    steps: dict[str, float] = {}
    with_cpu(steps, "state", timed_cpu(rt.argv("state", cid)))
    with_cpu(steps, "kill", timed_cpu(rt.argv("kill", cid, "KILL")))
    wait_stopped(rt, cid)  # SIGKILL is asynchronous: delete a container that is gone
    with_cpu(steps, "delete", timed_cpu(rt.argv("delete", cid)))
    return steps


@dataclass
class Sleepers:
    """One container per runtime running `sleep` (from `bundle`'s config) for the whole
    scenario, and the bundle: what exec and memory get."""

    bundle: str
    ids: dict[str, str]


def sleepers(profile: str | None) -> Setup:
    """A setup: one container per runtime running `sleep`, on the bench's rootfs, created
    from the bundle with `profile` (exec inherits the container's seccomp filter), started
    before the first run and deleted after the last, untimed."""

    @contextmanager
    def setup(ctx: Context, runtimes: list[Runtime]) -> Iterator[Sleepers]:
        bundle = profile_bundle(ctx, profile)
        sleeper = os.path.join(ctx.tmp, f"sleeper-{profile or 'bare'}")
        os.makedirs(sleeper, exist_ok=True)  # exec and memory share it
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        config["process"]["args"] = ["sleep", "1000000"]
        config["root"]["path"] = os.path.join(ctx.bundle, "rootfs")
        with open(os.path.join(sleeper, "config.json"), "w") as f:
            json.dump(config, f, indent="\t")
        ids = {rt.name: f"bench{ctx.me}-{rt.short}-sleeper-{profile or 'bare'}" for rt in runtimes}
        try:
            for rt in runtimes:
                timed(rt.argv("run", "--detach", "--bundle", sleeper, ids[rt.name]))
            yield Sleepers(bundle, ids)
        finally:
            with signals_deferred():
                for rt in runtimes:
                    quiet(rt.argv("delete", "--force", ids[rt.name]))
                reap_children()

    return setup


def scenario_exec(rt: Runtime, env: Sleepers, cid: str) -> dict[str, float]:
    steps: dict[str, float] = {}
    with_cpu(steps, "exec", timed_cpu(rt.argv("exec", env.ids[rt.name], "true")))
    return steps


PARALLEL = 20


def scenario_parallel(rt: Runtime, bundle: str, cid: str) -> dict[str, float]:
    """PARALLEL `create`s started at once (engines start pods and compose stacks this
    way): wall time until the last one returned, and the CPU time the whole machine was
    busy meanwhile, per create (/proc/stat: every CPU's non-idle time; the inits' and the
    kernel's work included, and anything else running). Deletion is not timed."""
    ids = [f"{cid}-{k}" for k in range(PARALLEL)]
    settle()
    busy0 = machine_busy_ms()
    t0 = time.perf_counter_ns()
    procs = [spawn(rt.argv("create", "--bundle", bundle, i)) for i in ids]
    failed = [i for i, rc in zip(ids, wait_all(procs), strict=True) if rc != 0]
    elapsed = (time.perf_counter_ns() - t0) / 1e6
    busy = (machine_busy_ms() - busy0) / PARALLEL
    for i in ids:
        quiet(rt.argv("delete", "--force", i))
    if failed:
        raise BenchError(f"{rt.name}: parallel create failed for {failed}")
    return {"create20": elapsed, "create20 cpu": busy}


def scenario_memory(rt: Runtime, env: Sleepers, cid: str) -> dict[str, float]:
    """Peak resident memory (MiB) of each command: create, state, start (of `true`),
    delete; kill of another created container; exec into the running sleeper. A
    container's init outlives `create` and is not counted."""
    steps = {"create": peak_rss_mib(rt.argv("create", "--bundle", env.bundle, cid))}
    steps["state"] = peak_rss_mib(rt.argv("state", cid))
    steps["start"] = peak_rss_mib(rt.argv("start", cid))
    wait_stopped(rt, cid)
    steps["delete"] = peak_rss_mib(rt.argv("delete", cid))
    killed = f"{cid}-k"
    timed(rt.argv("create", "--bundle", env.bundle, killed))
    steps["kill"] = peak_rss_mib(rt.argv("kill", killed, "KILL"))
    wait_stopped(rt, killed)
    timed(rt.argv("delete", killed))
    steps["exec"] = peak_rss_mib(rt.argv("exec", env.ids[rt.name], "true"))
    return steps
