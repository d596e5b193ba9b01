"""Running one config case under one runtime and judging it.

`run_case` makes the bundle, runs `RUNTIME --root R run --bundle B ID` with stdout on a
file, and parses the inspector's report; `judge` applies the spec checks (or, for a
config the spec says must fail, checks that it failed cleanly); `compare` diffs two
runtimes' normalised reports.

A config with a terminal or a user namespace runs the way an engine runs it instead:
`create` (with `--console-socket` for a terminal: a foreground `runc run` wants the
caller's own terminal), the init's host credentials read while it is created, `start`,
and the report read from the console or from the file the init's stdout is on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from conformance import cgroupfiles, checks, corpus
from conformance.harness import (
    COMMAND_TIMEOUT,
    Invocation,
    NamespaceHolder,
    Workspace,
    cpus_allowed,
    host_namespaces,
    ns_inode,
    tagged_cgroups,
)
from conformance.report import Normaliser, Report, parse
from conformance.results import OURS


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
    host_ids: dict[str, str] = field(default_factory=dict)  # the init's, seen by the host
    host_links: dict[str, list[str]] = field(default_factory=dict)  # moved in: addresses
    agent: dict | None = None  # the seccomp agent's answers, and what it received
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
    lines += [f"netdev {entry.get('name') or key}" for key, entry in _netdevs(config)]
    return lines + _cgroup_probes(linux)


def _cgroup_probes(linux: dict) -> list[str]:
    """The cgroup files a config's resources show in, as the container sees them (plus
    the v1 devices.list), and the device nodes its device rules name."""
    if not cgroupfiles.resources_in_play(linux):
        return []
    files = [e.file for e in cgroupfiles.expected_files(linux["resources"]) if e.where == "inside"]
    placed = cgroupfiles.host_layout().place("devices")
    if placed and placed[0] == "v1":
        files.append(f"{placed[1]}/devices.list")
    lines = [f"cgfile {f}" for f in dict.fromkeys(files)]
    return lines + [f"devaccess {path}" for path in cgroupfiles.device_probes(linux)]


def host_cgroup_files(config: dict) -> list[cgroupfiles.Expected]:
    """Files the container cannot see (a hybrid host's v2 hierarchy): read on the host
    while it is created."""
    linux = config.get("linux") or {}
    if not cgroupfiles.resources_in_play(linux):
        return []
    return [e for e in cgroupfiles.expected_files(linux["resources"]) if e.where == "host"]


def _netdevs(config: dict) -> list[tuple[str, dict]]:
    return list(((config.get("linux") or {}).get("netDevices") or {}).items())


def run_case(ws: Workspace, case: corpus.Case, runtime: str) -> Run:
    cid = ws.container_id(case.name, runtime)
    config = case.config()
    veth = ws.veth(case.name, runtime) if case.veth else None
    extra = {"@VETH@": veth.end} if veth else {}
    agent = None
    if case.agent is not None:
        from testkit.seccomp_agent import SeccompAgent

        extra["@AGENT@"] = f"@{cid}"  # an abstract socket: no file to leave behind
        agent = SeccompAgent(extra["@AGENT@"], dict(case.agent))
    try:
        bundle, final = ws.make_bundle(
            cid, config, dict(corpus.COMMON_FILES), inspect_conf(config, case), extra
        )
        if engine_style(final):
            inv, text, ids, cgfiles = _create_and_start(ws, runtime, cid, bundle, final)
        else:
            inv = ws.runtime(
                runtime, ["run", "--bundle", str(bundle), cid], umask=case.caller_umask
            )
            text, ids, cgfiles = inv.stdout, {}, {}
        uptime = host_uptime()
        (bundle / "report.txt").write_text(text)  # for --keep: what the runtime showed
        (bundle / "stderr.txt").write_text(inv.stderr)
        ws.runtime(runtime, ["delete", "--force", cid])  # only matters if cut short
    finally:
        if veth:
            veth.remove()
        if agent:
            agent.close()
    run = Run(runtime, cid, bundle, final, inv, parse(text), uptime, ids)
    if cgfiles and run.report.complete:
        run.report.keyed.setdefault("cgfile", {}).update(cgfiles)
    if veth:
        run.host_links[veth.end] = [veth.ADDRESS]
    if agent:
        run.agent = {
            "answers": dict(agent.answers),
            "received": list(agent.received),
            "calls": [name for name, _pid, _path in agent.calls],
            "errors": list(agent.errors),
        }
    return run


def engine_style(config: dict) -> bool:
    """A terminal needs a console socket; a user namespace's init, and cgroup files the
    container cannot see, are checked from the host while it exists: all run through
    create + start."""
    kinds = [ns.get("type") for ns in (config.get("linux") or {}).get("namespaces") or []]
    terminal = bool((config.get("process") or {}).get("terminal"))
    return terminal or "user" in kinds or bool(host_cgroup_files(config))


def _create_and_start(
    ws: Workspace, runtime: str, cid: str, bundle: Path, config: dict
) -> tuple[Invocation, str, dict[str, str], dict[str, str]]:
    """create, the init's host credentials and host-side cgroup files, start, the report:
    from the console (the pty turns each newline into CRLF) or from the init's stdout
    file."""
    terminal = bool(config["process"].get("terminal"))
    output = bundle / "stdout.txt"
    args = ["create", "--bundle", str(bundle), cid]
    listener = None
    if terminal:
        from testkit.recvtty import ConsoleSocket  # runc's recvtty protocol

        listener = ConsoleSocket(str(bundle / "console.sock"))
        args[1:1] = ["--console-socket", listener.path]
    try:
        inv = ws.runtime(runtime, args, stdout=output)
        if not inv.ok:
            return inv, "", {}, {}
        ids, cgfiles = _host_ids(ws, runtime, cid), _host_cgfiles(ws, runtime, cid, config)
        started = ws.runtime(runtime, ["start", cid])
        if not started.ok:
            return started, "", ids, cgfiles
        if listener:
            console = listener.accept()
            try:
                text = console.read_to_end(timeout=COMMAND_TIMEOUT).replace("\r\n", "\n")
            finally:
                console.close()
        else:
            _wait_stopped(ws, runtime, cid)
            text = output.read_text(errors="replace")
        return inv, text, ids, cgfiles
    finally:
        if listener:
            listener.close()


def _host_ids(ws: Workspace, runtime: str, cid: str) -> dict[str, str]:
    """Uid and Gid lines of the created init's /proc/PID/status, as the host sees them."""
    state = ws.runtime(runtime, ["state", cid])
    try:
        pid = json.loads(state.stdout)["pid"]
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.rstrip("\n").split(":", 1) for line in f)
    except (ValueError, KeyError, OSError):
        return {}
    return {key: " ".join(fields[key].split()) for key in ("Uid", "Gid")}


