"""Running one config case under one runtime and judging it.

`run_case` makes the bundle, runs `RUNTIME --root R run --bundle B ID` with stdout on a
file, and parses the inspector's report; `judge` applies the spec checks (or, for a
config the spec says must fail, checks that it failed cleanly); `compare` diffs two
runtimes' normalised reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from conformance import checks, corpus
from conformance.harness import (
    Invocation,
    NamespaceHolder,
    Workspace,
    host_namespaces,
    ns_inode,
    tagged_cgroups,
)
from conformance.report import Normaliser, Report, parse


@dataclass
class Run:
    """One case under one runtime: the invocation, the report, the verdict."""

    runtime: str
    cid: str
    bundle: Path
    config: dict
    invocation: Invocation
    report: Report
    host_uptime: float
    checks: list[checks.Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # failures outside the checks

    @property
    def failures(self) -> list[str]:
        return self.problems + [str(c) for c in self.checks if c.failed]

    @property
    def notes(self) -> list[str]:
        return [str(c) for c in self.checks if c.level == checks.NOTE and not c.ok]

    @property
    def passed(self) -> bool:
        return not self.failures


def inspect_conf(config: dict, case: corpus.Case) -> list[str]:
    """The inspector's probe list: masked and read-only paths, sysctls, extra nodes."""
    linux = config.get("linux") or {}
    paths = [*(linux.get("maskedPaths") or []), *(linux.get("readonlyPaths") or []), *case.probes]
    lines = [f"probe {p}" for p in dict.fromkeys(paths)]
    lines += [f"node {p}" for p in case.nodes]
    lines += [f"sysctl {k}" for k in linux.get("sysctl") or {}]
    return lines


def run_case(ws: Workspace, case: corpus.Case, runtime: str) -> Run:
    cid = ws.container_id(case.name, runtime)
    config = case.config()
    bundle, final = ws.make_bundle(
        cid, config, dict(corpus.COMMON_FILES), inspect_conf(config, case)
    )
    inv = ws.runtime(runtime, ["run", "--bundle", str(bundle), cid], umask=case.caller_umask)
    uptime = host_uptime()
    (bundle / "report.txt").write_text(inv.stdout)  # for --keep: what the runtime showed
    (bundle / "stderr.txt").write_text(inv.stderr)
    ws.runtime(runtime, ["delete", "--force", cid])  # only matters if `run` was cut short
    return Run(runtime, cid, bundle, final, inv, parse(inv.stdout), uptime)


def host_uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def judge(ws: Workspace, case: corpus.Case, run: Run, facts: dict) -> None:
    """Fill in run.checks / run.problems."""
    if case.must_fail:
        _judge_refusal(ws, run)
        return
    if not run.invocation.ok:
        run.problems.append(
            f"run exited {run.invocation.returncode}: {run.invocation.error()[-300:]}"
        )
        return
    run.checks = checks.all_checks(checks_facts(run, facts, case.caller_umask))


def _judge_refusal(ws: Workspace, run: Run) -> None:
    """runtime.md "Errors": the error MUST leave things as if never attempted."""
    if run.invocation.ok:
        run.problems.append("the runtime accepted a config the spec says MUST fail")
        return
    if ws.runtime(run.runtime, ["state", run.cid]).ok:
        run.problems.append("a container was left behind after the error")
    if tagged_cgroups(run.cid):
        run.problems.append("cgroups were left behind after the error")


def checks_facts(run: Run, facts: dict, caller_umask: int | None = None) -> checks.Facts:
    return checks.Facts(
        config=run.config,
        report=run.report,
        rootfs=str(run.bundle / "rootfs"),
        bundle=str(run.bundle),
        host_ns=facts["host_ns"],
        ns_paths=facts["ns_paths"],
        runner_umask=facts["umask"] if caller_umask is None else caller_umask,
        runner_oom_score_adj=facts["oom_score_adj"],
        host_uptime=run.host_uptime,
        joined_hostname=_joined_hostname(run.config),
    )


def _joined_hostname(config: dict) -> str | None:
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "uts" and ns.get("path"):
            return NamespaceHolder.HOSTNAME
    return None


def runner_facts(ws: Workspace) -> dict:
    """Facts about the runner the checks compare with (after the holders started)."""
    umask = os.umask(0o022)
    os.umask(umask)
    with open("/proc/self/oom_score_adj") as f:
        oom = f.read().strip()
    paths = {}
    for holder in ws.holders.values():
        for kind in ("uts", "ipc", "network", "pid"):
            try:
                paths[holder.path(kind)] = ns_inode(holder.path(kind))
            except OSError:
                continue
    return {"host_ns": host_namespaces(), "ns_paths": paths, "umask": umask, "oom_score_adj": oom}


def normaliser(ws: Workspace, run: Run, facts: dict) -> Normaliser:
    labels = {
        inode: path.split("/ns/")[-1]
        for path, inode in facts["ns_paths"].items()
        if inode != facts["host_ns"].get(path.split("/ns/")[-1])
    }
    replacements = {str(run.bundle): "<bundle>", run.cid: "<id>", ws.tag: "<tag>"}
    for path in _own_cgroup_paths():
        replacements[path] = "<runtime-cgroup>"
    return Normaliser(facts["host_ns"], labels, replacements, _configured_sizes(run.config))


def _own_cgroup_paths() -> list[str]:
    with open("/proc/self/cgroup") as f:
        paths = {line.rstrip("\n").split(":", 2)[2] for line in f}
    return sorted((p for p in paths if p != "/"), key=len, reverse=True)


def _configured_sizes(config: dict) -> frozenset[str]:
    """size= values as the kernel prints them (KiB), for every configured size option."""
    sizes = set()
    for m in config.get("mounts") or []:
        for opt in m.get("options") or []:
            if opt.startswith("size="):
                sizes.add(f"{checks.size_bytes(opt[5:]) // 1024}k")
    return frozenset(sizes)


def compare(ws: Workspace, a: Run, b: Run, facts: dict) -> tuple[list[str], list[str]]:
    """Lines only in a's normalised report, and lines only in b's."""
    la = set(normaliser(ws, a, facts).lines(a.report))
    lb = set(normaliser(ws, b, facts).lines(b.report))
    return sorted(la - lb), sorted(lb - la)
