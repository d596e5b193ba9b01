"""The conformance runner: every corpus config and lifecycle scenario under ociruntime
and under runc, checked against the spec and against each other.

    .venv/bin/python -m conformance.run [--only SUBSTRING] [--jobs N] [--json FILE]

Writes conformance/RESULTS.md and exits non-zero when ociruntime passes fewer cases than
conformance/FLOOR says it did (a regression), or when ociruntime left something behind.
`--only` runs a subset (for debugging: no RESULTS.md, no floor); `--keep` keeps the
bundles, each with the report.txt and stderr.txt of its run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conformance import corpus, deviations, execute, lifecycle, results, variations
from conformance.harness import RUNTIMES, Workspace
from conformance.results import OURS, REFERENCE

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
FLOOR_FILE = HERE / "FLOOR"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="run only cases whose name contains this")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument(
        "--results",
        type=Path,
        help="where to write RESULTS.md (default: conformance/RESULTS.md, but not for --only)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the bundles (with each report.txt) for debugging"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    cases = [c for c in variations.all_cases() if not args.only or args.only in c.name]
    scenarios = [s for s in lifecycle.SCENARIOS if not args.only or args.only in s.name]
    ws = Workspace()
    try:
        for case in cases:
            for name, kinds in case.holders.items():
                ws.holder(name, kinds)
        facts = execute.runner_facts(ws)
        outcome = [
            *run_configs(ws, cases, facts, args.jobs),
            *run_lifecycle(ws, scenarios, args.jobs),
        ]
    finally:
        leftovers = ws.cleanup(keep_files=args.keep)
    summary = results.Summary(
        outcome,
        leftovers,
        time.monotonic() - started,
        floor=read_floor(),
        partial=bool(args.only),
        tag=ws.tag,
        helper_pids=ws.holder_pids,
    )
    target = args.results or (None if args.only else RESULTS_MD)
    if target:
        target.write_text(results.render_markdown(summary))
    if args.json:
        args.json.write_text(json.dumps(results.to_json(summary), indent=2))
    print(summary.totals_line())
    return exit_code(summary, partial=bool(args.only))


def run_configs(
    ws: Workspace, cases: list[corpus.Case], facts: dict, jobs: int
) -> list[results.CaseResult]:
    """Each case under each runtime (in parallel), then judged and compared."""
    by_case = _under_each_runtime(cases, lambda case, rt: execute.run_case(ws, case, rt), jobs)
    for case in cases:
        for run in by_case[case.name].values():
            execute.judge(ws, case, run, facts)
    return [config_result(ws, case, by_case[case.name], facts) for case in cases]


def _under_each_runtime(items: list, run_one: Callable, jobs: int) -> dict[str, dict]:
    """run_one(item, runtime) for each item (a case, a scenario) under each runtime, `jobs`
    at a time: {item's name: {runtime: what run_one returned}}."""
    tasks = [(item, rt) for item in items for rt in RUNTIMES]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(lambda t: run_one(*t), tasks))
    by_name: dict[str, dict] = {}
    for (item, rt), outcome in zip(tasks, outcomes, strict=True):
        by_name.setdefault(item.name, {})[rt] = outcome
    return by_name


def config_result(
    ws: Workspace, case: corpus.Case, runs: dict[str, execute.Run], facts: dict
) -> results.CaseResult:
    ours, ref = runs[OURS], runs[REFERENCE]
    if case.must_fail or not (ours.invocation.ok and ref.invocation.ok):
        only = (_exit_line(ours), _exit_line(ref))
        only = ([], []) if only[0] == only[1] else ([only[0]], [only[1]])
    else:
        only = execute.compare(ws, ours, ref, facts)
    result = results.CaseResult(
        name=case.name,
        group=case.group,
        doc=case.summary or case.doc,
        kind="config",
        needs=case.needs,
        failures={rt: r.failures for rt, r in runs.items()},
        notes={rt: r.notes for rt, r in runs.items()},
        only={OURS: only[0], REFERENCE: only[1]},
        outcome={rt: _outcome(r) for rt, r in runs.items()},
    )
    deviations.explain(result)
    return result


def _exit_line(run: execute.Run) -> str:
    return "run: exit 0" if run.invocation.ok else "run: error"


def _outcome(run: execute.Run) -> str:
    if run.invocation.ok:
        return "ran"
    return f"exit {run.invocation.returncode}: {run.invocation.error()[-300:]}"


def run_lifecycle(
    ws: Workspace, scenarios: list[lifecycle.Scenario], jobs: int
) -> list[results.CaseResult]:
    by_name = _under_each_runtime(scenarios, lambda s, rt: lifecycle.run_scenario(ws, s, rt), jobs)
    return [scenario_result(s, by_name[s.name]) for s in scenarios]


def scenario_result(s: lifecycle.Scenario, ds: dict[str, lifecycle.Driver]) -> results.CaseResult:
    ours, ref = ds[OURS].comparable(), ds[REFERENCE].comparable()
    result = results.CaseResult(
        name=s.name,
        group=s.group,
        doc=s.doc,
        kind="lifecycle",
        needs=None,
        failures={rt: d.verdict() for rt, d in ds.items()},
        notes={rt: [] for rt in ds},
        only={
            OURS: [x for x in ours if x not in ref],
            REFERENCE: [x for x in ref if x not in ours],
        },
        outcome={rt: "; ".join(step.outcome() for step in d.steps) for rt, d in ds.items()},
    )
    deviations.explain(result)
    return result


def read_floor() -> int | None:
    try:
        return int(FLOOR_FILE.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def exit_code(summary: results.Summary, partial: bool) -> int:
    """1 on a regression below the floor or when ociruntime left something behind; a
    partial run (--only) is never held against the floor."""
    if summary.leftovers_of(OURS):
        return 1
    if not partial and summary.floor is not None and summary.passed(OURS) < summary.floor:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
