"""--profile: one ociruntime `create` under `python -X importtime`, and the interpreter's
startup floor timed against the real `create`, to show what a Python runtime's
milliseconds are made of."""

from __future__ import annotations

import os
import re
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import DEVNULL, WARMUP, BenchError, Runtime, timed
from report import mean_sd

from testkit import bundles
from testkit.processes import reap_children

PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
OCIRUNTIME = bundles.OCIRUNTIME


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """`-X importtime` lines as (self us, cumulative us, depth, module), in output order
    (a module's line comes after those of the modules it imported)."""
    entries = []
    for ln in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", ln)
        if m:
            depth = len(m.group(3)) // 2
            entries.append((int(m.group(1)), int(m.group(2)), depth, m.group(4)))
    return entries


def importers(entries: list[tuple[int, int, int, str]], site_end: int) -> list[str]:
    """Who imported each entry: the next entry one level up, or the interpreter's startup
    or the console script for top-level ones."""
    who = []
    for i, (_, _, depth, _) in enumerate(entries):
        if depth == 0:
            who.append("(startup)" if i <= site_end else "(console script)")
            continue
        who.append(next((e[3] for e in entries[i + 1 :] if e[2] == depth - 1), "?"))
    return who


def profile(runc: str, bundle: str, runs: int, oci: Runtime, runc_rt: Runtime) -> str:
    wall, text = _create_under_importtime(bundle, oci)
    entries = parse_importtime(text)
    out, top = _import_report(entries, wall)
    modules = list(dict.fromkeys(e[3] for e in top))
    out += _startup_floor(runc, bundle, runs, oci, runc_rt, modules)
    return "\n".join(out)


def _create_under_importtime(bundle: str, oci: Runtime) -> tuple[float, str]:
    """One `ociruntime create` under `python -X importtime`: its wall time (ms) and the
    importtime lines."""
    me = os.getpid()
    py = str(PYTHON)
    # Warm the page cache and the bundle, then one create under -X importtime.
    timed(oci.argv("create", "--bundle", bundle, f"bench{me}-oci-prof-warm"))
    timed(oci.argv("delete", "--force", f"bench{me}-oci-prof-warm"))
    reap_children()
    cid = f"bench{me}-oci-prof-0"
    with open(OCIRUNTIME, "rb") as f:
        compiled = f.read(4) == b"\x7fELF"  # the compiled launcher: -X importtime by env
    interpreter = [] if compiled else [py, "-X", "importtime"]
    env = dict(os.environ, OCIRUNTIME_IMPORTTIME="1") if compiled else None
    argv = [*interpreter, str(OCIRUNTIME), *oci.argv("create")[1:], "--bundle", bundle, cid]
    # stderr to a file, not a pipe: the container's init inherits it.
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter_ns()
        rc = subprocess.call(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=err, env=env)
        wall = (time.perf_counter_ns() - t0) / 1e6
        err.seek(0)
        text = err.read()
    if rc != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited with {rc}:\n{text[-2000:]}")
    timed(oci.argv("delete", "--force", cid))
    reap_children()
    return wall, text


def _import_report(
    entries: list[tuple[int, int, int, str]], wall: float
) -> tuple[list[str], list[tuple[int, int, int, str]]]:
    """The lines on what create imported, and its top-level imports."""
    out = []
    # Interpreter startup (encodings, site, .pth files) ends with the top-level `site`.
    site_end = next((i for i, e in enumerate(entries) if e[3] == "site" and e[2] == 0), -1)
    startup_us = sum(e[0] for e in entries[: site_end + 1])
    script_us = sum(e[0] for e in entries[site_end + 1 :])
    who = importers(entries, site_end)
    out.append(f"One `ociruntime create` under `python -X importtime` ({wall:.1f} ms wall):")
    out.append(f"  {len(entries)} modules imported; importtime's (inflated) totals:")
    out.append(f"  {startup_us / 1e3:6.1f} ms  interpreter startup (encodings, site, .pth files)")
    out.append(f"  {script_us / 1e3:6.1f} ms  the console script and ociruntime")
    out.append("")
    out.append("15 most expensive imports, by self time (cumulative includes sub-imports):")
    out.append(f"  {'self ms':>7}  {'cumul ms':>8}  {'module':<30}  imported by")
    ranked = sorted(range(len(entries)), key=lambda i: entries[i][0], reverse=True)
    for i in ranked[:15]:
        self_us, cum_us, _, mod = entries[i]
        out.append(f"  {self_us / 1e3:7.2f}  {cum_us / 1e3:8.2f}  {mod:<30}  {who[i]}")
    top = [e for e in entries[site_end + 1 :] if e[2] == 0]
    out.append("")
    out.append("Top-level imports of the console script, by cumulative time:")
    for _, cum_us, _, mod in sorted(top, key=lambda e: e[1], reverse=True):
        out.append(f"  {cum_us / 1e3:7.2f}  {mod}")
    out.append("")
    return out, top


def _startup_floor(
    runc: str, bundle: str, runs: int, oci: Runtime, runc_rt: Runtime, modules: list[str]
) -> list[str]:
    """The lines on the startup floors, `modules` imported without importtime, and the real
    create, interleaved."""
    me = os.getpid()
    py = str(PYTHON)
    out = []
    # Startup floors, the same imports without importtime, and the real thing: interleaved.
    import_all = "import " + ", ".join(modules)

    def create_delete(rt: Runtime) -> Callable[[int], float]:
        def go(i: int) -> float:
            cid = f"bench{me}-{rt.short}-floor-{i}"
            ms = timed(rt.argv("create", "--bundle", bundle, cid))
            timed(rt.argv("delete", "--force", cid))
            reap_children()
            return ms

        return go

    cases: list[tuple[str, Callable[[int], float]]] = [
        ("python -I -S -c pass", lambda i: timed([py, "-I", "-S", "-c", "pass"])),
        ("python -c pass", lambda i: timed([py, "-c", "pass"])),
        ("python -c 'import <create's modules>'", lambda i: timed([py, "-c", import_all])),
        ("ociruntime --version", lambda i: timed([str(OCIRUNTIME), "--version"])),
        ("ociruntime create", create_delete(oci)),
        ("runc --version", lambda i: timed([runc, "--version"])),
        ("runc create", create_delete(runc_rt)),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for i in range(WARMUP + runs):
        for name, fn in cases:
            ms = fn(i)
            if i >= WARMUP:
                times[name].append(ms)
    mean = {name: statistics.fmean(ts) for name, ts in times.items()}
    out.append(f"Startup floor ({runs} runs each, interleaved, after {WARMUP} warm-ups):")
    for name, _ in cases:
        m, sd = mean_sd(times[name])
        out.append(f"  {name:<38} {m:6.1f} ± {sd:4.1f} ms")
    out.append(f"  (<create's modules> = {', '.join(modules)})")
    out.append("")
    floor, imports = mean["python -c pass"], mean["python -c 'import <create's modules>'"]
    create = mean["ociruntime create"]
    out.append(
        f"So one `ociruntime create` ({create:.1f} ms; runc: {mean['runc create']:.1f} ms) is"
    )
    out.append(
        f"  {floor:6.1f} ms  Python interpreter startup (of which `-I -S` floor: "
        f"{mean['python -I -S -c pass']:.1f} ms)"
    )
    out.append(f"  {imports - floor:6.1f} ms  importing the console script's modules")
    out.append(
        f"  {create - imports:6.1f} ms  everything else: the work, forking the init, "
        "the init's setup"
    )
    return out
