"""Where the milliseconds of one `create`, `run` or `exec` go: its stages on one clock;
and what the one-shot commands cost above the interpreter's own start.

    .venv/bin/python bench/stages.py                # create, run, exec and oneshot, 20 runs
    .venv/bin/python bench/stages.py --runs 50 create
    .venv/bin/python bench/stages.py oneshot        # state, kill, start, delete vs the floor

With `--debug` ociruntime logs a line `stage NAME at T ms` at each step of an operation
(`LOG.stage`: the runtime process, the container init and exec's stages alike, the forked
ones through the log pipe), T on CLOCK_MONOTONIC, the clock of this script's
`time.monotonic_ns()`. The script starts each command itself, so every stage is shown as
milliseconds since the command was started: interpreter start-up and imports included.
It prints the median over the runs of each stage and of the command's return. Stages
that overlap (the parent and the init work at the same time) show as interleaved lines.

`oneshot` times `state`, `kill` (signal 0), `start` and `delete` of created containers
(interleaved with runc's and with the floor, `python -I -S -c pass` of the venv's
interpreter; medians of wall and CPU time) and prints each one's excess over the floor.

Needs root. It builds a temporary bundle (bundles/busybox's config running `true`, a
fresh rootfs), uses its own `--root` under /run, and deletes every container it made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from measure import settle  # noqa: E402 - bench/, this script's directory

from testkit import bundles  # noqa: E402

STAGE = re.compile(r"stage (.*) at ([0-9.]+) ms")
DEVNULL = subprocess.DEVNULL


def runtime(root: str, *args: str, log: str | None = None) -> list[str]:
    debug = ["--debug", "--log", log] if log else []
    return [str(bundles.OCIRUNTIME), "--root", root, *debug, *args]


def timed_stages(argv: list[str], log: str) -> tuple[dict[str, float], float]:
    """Run `argv` once; its stages and its return, in ms since it was started."""
    if os.path.exists(log):
        os.unlink(log)
    settle()  # a quiet kernel, as bench.py times every command (measure.SETTLE_S)
    start = time_ms()
    subprocess.run(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, check=True)
    end = time_ms()
    stages = {}
    with open(log) as f:
        for line in f:
            m = STAGE.search(line)
            if m:
                stages.setdefault(m[1], float(m[2]) - start)
    return stages, end - start


def time_ms() -> float:
    import time

    return time.monotonic_ns() / 1e6


def make_bundle(parent: str, args: list[str], name: str) -> str:
    bundle = os.path.join(parent, name)
    os.mkdir(bundle)
    config = bundles.base_config(args)
    config["root"] = {"path": os.path.join(parent, "rootfs"), "readonly": True}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def measure(command: str, root: str, tmp: str, runs: int) -> tuple[dict, list[float]]:
    """Each stage's times and the command's returns over `runs` runs (after 2 warm-ups)."""
    stages: dict[str, list[float]] = defaultdict(list)
    returns = []
    bundle = make_bundle(tmp, ["true"], f"b-{command}") if command != "exec" else None
    if command == "exec":
        sleeper = make_bundle(tmp, ["sleep", "1000"], "b-sleeper")
        subprocess.run(runtime(root, "run", "-d", "--bundle", sleeper, "sleeper"),
                       stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, check=True)  # fmt: skip
    for i in range(runs + 2):
        cid = f"st-{command}-{i}"
        log = os.path.join(tmp, "log")
        if command == "exec":
            argv = runtime(root, "exec", "sleeper", "true", log=log)
        else:
            argv = runtime(root, command, "--bundle", str(bundle), cid, log=log)
        got, end = timed_stages(argv, log)
        if command == "create":
            subprocess.run(runtime(root, "delete", "-f", cid), check=True)
        if i < 2:
            continue
        for name, t in got.items():
            stages[name].append(t)
        returns.append(end)
    return stages, returns


def wall_cpu(argv: list[str]) -> tuple[float, float]:
    """One run of `argv`: wall and CPU (user + system) ms, from fork to reaped."""
    start = time_ms()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)])  # fmt: skip
    _, _, usage = os.wait4(pid, 0)
    return time_ms() - start, (usage.ru_utime + usage.ru_stime) * 1000


def oneshot(root: str, tmp: str, runs: int) -> str:
    """state, kill, start and delete of ours and runc's, and the interpreter's floor."""
    bundle = make_bundle(tmp, ["true"], "b-oneshot")
    floor = [str(bundles.REPO / ".venv" / "bin" / "python"), "-I", "-S", "-c", "pass"]
    runc = shutil.which("runc") or "/usr/sbin/runc"
    samples: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for i in range(runs + 2):
        for name, base in (
            ("ociruntime", runtime(root)),
            ("runc", [runc, "--root", root + "-runc"]),
        ):
            cid = f"os-{i}"
            subprocess.run([*base, "create", "--bundle", bundle, cid], stdin=DEVNULL,
                           stdout=DEVNULL, stderr=DEVNULL, check=True)  # fmt: skip
            got = [("state", wall_cpu([*base, "state", cid])),
                   ("kill", wall_cpu([*base, "kill", cid, "0"])),
                   ("start", wall_cpu([*base, "start", cid]))]  # fmt: skip
            subprocess.run([*base, "state", cid], stdout=DEVNULL, check=True)  # settles
            _wait_stopped(base, cid)
            got.append(("delete", wall_cpu([*base, "delete", cid])))
            if i >= 2:
                for op, value in got:
                    samples[(name, op)].append(value)
        if i >= 2:
            samples[("floor", "")].append(wall_cpu(floor))
    return _oneshot_table(samples)


def _wait_stopped(base: list[str], cid: str) -> None:
    for _ in range(1000):
        out = subprocess.run([*base, "state", cid], capture_output=True, text=True).stdout
        if '"stopped"' in out:
            return
    raise SystemExit(f"{cid} did not stop")


def _oneshot_table(samples: dict) -> str:
    def med(key: tuple[str, str], i: int) -> float:
        return statistics.median(v[i] for v in samples[key])

    floor_w, floor_c = med(("floor", ""), 0), med(("floor", ""), 1)
    lines = [
        f"one-shot commands (median ms; floor = python -I -S -c pass: "
        f"{floor_w:.2f} wall, {floor_c:.2f} CPU)",
        "  command  runc wall  ours wall  ratio   ours-floor wall  ours-floor CPU",
    ]
    for op in ("state", "kill", "start", "delete"):
        rw, ow, oc = med(("runc", op), 0), med(("ociruntime", op), 0), med(("ociruntime", op), 1)
        lines.append(f"  {op:7}  {rw:9.2f}  {ow:9.2f}  {ow / rw:5.2f}x  {ow - floor_w:15.2f}"
                     f"  {oc - floor_c:14.2f}")  # fmt: skip
    return "\n".join(lines)


def report(command: str, stages: dict, returns: list[float]) -> str:
    lines = [f"`{command}` ({len(returns)} runs, median ms since the command started):"]
    rows = sorted(stages.items(), key=lambda kv: statistics.median(kv[1]))
    for name, ts in rows:
        lines.append(f"  {statistics.median(ts):7.2f}  {name}")
    lines.append(f"  {statistics.median(returns):7.2f}  ({command} returned)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("commands", nargs="*", default=["create", "run", "exec", "oneshot"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("stages.py: needs root (it creates containers)")
    root = f"/run/bench-stages-{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="ociruntime-stages-")
    try:
        subprocess.run([str(bundles.BUILD_ROOTFS), os.path.join(tmp, "rootfs")],
                       stdin=DEVNULL, stdout=DEVNULL, check=True)  # fmt: skip
        for command in args.commands:
            if command == "oneshot":
                print(oneshot(root, tmp, args.runs))
            else:
                print(report(command, *measure(command, root, tmp, args.runs)))
    finally:
        _clean(root, tmp)
        _clean_runc(root + "-runc")
    return 0


def _clean_runc(root: str) -> None:
    if os.path.isdir(root):
        runc = shutil.which("runc") or "/usr/sbin/runc"
        for cid in os.listdir(root):
            subprocess.run([runc, "--root", root, "delete", "-f", cid], stderr=DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def _clean(root: str, tmp: str) -> None:
    if os.path.isdir(root):
        for cid in os.listdir(root):
            if not cid.startswith("."):
                subprocess.run(runtime(root, "delete", "-f", cid), stderr=DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
