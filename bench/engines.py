"""The end-to-end scenarios: a user's command through an engine, with each runtime, timed
from the client's start to its exit. Every engine is private (testkit/containerd.py,
docker.py, podman.py), started before the first run and stopped after the last, untimed,
and runs the runtime's executable itself (podman: through a compiled launcher that adds
`--root`). After each run, untimed, the scenario waits for what the engine left running
(shim, conmon) to exit and stops the bench if a container, process, runtime state,
cgroup or mount of it is left."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from measure import BenchError, Runtime, Skip, signals_deferred, timed
from scenarios import Context

from testkit import containerd, docker, oci_image, podman
from testkit.processes import reap_children

IMAGE = "localhost/bench/busybox:latest"


def image_archive(ctx: Context, base: Path) -> Path:
    """The bench rootfs as an image archive every engine here loads (OCI layout, and
    docker-archive's manifest.json for docker 20.10)."""
    rootfs = Path(ctx.bundle) / "rootfs"
    return oci_image.build_oci_archive(rootfs, base / "image.tar", IMAGE, docker_manifest=True).path


def engine_dir(ctx: Context, name: str) -> Path:
    """A new directory for one engine: NAME, else NAME2, NAME3... (short: podman wants a
    short runroot)."""
    for k in range(1, 100):
        base = Path(ctx.tmp) / (name if k == 1 else f"{name}{k}")
        try:
            base.mkdir()
            return base
        except FileExistsError:
            continue
    raise BenchError(f"no free directory for {name} in {ctx.tmp}")


def check(leftovers: list[str], what: str) -> None:
    if leftovers:
        raise BenchError(f"{what} left behind {leftovers}")


def report(leftovers: list[str]) -> None:
    for what in leftovers:
        print(f"bench: cleaned up leftover {what}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# containerd: ctr run --rm


@dataclass
class CtrEnv:
    """One private containerd, the image imported, and a `--runc-root` per runtime (under
    the temp dir: the shim sees containerd's private /run)."""

    ctd: containerd.Containerd
    roots: dict[str, Path]


@contextmanager
def containerd_env(ctx: Context, runtimes: list[Runtime]) -> Iterator[CtrEnv]:
    missing = containerd.missing_tools()
    if missing:
        raise Skip(
            f"ctr scenario skipped: {', '.join(missing)} not on $PATH "
            "(`tools/install-clients.sh containerd` installs it)"
        )
    base = engine_dir(ctx, "containerd")
    roots = {rt.name: base / f"{rt.name}-root" for rt in runtimes}
    ctd = containerd.Containerd(base, f"bench{ctx.me}-ctd", roots.values())
    try:
        ctd.start()
        ctd.import_image(image_archive(ctx, base), IMAGE)
        yield CtrEnv(ctd, roots)
    except containerd.ContainerdError as e:
        raise BenchError(str(e)) from None
    finally:
        with signals_deferred():
            leftovers = ctd.stop()
            reap_children()  # the shims: the bench is their subreaper
            report(leftovers)


def scenario_containerd(rt: Runtime, env: CtrEnv, cid: str) -> dict[str, float]:
    """`ctr run --rm` of `true`, as a user types it, with the shim running rt's executable
    itself: from ctr's start to its exit (create, start, wait, delete, snapshot, shim)."""
    args = env.ctd.run_args(rt.binary, env.roots[rt.name], "--rm", IMAGE, cid, "true")
    with tempfile.TemporaryFile() as err:  # ctr's stderr: the reason if it fails
        ms = timed(env.ctd.ctr_argv(*args), stderr=err)
    # Not timed: the shim exits just after ctr; the next run starts on a quiet machine.
    check(env.ctd.check_clean([cid]), f"{rt.name}: `ctr run --rm`")
    return {"ctr": ms}


# ---------------------------------------------------------------------------------------
# podman run --rm


@contextmanager
def podman_env(ctx: Context, runtimes: list[Runtime]) -> Iterator[podman.Podman]:
    missing = podman.missing_tools()
    if missing:
        raise Skip(
            f"podman scenario skipped: {', '.join(missing)} not on $PATH "
            "(`tools/install-clients.sh podman` installs it)"
        )
    base = engine_dir(ctx, "podman")
    pm = podman.Podman(base, {rt.name: rt.binary for rt in runtimes}, f"bench{ctx.me}-pod")
    try:
        pm.start()
        pm.load_image(image_archive(ctx, base), IMAGE)
        yield pm
    except podman.PodmanError as e:
        raise BenchError(str(e)) from None
    finally:
        with signals_deferred():
            leftovers = pm.stop()
            reap_children()  # conmon: the bench is its subreaper
            report(leftovers)


def scenario_podman(rt: Runtime, pm: podman.Podman, cid: str) -> dict[str, float]:
    """`podman run --rm IMAGE true`: podman, conmon, the runtime's create, start and
    delete, the overlay mount, podman's own cleanup of the container."""
    argv = pm.argv(*pm.run_args("--rm", "--name", cid, IMAGE, "true"), runtime=rt.name)
    with tempfile.TemporaryFile() as err:
        ms = timed(argv, stderr=err, env=pm.env)
    # Not timed: conmon and its exit command (`podman container cleanup`) outlive it.
    check(pm.check_clean(), f"{rt.name}: `podman run --rm`")
    reap_children()
    return {"podman run": ms}


# ---------------------------------------------------------------------------------------
# docker run --rm, docker exec


def docker_runtime(rt: Runtime) -> str:
    """The name the runtime is added to dockerd with (`runc` is dockerd's own)."""
    return f"bench-{rt.short}"


@contextmanager
def dockerd_env(ctx: Context, runtimes: list[Runtime]) -> Iterator[docker.Dockerd]:
    missing = docker.missing_tools()
    if missing:
        raise Skip(
            f"docker scenarios skipped: {', '.join(missing)} not on $PATH "
            "(`apt-get install docker.io` installs it)"
        )
    base = engine_dir(ctx, "docker")
    added = {docker_runtime(rt): rt.binary for rt in runtimes}
    d = docker.Dockerd(base, added, f"bench{ctx.me}-dkr")
    try:
        d.start()
        d.load_image(image_archive(ctx, base), IMAGE)
        yield d
    except docker.DockerError as e:
        raise BenchError(str(e)) from None
    finally:
        with signals_deferred():
            leftovers = d.stop()
            reap_children()
            report(leftovers)


def scenario_docker(rt: Runtime, d: docker.Dockerd, cid: str) -> dict[str, float]:
    """`docker run --rm --network none IMAGE true`: the client, dockerd, its containerd,
    the shim and the runtime's create, start and delete."""
    argv = d.docker_argv(*d.run_args(docker_runtime(rt), "--rm", "--name", cid, IMAGE, "true"))
    with tempfile.TemporaryFile() as err:
        ms = timed(argv, stderr=err, env=d.env)
    check(d.check_clean(), f"{rt.name}: `docker run --rm`")  # waits for the shim, untimed
    return {"docker run": ms}


@dataclass
class DockerSleepers:
    dockerd: docker.Dockerd
    ids: dict[str, str]


@contextmanager
def docker_sleepers(ctx: Context, runtimes: list[Runtime]) -> Iterator[DockerSleepers]:
    """A private dockerd and, per runtime, a `docker run -d` container running `sleep`."""
    with dockerd_env(ctx, runtimes) as d:
        ids = {}
        for rt in runtimes:
            name = f"bench{ctx.me}-{rt.short}-sleeper"
            r = d.docker(*d.run_args(docker_runtime(rt), "-d", "--name", name, IMAGE,
                                     "sleep", "1000000"))  # fmt: skip
            if r.returncode != 0:
                raise BenchError(f"{rt.name}: docker run -d: {r}")
            ids[rt.name] = name
        try:
            yield DockerSleepers(d, ids)
        finally:
            with signals_deferred():
                d.docker("rm", "--force", *ids.values())
                check(d.check_clean(), "the docker exec scenario")


def scenario_docker_exec(rt: Runtime, env: DockerSleepers, cid: str) -> dict[str, float]:
    """`docker exec CONTAINER true` into the runtime's running container."""
    argv = env.dockerd.docker_argv("exec", env.ids[rt.name], "true")
    with tempfile.TemporaryFile() as err:
        ms = timed(argv, stderr=err, env=env.dockerd.env)
    return {"docker exec": ms}
