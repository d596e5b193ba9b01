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

from testkit import containerd, oci_image
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
            f"ctr scenario skipped: {', '.join(missing)} not installed "
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
