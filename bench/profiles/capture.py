"""Capture the `linux.seccomp` section Docker and podman send a runtime by default, as
test data for bench/bench.py (bench/profiles/docker-default.json, podman-default.json),
and rewrite bench/profiles/README.md with where each came from.

    bench/profiles/capture.sh [--out DIR]        (as root; or .venv/bin/python this file)

Each engine, kept private (testkit/docker.py, testkit/podman.py: nothing of the system's
is used or changed), runs `true` in a busybox image built from bundles/build-rootfs.sh
with a runtime that is a wrapper script named `runc`: it copies the bundle's config.json
of each `create`, then execs the real runc. The engines' other defaults stay.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # testkit/ is a directory of the repo, not installed
from testkit import bundles, docker, oci_image, podman  # noqa: E402

IMAGE = "localhost/bench/busybox:latest"
WRAPPER = """#!/bin/sh
# Save the config.json of each bundle a `create` is given, then be runc.
prev=
for arg in "$@"; do
    case $prev in --bundle|-b) cp "$arg/config.json" "{out}/config-$$.json" ;; esac
    case $arg in --bundle=*) cp "${{arg#--bundle=}}/config.json" "{out}/config-$$.json" ;; esac
    prev=$arg
done
exec {runc} "$@"
"""


class CaptureError(Exception):
    pass


def wrapper(tmp: Path, engine: str, runc: str) -> Path:
    """tmp/ENGINE/runc: the saving wrapper; the configs go to tmp/ENGINE/configs."""
    out = tmp / engine / "configs"
    out.mkdir(parents=True)
    path = tmp / engine / "runc"
    path.write_text(WRAPPER.format(out=out, runc=runc))
    path.chmod(0o755)
    return path


def one_config(configs: Path, engine: str) -> dict:
    found = sorted(configs.glob("config-*.json"))
    if len(found) != 1:
        raise CaptureError(f"{engine}: expected one create's config.json, found {found}")
    return json.loads(found[0].read_text())


def capture_docker(tmp: Path, archive: Path, runc: str) -> tuple[dict, str, str]:
    """(config.json, dockerd's version, the command) of `docker run --rm ... true`."""
    missing = docker.missing_tools()
    if missing:
        raise CaptureError(f"docker: {', '.join(missing)} not installed")
    base = tmp / "dkr"
    base.mkdir()
    d = docker.Dockerd(base, {"capture": wrapper(tmp, "docker", runc)}, f"capture{os.getpid()}-dkr")
    try:
        d.start()
        d.load_image(archive, IMAGE)
        args = d.run_args("capture", "--rm", IMAGE, "true")
        r = d.docker(*args)
        if r.returncode != 0:
            raise CaptureError(f"docker {' '.join(args)}: {r}")
    finally:
        leftovers = d.stop()
    if leftovers:
        raise CaptureError(f"docker left behind {leftovers}")
    command = f"dockerd {' '.join(d.dockerd_argv()[1:])}\n{' '.join(d.docker_argv(*args))}"
    return one_config(tmp / "docker" / "configs", "docker"), docker.version(), command


def capture_podman(tmp: Path, archive: Path, runc: str) -> tuple[dict, str, str]:
    """(config.json, podman's version, the command) of `podman run --rm ... true`."""
    missing = podman.missing_tools()
    if missing:
        raise CaptureError(f"podman: {', '.join(missing)} not installed")
    base = tmp / "pod"
    base.mkdir()
    pm = podman.Podman(base, {"capture": wrapper(tmp, "podman", runc)}, f"capture{os.getpid()}-pod")
    try:
        pm.start()
        pm.load_image(archive, IMAGE)
        args = pm.run_args("--rm", IMAGE, "true")
        r = pm(*args, runtime="capture")
        if r.returncode != 0:
            raise CaptureError(f"podman {' '.join(args)}: {r}")
        argv = pm.argv(*args, runtime="capture")
    finally:
        leftovers = pm.stop()
    if leftovers:
        raise CaptureError(f"podman left behind {leftovers}")
    command = " ".join(argv)
    return one_config(tmp / "podman" / "configs", "podman"), podman.version(), command


README = """# The engines' default seccomp profiles, as a runtime receives them

Test data for bench/bench.py (issue #12): the `linux.seccomp` section of the config.json
that each engine hands the runtime for a plain `run` of `true`, kept verbatim. The bench
inserts it as `linux.seccomp` into its own bundle's config (`run` and `create` with each
profile, `exec` into a container created with Docker's).

Captured by `bench/profiles/capture.sh` (bench/profiles/capture.py), which redoes all of
this file and the profiles. Each engine runs fully private (testkit/docker.py,
testkit/podman.py: own roots, sockets and configs under a temp dir, no bridge network,
removed afterwards) with a runtime that is a wrapper script named `runc`: it copies the
config.json of each bundle it is given to `create`, then execs the real runc (podman
runs it through testkit/podman.py's launcher, `$TMP/pod/runtimes/capture/runc`, which
adds a private `--root`). So the engine's defaults are exactly those it uses with runc:
its own seccomp profile, default capabilities, an image with no user or seccomp
settings of its own.

| File | Engine | Captured | Host | sha256 |
|---|---|---|---|---|
{rows}

Commands (`$TMP`: the temp dir; `$TMP/ENGINE/runc`: the wrapper):

{commands}

Both profiles deny by default (`SCMP_ACT_ERRNO`) and allow the syscalls they list; the
lists are resolved for the default capabilities (a capability the container lacks leaves
its syscalls out) and for this host's architecture (`architectures`).
"""


def write_outputs(
    out: Path, tmp: Path, captured: dict[str, tuple[dict, str, str]], runc: str
) -> None:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = f"Linux {os.uname().release} {platform.machine()}, runc {runc_version(runc)}"
    rows, commands = [], []
    for engine, (config, version, command) in captured.items():
        seccomp = config.get("linux", {}).get("seccomp")
        if not seccomp:
            raise CaptureError(f"{engine} sent no linux.seccomp")
        name = f"{engine}-default.json"
        data = (json.dumps(seccomp, indent=2) + "\n").encode()
        (out / name).write_bytes(data)
        label = "Docker (docker.io)" if engine == "docker" else "podman"
        digest = hashlib.sha256(data).hexdigest()[:16]
        rows.append(f"| {name} | {label} {version} | {date} | {host} | `{digest}…` |")
        command = command.replace(str(tmp), "$TMP").replace("\n", "\n      ")
        commands.append(f"- {engine}:\n\n      {command}")
    text = README.format(rows="\n".join(rows), commands="\n\n".join(commands))
    (out / "README.md").write_text(text)


def runc_version(runc: str) -> str:
    p = subprocess.run([runc, "--version"], capture_output=True, text=True, check=False)
    first = p.stdout.splitlines()[0] if p.stdout else ""
    return first.removeprefix("runc version ") or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("must run as root (the engines need it)")
    tmp = Path(tempfile.mkdtemp(prefix="ociruntime-capture-"))
    try:
        rootfs = tmp / "rootfs"
        subprocess.run([str(bundles.BUILD_ROOTFS), str(rootfs)], stdout=subprocess.DEVNULL,
                       check=True)  # fmt: skip
        archive = oci_image.build_oci_archive(rootfs, tmp / "image.tar", IMAGE,
                                              docker_manifest=True).path  # fmt: skip
        captured = {
            "docker": capture_docker(tmp, archive, args.runc),
            "podman": capture_podman(tmp, archive, args.runc),
        }
        write_outputs(args.out, tmp, captured, args.runc)
    except (CaptureError, docker.DockerError, podman.PodmanError) as e:
        print(f"capture: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name in ("docker-default.json", "podman-default.json", "README.md"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
