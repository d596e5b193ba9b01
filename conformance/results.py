"""Results: per case and per feature group, totals, and RESULTS.md.

A case passes for a runtime when every MUST check (or lifecycle step) holds. Two
runtimes agree on a case when their normalised reports (or step outcomes) are identical,
or differ only where a documented deviation (deviations.py) explains it; every such
difference is named in RESULTS.md, never hidden. Cases needing a later issue's feature
are listed on their own and never counted.
"""

from __future__ import annotations

import platform
import re
import subprocess
from dataclasses import dataclass, field

from conformance import deviations
from conformance.corpus import LATER_OPERATIONS, Need

OURS, REFERENCE = "ociruntime", "runc"
RUNTIMES = (OURS, REFERENCE)
GROUP_ORDER = (
    "baseline",
    "root",
    "mounts",
    "uts",
    "user",
    "env",
    "cwd",
    "args",
    "capabilities",
    "rlimits",
    "noNewPrivileges",
    "oomScoreAdj",
    "namespaces",
    "devices",
    "maskedPaths",
    "readonlyPaths",
    "sysctl",
    "rootfsPropagation",
    "cgroupsPath",
    "resources",
    "pause",
    "update",
    "events",
    "annotations",
    "terminal",
    "userNamespace",
    "seccomp",
    "netDevices",
    "personality",
    "scheduler",
    "ioPriority",
    "execCPUAffinity",
    "apparmor",
    "selinux",
    "hooks",
    "lifecycle",
    "exec",
    "errors",
    "generated",
)


@dataclass
class CaseResult:
    name: str
    group: str
    doc: str
    kind: str  # "config" or "lifecycle"
    needs: Need | None
    failures: dict[str, list[str]]  # runtime -> failed MUST checks / steps
    notes: dict[str, list[str]]  # runtime -> NOTE-level observations
    only: dict[str, list[str]]  # runtime -> report lines (or outcomes) the other lacks
    outcome: dict[str, str]  # runtime -> how the run ended, in a few words
    #: runtime -> {failure or report line: the id of the deviation that explains it}
    explained: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def counted(self) -> bool:
        return self.needs is None

    def passed(self, runtime: str) -> bool:
        return not self.failures.get(runtime)

    @property
    def identical(self) -> bool:
        return not any(self.only.values())

    @property
    def agrees(self) -> bool:
        """Identical, or different only in documented ways."""
        return not any(self.unexplained_diff(rt) for rt in self.only)

    def why(self, runtime: str, item: str) -> str | None:
        return self.explained.get(runtime, {}).get(item)

    def unexplained_diff(self, runtime: str) -> list[str]:
        return [x for x in self.only.get(runtime, []) if not self.why(runtime, x)]

    def unexplained_failures(self, runtime: str) -> list[str]:
        return [x for x in self.failures.get(runtime, []) if not self.why(runtime, x)]

    def failure_deviations(self, runtime: str) -> set[str]:
        return {d for x in self.failures.get(runtime, []) if (d := self.why(runtime, x))}

    @property
    def deviations(self) -> set[str]:
        return {d for per_runtime in self.explained.values() for d in per_runtime.values()}


@dataclass
class Summary:
    cases: list[CaseResult]
    leftovers: list[str]
    seconds: float
    floor: int | None = None
    partial: bool = False
    tag: str = ""  # the workspace tag every id, cgroup and temp dir of the run carried
    helper_pids: list[int] = field(default_factory=list)  # namespace holders (stopped)

    @property
    def counted(self) -> list[CaseResult]:
        return [c for c in self.cases if c.counted]

    @property
    def later(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.counted]

    def passed(self, runtime: str) -> int:
        return sum(c.passed(runtime) for c in self.counted)

    def leftovers_of(self, runtime: str) -> list[str]:
        """Leftovers are named after container ids, which end in the runtime's name."""
        marker = re.compile(rf"-{runtime[:4]}(?![A-Za-z0-9_])")
        return [x for x in self.leftovers if marker.search(x)]

    def totals_line(self) -> str:
        n = len(self.counted)
        identical = sum(c.identical for c in self.counted)
        agree = sum(c.agrees for c in self.counted)
        return (
            f"ociruntime passes {self.passed(OURS)}/{n}, runc passes {self.passed(REFERENCE)}"
            f"/{n}; the runtimes agree on {agree}/{n} ({identical} identical, "
            f"{agree - identical} different only as documented deviations explain); "
            f"{len(self.later)} later-issue cases listed apart"
        )


