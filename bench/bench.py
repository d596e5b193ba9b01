"""Time ociruntime against runc: same run, same bundle, the runtimes interleaved.

    .venv/bin/python bench/bench.py [--runs N] [--only A,B] [--markdown] [--json FILE]
    .venv/bin/python bench/bench.py --profile

Every runtime command is a fresh process, exactly as an engine (containerd, CRI-O, Podman)
runs it, timed with `time.perf_counter_ns` around `subprocess` with all stdio on /dev/null,
and its CPU time read from wait4's rusage. Scenarios (`--only` takes their names; all by
default), each timed run by run, the runtimes' order rotating (runc, ociruntime, then
ociruntime, runc, ...):

  run             `run --bundle B ID` of `true`: the container's whole life, deletion included
  run-podman      the same with podman's default seccomp profile (bench/profiles/)
  run-docker      the same with Docker's default seccomp profile
  lifecycle       `create`, `start`, (poll `state` until stopped: shown, never counted), `delete`
  create-podman   `create` with podman's profile
  create-docker   `create` with Docker's profile
  exec            `exec ID true` into a running container (one per runtime, started untimed)
  exec-docker     the same into a container created with Docker's profile
  hot             `state` of a created container, `kill ID KILL`, (poll), `delete`
  parallel        20 `create`s started at once, until the last returns
  memory          peak RSS of create, start, state, kill, delete and exec
  scale           `create`, `state` and `list` with 0, 100 and 500 other containers
  ctr             `ctr run --rm` through a private containerd (testkit/containerd.py)
  podman          `podman run --rm` through a private podman (testkit/podman.py)
  docker          `docker run --rm` through a private dockerd (testkit/docker.py)
  docker-exec     `docker exec` into a `docker run -d` container running `sleep`

An engine scenario is skipped, and says so, where the engine is not installed.

`run`, `lifecycle` and `exec` are run a third way, interleaved with the other two:
"ociruntime unprotected", the same code through a launcher (written to the temp dir, never
installed) that turns ociruntime.security.containersafe's `hide` and
`detach_from_host_files` into no-ops. protected - unprotected is what those protections
cost (issue #9), measured in the same run.

`--profile` instead runs one ociruntime `create` under `python -X importtime` and times the
interpreter's startup floor, to show what a Python runtime's milliseconds are made of.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # testkit/ is a directory of the repo, not installed
import engines  # noqa: E402
import report  # noqa: E402
from measure import (  # noqa: E402
    DEVNULL,
    WARMUP,
    BenchError,
    Runtime,
    Skip,
    become_subreaper,
    signals_deferred,
)
from profiling import profile  # noqa: E402
from scale import crowd, scenario_scale  # noqa: E402
from scenarios import (  # noqa: E402
    Context,
    Scenario,
    bundle_with,
    scenario_create,
    scenario_exec,
    scenario_hot,
    scenario_lifecycle,
    scenario_memory,
    scenario_parallel,
    scenario_run,
    sleepers,
)

from ociruntime import launcher  # noqa: E402
from testkit import bundles, containerd, docker, podman  # noqa: E402
from testkit.processes import (  # noqa: E402
    cgroup_procs,
    command_lines,
    mount_lines,
    reap_children,
    umount_lazy,
    wait_pids_gone,
)

PYTHON = REPO / ".venv" / "bin" / "python"
OCIRUNTIME = bundles.OCIRUNTIME
SOURCE_BUNDLE = REPO / "bundles" / "busybox"
BUILD_ROOTFS = bundles.BUILD_ROOTFS
CGROUP_MOUNT = "/sys/fs/cgroup"
# Container ids are bench<our pid>-<runc|oci|ocinp>-<scenario>-<n>; the engines' cgroup
# parents (containerd's namespace, dockerd's and podman's --cgroup-parent) are
# bench<our pid>-<ctd|dkr|pod>: leftovers are attributable.
ID_RE = re.compile(r"^bench(\d+)-(runc|oci|ocinp|ctd|dkr|pod)(-|$)")
ROOT_RE = re.compile(r"^bench-(runc|ociruntime|unprotected)-(\d+)$")
# The temp dir (bundles, private engines) is ociruntime-bench-<our pid>-<random>.
TMP_PREFIX = "ociruntime-bench-"
TMP_RE = re.compile(r"/" + TMP_PREFIX + r"(\d+)-[^/]*/")
#: The engines' processes that can outlive a SIGKILLed bench (dockerd and containerd
#: get SIGTERM when it dies, shims and conmon do not).
ENGINE_PROCESSES = ("containerd", "containerd-shim-runc-v2", "dockerd", "conmon", "podman")

SCENARIOS = [
    Scenario("run", "run", scenario_run, bundle_with(None), unprotected=True),
    Scenario("run-podman", "run, podman's profile", scenario_run, bundle_with("podman")),
    Scenario("run-docker", "run, Docker's profile", scenario_run, bundle_with("docker")),
    Scenario("lifecycle", "lifecycle", scenario_lifecycle, bundle_with(None), unprotected=True),
    Scenario("create-podman", "create, podman's profile", scenario_create, bundle_with("podman")),
    Scenario("create-docker", "create, Docker's profile", scenario_create, bundle_with("docker")),
    Scenario("exec", "exec", scenario_exec, sleepers(None), unprotected=True),
    Scenario("exec-docker", "exec, Docker's profile", scenario_exec, sleepers("docker")),
    Scenario("hot", "hot path", scenario_hot, bundle_with(None)),
    Scenario("parallel", "parallel", scenario_parallel, bundle_with(None)),
    Scenario("memory", "memory", scenario_memory, sleepers(None)),
    Scenario("scale", "scale", scenario_scale, crowd),
    Scenario("ctr", "containerd", engines.scenario_containerd, engines.containerd_env),
    Scenario("podman", "podman", engines.scenario_podman, engines.podman_env),
    Scenario("docker", "docker", engines.scenario_docker, engines.dockerd_env),
    Scenario("docker-exec", "docker exec", engines.scenario_docker_exec, engines.docker_sleepers),
]


# ---------------------------------------------------------------------------------------
# The runs


def benchmark(
    ctx: Context, runtimes: list[Runtime], scenarios: list[Scenario], runs: int,
    skipped: list[str],
) -> report.Results:  # fmt: skip
    """{(scenario, step): {runtime name: [value per measured run]}}; appends to `skipped`
    why a scenario could not run."""
    results: report.Results = {}
    for sc in scenarios:
        rts = [rt for rt in runtimes if sc.unprotected or not rt.unprotected]
        try:
            with sc.setup(ctx, rts) as env:
                # scale: the same runs at each number of other containers.
                for level in getattr(env, "levels", (None,)):
                    tag = sc.name if level is None else f"{sc.name}{level}"
                    if level is not None:
                        progress(f"{sc.name}: {level} other containers")
                        env.at(level)
                    rounds(ctx, sc, rts, env, tag, runs, results)
        except Skip as e:
            progress("")
            if str(e) not in skipped:  # docker and docker-exec: said once
                skipped.append(str(e))
                print(f"bench: {e}", file=sys.stderr)
    progress("")
    return results


def rounds(
    ctx: Context, sc: Scenario, rts: list[Runtime], env: object, tag: str, runs: int,
    results: report.Results,
) -> None:  # fmt: skip
    for i in range(WARMUP + runs):
        progress(f"{tag}: {i + 1}/{WARMUP + runs}")
        # ABC BCA CAB ...: machine noise hits every runtime alike, and none
        # always runs just after another (whose exit may still be settling).
        k = i % len(rts)
        for rt in rts[k:] + rts[:k]:
            steps = sc.fn(rt, env, f"bench{ctx.me}-{rt.short}-{tag}-{i}")
            reap_children()
            if i < WARMUP:
                continue
            for step, value in steps.items():
                results.setdefault((sc.name, step), {}).setdefault(rt.name, []).append(value)


def progress(text: str) -> None:
    if sys.stderr.isatty():
        print("\r" + " " * 50 + "\r" + text, end="", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Bundle, roots, cleanup


UNPROTECT = """import ociruntime.security.containersafe as c
c.hide = lambda: None
c.detach_from_host_files = lambda: 0
"""


def unprotected_launcher(parent: str) -> str:
    """A launcher like .venv/bin/ociruntime (compiled, or the script) that makes
    ociruntime.security.containersafe's `hide` and `detach_from_host_files` no-ops before
    the CLI: the same code, the same imports, without those two protections. Written to
    the temp dir, never installed."""
    path = os.path.join(parent, "ociruntime-unprotected")
    with open(OCIRUNTIME, "rb") as f:
        compiled = f.read(4) == b"\x7fELF"
    try:
        (launcher.build if compiled else launcher.write_script)(path, prelude=UNPROTECT)
    except launcher.BuildError as e:
        raise BenchError(f"building the unprotected launcher: {e}") from None
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
    """Whether pid runs; a zombie does not (a killed bench whose parent died too waits,
    a zombie, for a PID 1 that may reap nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except (OSError, IndexError):
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
    """Remove cgroups named like a container or an engine's cgroup parent of this run or
    of a dead earlier run, after killing what still runs in them (an init that never got
    its `start`)."""
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
    wait_pids_gone(pids, timeout=5)
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


def clean_stale_engines() -> None:
    """The engines' processes of an earlier run that was SIGKILLed (their command line
    names its temp dir), what podman left mounted there or created outside it (its
    blob-info cache), then that temp dir."""
    procs = []
    for pid, raw in command_lines():
        argv = b"\0".join(raw).decode(errors="replace").split("\0")
        if os.path.basename(argv[0]) not in ENGINE_PROCESSES:
            continue
        m = TMP_RE.search(" ".join(argv))
        if m and not pid_alive(int(m.group(1))):
            procs.append(pid)
            print(f"bench: killing stale {argv[0]} (pid {pid})", file=sys.stderr)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait_pids_gone(procs, timeout=5)
    reap_children()
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = TMP_RE.match(f"/{name}/")
        if not m or pid_alive(int(m.group(1))):
            continue
        stale = os.path.join(tmp, name)
        print(f"bench: removing stale {stale}", file=sys.stderr)
        points = [ln.split()[1] for ln in mount_lines() if ln.split()[1].startswith(stale + "/")]
        for point in sorted(points, key=len, reverse=True):
            umount_lazy(point)
        for base in Path(stale).glob("podman*"):
            podman.remove_stale(base)
        shutil.rmtree(stale, ignore_errors=True)


def cleanup(runtimes: list[Runtime]) -> None:
    left = [w for rt in runtimes for w in clean_root(rt)]
    left += clean_cgroups()
    for what in left:
        print(f"bench: cleaned up leftover {what}", file=sys.stderr)


# ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="measured runs per runtime (20)")
    names = [sc.name for sc in SCENARIOS]
    ap.add_argument("--only", metavar="A,B", help=f"these scenarios only, of: {','.join(names)}")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument(
        "--profile", action="store_true", help="import profile of create + startup floor"
    )
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--json", metavar="FILE", help="also write every measured run to FILE")
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (for a stdev)")
    args.scenarios = SCENARIOS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(names)}")
        args.scenarios = [sc for sc in SCENARIOS if sc.name in wanted]
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
    clean_stale_engines()
    clean_stale_roots(runc)
    clean_cgroups()