def _host_cgfiles(ws: Workspace, runtime: str, cid: str, config: dict) -> dict[str, str]:
    wanted = host_cgroup_files(config)
    if not wanted:
        return {}
    state = ws.runtime(runtime, ["state", cid])
    try:
        pid = json.loads(state.stdout)["pid"]
    except (ValueError, KeyError):
        return {}
    return {e.file: cgroupfiles.host_value(pid, e) for e in wanted}


def _wait_stopped(ws: Workspace, runtime: str, cid: str) -> None:
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < deadline:
        state = ws.runtime(runtime, ["state", cid])
        if not state.ok or json.loads(state.stdout)["status"] == "stopped":
            return
        time.sleep(0.05)


def host_uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def judge(ws: Workspace, case: corpus.Case, run: Run, facts: dict) -> None:
    """Fill in run.checks / run.problems."""
    if case.must_fail:
        _judge_refusal(ws, run, case.error_field)
        return
    if not run.invocation.ok:
        run.problems.append(
            f"run exited {run.invocation.returncode}: {run.invocation.error()[-300:]}"
        )
        return
    run.checks = checks.all_checks(checks_facts(run, facts, case.caller_umask))


def _judge_refusal(ws: Workspace, run: Run, error_field: str = "") -> None:
    """runtime.md "Errors": the error MUST leave things as if never attempted. The spec
    says nothing of the message; this project's rule for ociruntime is one line naming
    the config field (runc's are its own)."""
    if run.invocation.ok:
        run.problems.append("the runtime accepted a config the spec says MUST fail")
        return
    if error_field and run.runtime == OURS:
        lines = [line for line in run.invocation.stderr.splitlines() if line.strip()]
        if len(lines) != 1 or error_field not in lines[0]:
            run.problems.append(f"the error is not one line naming {error_field}: {lines}")
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
        host_ids=run.host_ids,
        host_links=run.host_links,
        runner_cpus=facts["cpus"],
        agent=run.agent,
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
    return {
        "host_ns": host_namespaces(),
        "ns_paths": paths,
        "umask": umask,
        "oom_score_adj": oom,
        "cpus": cpus_allowed("/proc/self/status"),
    }


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