def to_json(s: Summary) -> dict:
    return {
        "totals": {
            "cases": len(s.counted),
            "passed": {rt: s.passed(rt) for rt in RUNTIMES},
            "agree": sum(c.agrees for c in s.counted),
            "identical": sum(c.identical for c in s.counted),
            "floor": s.floor,
            "seconds": round(s.seconds, 1),
        },
        "leftovers": {rt: s.leftovers_of(rt) for rt in RUNTIMES},
        "tag": s.tag,
        "helper_pids": s.helper_pids,
        "cases": [_case_json(c) for c in s.cases],
    }


def _case_json(c: CaseResult) -> dict:
    return {
        "name": c.name,
        "group": c.group,
        "kind": c.kind,
        "doc": c.doc,
        "needs": {"feature": c.needs.feature, "issue": c.needs.issue} if c.needs else None,
        "passed": {rt: c.passed(rt) for rt in c.failures},
        "identical": c.identical,
        "agrees": c.agrees,
        "failures": c.failures,
        "notes": c.notes,
        "only": c.only,
        "outcome": c.outcome,
        "deviations": sorted(c.deviations),
        "explained": c.explained,
        "unexplained": {
            rt: c.unexplained_failures(rt) + c.unexplained_diff(rt) for rt in c.failures
        },
    }


# --- RESULTS.md ------------------------------------------------------------------------------


def render_markdown(s: Summary) -> str:
    parts = [
        _header(s),
        _group_table(s),
        deviations.render_markdown({d for c in s.counted for d in c.deviations}),
        _case_table(s),
        _details(s),
        _later_table(s),
        _leftovers(s),
    ]
    return _stable("\n".join(p for p in parts if p), s.tag)


def _stable(text: str, tag: str) -> str:
    """The same text on every run: the run's temp dir and tag (in ids, cgroup names and
    paths) become placeholders."""
    if not tag:
        return text
    text = re.sub(rf"/tmp/{re.escape(tag)}-[^/\s'\"]+", "<workspace>", text)
    return text.replace(tag, "<tag>")


def _header(s: Summary) -> str:
    runc = subprocess.run(["/usr/sbin/runc", "--version"], capture_output=True, text=True)
    version = runc.stdout.splitlines()[0] if runc.stdout else "runc ?"
    partial = "\n**Partial run (--only): not comparable with FLOOR.**\n" if s.partial else ""
    return f"""# Conformance results: ociruntime vs runc

Generated by `.venv/bin/python -m conformance.run` (do not edit by hand). Every config of
`conformance/corpus.py` (static cases, the runtime-spec's examples, hypothesis variations)
runs under both runtimes with `conformance/inspector.sh` as the process. Each report is
checked against what its config.json asks for (runtime-spec config.md, config-linux.md,
runtime-linux.md: `conformance/checks.py`), and the two reports are diffed after
normalisation. runtime.md's lifecycle and the hooks are driven on both runtimes
(`conformance/lifecycle.py`). Where they differ, a documented deviation says who follows
the spec (`conformance/deviations.py`). Reference: {version}, Linux {platform.release()}.
{partial}
**Totals:** {s.totals_line()}. FLOOR (ociruntime's minimum pass count): {s.floor}.
"""


def _mark(passed: int, n: int, deviations: set[str]) -> str:
    cell = f"{'pass' if passed == n else 'FAIL'} {passed}/{n}"
    return cell + (f" ({', '.join(sorted(deviations, key=_dev_key))})" if deviations else "")


def _dev_key(d: str) -> int:
    return int(d[1:]) if d[1:].isdigit() else 0