def engine_versions(results: report.Results) -> dict[str, str]:
    ran = {sc for sc, _ in results}
    versions = {}
    if "ctr" in ran:
        versions["containerd"] = containerd.version()
    if "podman" in ran:
        versions["podman"] = podman.version()
    if ran & {"docker", "docker-exec"}:
        versions["docker"] = docker.version()
    return versions


def run_bench(args: argparse.Namespace, ctx: Context, runtimes: list[Runtime]) -> None:
    load_before = report.loadavg()
    t0 = time.monotonic()
    skipped: list[str] = []
    results = benchmark(ctx, runtimes, args.scenarios, args.runs, skipped)
    machine = report.describe_machine(
        args.runc, args.runs, WARMUP, load_before, engine_versions(results)
    )
    if args.json:
        report.write_json(args.json, results, machine, args.runs, WARMUP, skipped)
    titles = {sc.name: sc.title for sc in SCENARIOS}
    print(machine)
    print()
    print(report.render(report.table_rows(results, titles), args.markdown))
    print()
    text = report.notes(results, skipped)
    print(text if args.markdown else text.replace("`", ""))
    print(f"bench: {(time.monotonic() - t0) / 60:.1f} min", file=sys.stderr)


def main() -> int:
    args = parse_args()
    prepare_host(args.runc)
    me = os.getpid()
    runc = Runtime("runc", "runc", args.runc, f"/run/bench-runc-{me}")
    oci = Runtime("ociruntime", "oci", str(OCIRUNTIME), f"/run/bench-ociruntime-{me}")
    runtimes = [runc, oci]
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{me}-")
    try:
        if any(sc.unprotected for sc in args.scenarios) and not args.profile:
            runtimes.append(
                Runtime(report.UNPROTECTED, "ocinp", unprotected_launcher(tmp),
                        f"/run/bench-unprotected-{me}", unprotected=True)
            )  # fmt: skip
        ctx = Context(tmp, make_bundle(tmp), me)
        if args.profile:
            text = profile(args.runc, ctx.bundle, args.runs, oci, runc)
            print(f"```\n{text}\n```" if args.markdown else text)
            return 0
        run_bench(args, ctx, runtimes)
        return 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        with signals_deferred():
            cleanup(runtimes)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # cleaned up already (main's finally)
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
