"""Where the milliseconds of one `create`, `run` or `exec` go: its stages on one clock.

    .venv/bin/python bench/stages.py                # create, run and exec, 20 times each
    .venv/bin/python bench/stages.py --runs 50 create

With `--debug` ociruntime logs a line `stage NAME at T ms` at each step of an operation
(`LOG.stage`: the runtime process, the container init and exec's stages alike, the forked
ones through the log pipe), T on CLOCK_MONOTONIC, the clock of this script's
`time.monotonic_ns()`. The script starts each command itself, so every stage is shown as
milliseconds since the command was started: interpreter start-up and imports included.
It prints the median over the runs of each stage and of the command's return. Stages
that overlap (the parent and the init work at the same time) show as interleaved lines.

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
    ap.add_argument("commands", nargs="*", default=["create", "run", "exec"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("stages.py: needs root (it creates containers)")
    root = f"/run/bench-stages-{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="ociruntime-stages-")
    try:
        subprocess.run([str(bundles.BUILD_ROOTFS), os.path.join(tmp, "rootfs")],
                       stdin=DEVNULL, stdout=DEVNULL, check=True)  # fmt: skip
        for command in args.commands:
            print(report(command, *measure(command, root, tmp, args.runs)))
    finally:
        _clean(root, tmp)
    return 0


def _clean(root: str, tmp: str) -> None:
    if os.path.isdir(root):
        for cid in os.listdir(root):
            if not cid.startswith("."):
                subprocess.run(runtime(root, "delete", "-f", cid), stderr=DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
