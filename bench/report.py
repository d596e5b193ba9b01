"""The table, the notes under it, the machine line above it, and the raw samples (--json)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from measure import DEVNULL
from scale import LEVELS
from scenarios import PARALLEL

REPO = Path(__file__).resolve().parent.parent
UNPROTECTED = "ociruntime unprotected"
#: {(scenario, step): {runtime name: [one value per measured run]}}
Results = dict[tuple[str, str], dict[str, list[float]]]

_SCALE_LABELS = {
    "create": "`create`",
    "state": "`state` (created)",
    "list": "`list --format json` (whole root)",
}
# (scenario, step key, row label). "X cpu" steps are the CPU columns of row X; the "wait"
# row is shown but never part of a total.
ROWS = [
    ("run", "run", "`run` of `true` (whole life + delete)"),
    ("run-podman", "run", "`run` of `true`, podman's default seccomp profile"),
    ("run-docker", "run", "`run` of `true`, Docker's default seccomp profile"),
    ("lifecycle", "create", "`create` (CPU: + the init's until `start`)"),
    ("lifecycle", "start", "`start`"),
    ("lifecycle", "wait", "(poll `state` until stopped; excluded)"),
    ("lifecycle", "delete", "`delete` (stopped)"),
    ("lifecycle", "total", "**create + start + delete**"),
    ("create-podman", "create", "`create`, podman's profile (any cache warm)"),
    ("create-docker", "create", "`create`, Docker's profile (any cache warm)"),
    ("exec", "exec", "`exec ID true` (running container)"),
    ("exec-docker", "exec", "`exec ID true`, container with Docker's profile"),
    ("hot", "state", "`state` (created)"),
    ("hot", "kill", "`kill ID KILL` (created)"),
    ("hot", "delete", "`delete` (killed)"),
    ("parallel", "create20", f"{PARALLEL} `create`s at once, until the last returns"),
    *[
        ("memory", step, f"peak RSS of `{step}` (**MiB**, not ms)")
        for step in ("create", "start", "state", "kill", "delete", "exec")
    ],  # fmt: skip
    *[
        ("scale", f"{step}@{n}", f"{label}, {n} other containers")
        for step, label in _SCALE_LABELS.items()
        for n in LEVELS
    ],  # fmt: skip
    ("ctr", "ctr", "`ctr run --rm` of `true` (ctr, containerd, shim)"),
    ("podman", "podman run", "`podman run --rm` of `true` (podman, conmon)"),
    ("docker", "docker run", "`docker run --rm` of `true` (docker, dockerd, containerd, shim)"),
    ("docker-exec", "docker exec", "`docker exec ID true` (running container)"),
]
HEADER = [
    "Scenario",
    "Step",
    "runc (ms)",
    "ociruntime (ms)",
    "ratio: means (medians)",
    "runc CPU (ms)",
    "ociruntime CPU (ms)",
    "CPU ratio",
    "unprotected (ms)",
    "protection cost",
]


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def _out(argv: list[str]) -> str:
    p = subprocess.run(argv, stdin=DEVNULL, capture_output=True, text=True, cwd=REPO)
    return p.stdout.strip() if p.returncode == 0 else ""


def describe_machine(runc: str, runs: int, warmup: int, load_before: str,
                     engines: dict[str, str]) -> str:  # fmt: skip
    """The line above the table; `engines`: {engine: version} of those that ran."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    runc_version = _out([runc, "--version"]).splitlines()
    runc_version = runc_version[0].removeprefix("runc version ") if runc_version else "?"
    commit = _out(["git", "rev-parse", "--short", "HEAD"]) or "?"
    # --no-optional-locks: never refresh the index (other people work in this tree).
    dirty = _out(["git", "--no-optional-locks", "status", "--porcelain", "--", "ociruntime"])
    if dirty:
        commit += " (+ uncommitted changes in ociruntime/)"
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = f"{os.cpu_count()} CPUs" + (f" ({cpu})" if cpu else "")
    versions = "".join(f"{name} {v} · " for name, v in engines.items() if v)
    return (
        f"{date} · Linux {os.uname().release} · {cpus} · runc {runc_version} · {versions}"
        f"ociruntime {commit} · Python {sys.version.split()[0]} · "
        f"{runs} runs per runtime after {warmup} warm-ups, interleaved · "
        f"load average {load_before} before, {loadavg()} after"
    )


def _ratio(per: dict[str, list[float]]) -> str:
    runc, oci = per["runc"], per["ociruntime"]
    means = statistics.fmean(oci) / statistics.fmean(runc)
    medians = statistics.median(oci) / statistics.median(runc)
    return f"{means:.2f}× ({medians:.2f}×)"


def _protection(per: dict[str, list[float]], cpu: dict[str, list[float]] | None) -> list[str]:
    """The unprotected and protection-cost cells."""
    if UNPROTECTED not in per:
        return ["", ""]
    oci_m, un = statistics.fmean(per["ociruntime"]), per[UNPROTECTED]
    un_m, un_s = mean_sd(un)
    cost = f"{oci_m - un_m:+.1f} ({(oci_m - un_m) / un_m * 100:+.0f}%)"
    if cpu and UNPROTECTED in cpu:
        cost += (
            f"; CPU {statistics.fmean(cpu['ociruntime']) - statistics.fmean(cpu[UNPROTECTED]):+.1f}"
        )
    return [f"{un_m:.1f} ± {un_s:.1f}", cost]