def _group_table(s: Summary) -> str:
    rows = [
        "## By feature group",
        "",
        "Pass: every case of the group meets its config (the deviations in brackets cause the",
        "failures). Agree: the reports are identical or differ only as the deviations in",
        "the last column explain.",
        "",
        "| group | cases | ociruntime | runc | agree | differences explained by |",
        "|---|--:|---|---|---|---|",
    ]
    for group in sorted({c.group for c in s.counted}, key=_group_key):
        cs = [c for c in s.counted if c.group == group]
        n, agree = len(cs), sum(c.agrees for c in cs)
        cells = [
            _mark(
                sum(c.passed(rt) for c in cs), n, {d for c in cs for d in c.failure_deviations(rt)}
            )
            for rt in RUNTIMES
        ]
        explained = sorted({d for c in cs for d in c.deviations}, key=_dev_key)
        rows.append(
            f"| {group} | {n} | {cells[0]} | {cells[1]} | {'yes' if agree == n else 'NO'} "
            f"{agree}/{n} | {', '.join(explained)} |"
        )
    return "\n".join(rows) + "\n"


def _group_key(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def _case_table(s: Summary) -> str:
    rows = [
        "## By case",
        "",
        "| case | group | what it exercises | ociruntime | runc | agree | deviations |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in sorted(s.counted, key=lambda c: (_group_key(c.group), c.name)):
        agree = "identical" if c.identical else ("yes" if c.agrees else "NO")
        ours, ref = (_case_mark(c, rt) for rt in RUNTIMES)
        devs = ", ".join(sorted(c.deviations, key=_dev_key))
        rows.append(
            f"| {c.name} | {c.group} | {_cell(c.doc)} | {ours} | {ref} | {agree} | {devs} |"
        )
    return "\n".join(rows) + "\n"


def _case_mark(c: CaseResult, runtime: str) -> str:
    """pass, or FAIL with the deviations that explain it (none: a real failure)."""
    if c.passed(runtime):
        return "pass"
    return " ".join(["FAIL", *sorted(c.failure_deviations(runtime), key=_dev_key)])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _details(s: Summary) -> str:
    """Every failure, with the deviation that explains it (or UNEXPLAINED); report
    differences in full when unexplained, counted per deviation otherwise."""
    lines = ["## Failures and differences in detail", ""]
    for c in s.counted:
        items = []
        for rt in RUNTIMES:
            items += [f"  - {rt} fails: {_cell(x)} — {_tag(c, rt, x)}" for x in c.failures[rt]]
            items += [f"  - {rt} note: {_cell(x)} — {_tag(c, rt, x)}" for x in c.notes.get(rt, [])]
            items += [f"  - only {rt}: `{x}` — UNEXPLAINED" for x in c.unexplained_diff(rt)]
        counts: dict[str, int] = {}
        for rt in RUNTIMES:
            for x in c.only.get(rt, []):
                if d := c.why(rt, x):
                    counts[d] = counts.get(d, 0) + 1
        if counts:
            items.append(
                "  - report lines that differ as documented: "
                + ", ".join(
                    f"{n} × {d}" for d, n in sorted(counts.items(), key=lambda i: _dev_key(i[0]))
                )
            )
        if items:
            lines += [f"- **{c.name}**", *items]
    return "\n".join(lines) + "\n"


def _tag(c: CaseResult, runtime: str, item: str) -> str:
    return c.why(runtime, item) or "UNEXPLAINED"


def _later_table(s: Summary) -> str:
    if not s.later and not LATER_OPERATIONS:
        return "## Needs a later issue (listed, not counted)\n\nNothing: every case is counted.\n"
    rows = [
        "## Needs a later issue (listed, not counted)",
        "",
        "Each config is run once under each runtime for the record: what they do today.",
        "",
        "| case | missing feature | issue | ociruntime today | runc |",
        "|---|---|---|---|---|",
    ]
    for c in s.later:
        assert c.needs is not None
        rows.append(
            f"| {c.name} | {c.needs.feature} | {c.needs.issue} | "
            f"{_cell(c.outcome[OURS])} | {_cell(c.outcome[REFERENCE])} |"
        )
    for name, feature, issue in LATER_OPERATIONS:
        rows.append(f"| {name} | {feature} | {issue} | not implemented (an operation) | - |")
    return "\n".join(rows) + "\n"


def _leftovers(s: Summary) -> str:
    """What a runtime left behind (the runner removed it afterwards)."""
    lines = ["## Left behind by a runtime (removed by the runner)", ""]
    for rt in RUNTIMES:
        found = s.leftovers_of(rt)
        if not found:
            lines.append(f"- {rt}: nothing")
        else:
            lines.append(f"- {rt}: {len(found)} cgroup directories, e.g. {_cell(found[0])}")
    return "\n".join(lines) + "\n"