def table_rows(results: Results, titles: dict[str, str]) -> list[list[str]]:
    rows = []
    for scenario, step, label in ROWS:
        if (scenario, step) not in results:  # a skipped or unselected scenario
            continue
        per = results[(scenario, step)]
        cpu = results.get((scenario, f"{step} cpu"))
        cells = [titles.get(scenario, scenario), label]
        cells += [
            f"{m:.1f} ± {s:.1f}" for m, s in (mean_sd(per["runc"]), mean_sd(per["ociruntime"]))
        ]
        cells.append(_ratio(per))
        if cpu:
            cells += [f"{statistics.fmean(cpu[rt]):.1f}" for rt in ("runc", "ociruntime")]
            cells.append(_ratio(cpu).split(" ")[0])
        else:
            cells += ["", "", ""]
        rows.append(cells + _protection(per, cpu))
    return rows


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|---|---|" + "--:|" * (len(HEADER) - 2)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    rows = [[c.replace("`", "").replace("**", "") for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(cells))

    return "\n".join([line(HEADER), line(["-" * w for w in widths]), *map(line, rows)])


def scale_growth(results: Results) -> str:
    """Medians at each number of other containers and the growth from none to the most."""
    parts = []
    for step in _SCALE_LABELS:
        cells = []
        for rt in ("runc", "ociruntime"):
            meds = [statistics.median(results[("scale", f"{step}@{n}")][rt]) for n in LEVELS]
            growth = (meds[-1] - meds[0]) / meds[0] * 100
            cells.append(f"{rt} {' / '.join(f'{m:.1f}' for m in meds)} ({growth:+.0f}%)")
        parts.append(f"`{step}`: {', '.join(cells)}")
    levels = " / ".join(str(n) for n in LEVELS)
    return (
        f"scale: median ms with {levels} other containers in the root, and the growth "
        f"from {LEVELS[0]} to {LEVELS[-1]}: " + "; ".join(parts) + "."
    )


def notes(results: Results, skipped: list[str]) -> str:
    paragraphs = [
        "Mean ± sample stdev over the measured runs; ratio = ociruntime / runc, of the means "
        "and (in brackets) of the medians (> 1: ociruntime is slower). CPU: mean user + "
        "system time of the command and of the processes it waited for (wait4's rusage); "
        "for `create` plus the init's own until it waits for `start` "
        "(/proc/PID/task/*/schedstat); for the parallel creates, the whole machine's busy "
        "CPU time while they ran (/proc/stat), divided by their number. No CPU column "
        "where the runtime is not the command's child (the engines) or for peak RSS."
    ]
    polls = results.get(("lifecycle", "polls"))
    if polls:
        paragraphs[0] += (
            " Polling uses each runtime's own `state` (mean polls: runc "
            f"{statistics.fmean(polls['runc']):.1f}, ociruntime "
            f"{statistics.fmean(polls['ociruntime']):.1f})."
        )
    if any(UNPROTECTED in per for per in results.values()):
        paragraphs.append(
            "unprotected: ociruntime with `containersafe.hide` and "
            "`containersafe.detach_from_host_files` patched to no-ops by a temporary launcher, "
            "interleaved with the other two; protection cost = ociruntime mean - unprotected "
            "mean (and % of unprotected; CPU: the same for the CPU means)."
        )
    if any(s in {sc for sc, _ in results} for s in ("run-docker", "create-docker", "exec-docker")):
        paragraphs.append(
            "Profiles: `linux.seccomp` as Docker 20.10 and podman 4.3 send it by default "
            "(bench/profiles/), in a copy of the bench bundle's config. The warm-up runs "
            "come first, so a cache (of compiled filters, say) is warm when the measured "
            "runs start; a cold cache is not measured."
        )
    if any(sc in {"ctr", "podman", "docker", "docker-exec"} for sc, _ in results):
        paragraphs.append(
            "Engines: each private to the bench (testkit/), started and stopped untimed, "
            "running the runtime's executable itself (podman: through a compiled launcher "
            "adding `--root`); each run is timed from the client's start to its exit, and "
            "the engine's processes are waited out, untimed, before the next."
        )
    if ("scale", f"create@{LEVELS[0]}") in results:
        paragraphs.append(scale_growth(results))
    return "\n\n".join([*paragraphs, *(f"Note: {s}." for s in skipped)])


def write_json(path: str, results: Results, machine: str, runs: int, warmup: int,
               skipped: list[str]) -> None:  # fmt: skip
    """Every measured run, per scenario, step and runtime, with what the table's header
    line says."""
    data = {
        "machine": machine,
        "runs": runs,
        "warmups": warmup,
        "skipped": skipped,
        "units": "ms; memory/*: MiB; lifecycle/polls: count",
        "samples": {f"{sc}/{st}": per for (sc, st), per in results.items()},
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
