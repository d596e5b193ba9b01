"""The differential conformance suite (conformance/), run as CI runs everything else.

The runner executes every corpus config and lifecycle scenario under ociruntime and
under runc (~40 s here); its report goes to a temp dir (the tracked
conformance/RESULTS.md is regenerated only by `.venv/bin/python -m conformance.run`, by
hand, so a test run leaves the checkout clean). These tests hold it to:
no regression below conformance/FLOOR; every case that needs only the core features
passes under ociruntime and agrees with runc, except where a documented deviation
(conformance/deviations.py) explains the difference; nothing left behind.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import cgroupfiles
from conformance.corpus import lsm_enabled

REPO = Path(__file__).resolve().parent.parent
FLOOR = REPO / "conformance" / "FLOOR"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not os.path.exists("/usr/sbin/runc"):
        pytest.skip("runc (the reference runtime) is not installed")
    tmp = tmp_path_factory.mktemp("conformance")
    out = tmp / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.run", "--json", str(out),
         "--results", str(tmp / "RESULTS.md")],  # fmt: skip
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), f"the runner wrote no results: {proc.stderr[-2000:]}"
    data = json.loads(out.read_text())
    data["returncode"], data["stderr"] = proc.returncode, proc.stderr
    return data


def core_cases(results: dict) -> list[dict]:
    return [c for c in results["cases"] if c["needs"] is None]


def test_runner_succeeds_and_stays_above_the_floor(results):
    floor = int(FLOOR.read_text().split()[0])
    passed = results["totals"]["passed"]["ociruntime"]
    assert passed >= floor, f"ociruntime passes {passed} cases, FLOOR is {floor}"
    assert results["returncode"] == 0, results["stderr"][-2000:]


def test_core_cases_pass_under_ociruntime(results):
    """Every case that needs only core features passes: no exception, explained or not."""
    failing = {
        c["name"]: c["unexplained"]["ociruntime"] or "explained by a deviation"
        for c in core_cases(results)
        if not c["passed"]["ociruntime"]
    }
    assert failing == {}


def test_core_cases_agree_with_runc(results):
    disagreeing = {c["name"]: c["unexplained"] for c in core_cases(results) if not c["agrees"]}
    assert disagreeing == {}


def test_every_runc_failure_is_documented(results):
    """RESULTS.md says where runc deviates from the spec: nothing may go unexplained."""
    undocumented = {
        c["name"]: c["unexplained"]["runc"] for c in core_cases(results) if c["unexplained"]["runc"]
    }
    assert undocumented == {}


#: Issue #4's features in main: counted like the core, never listed apart.
ISSUE_4_CASES = {
    "terminal",
    "user-namespace",
    "idmapped-mount",
    "seccomp",
    "seccomp-notify",
    "net-devices",
    "exec",
    "personality",
    "scheduler",
    "io-priority",
    "exec-cpu-affinity",
}
#: AppArmor and SELinux: counted refusals where the host lacks the LSM.
LSM_CASES = {"apparmor": "apparmor", "selinux": "selinux", "selinux-mount-label": "selinux"}


def test_issue_4_features_are_counted_and_pass(results):
    """The features of issue #4 that are implemented are counted cases that pass under
    ociruntime (and, by the tests above, agree with runc up to documented deviations)."""
    counted = {c["name"]: c for c in core_cases(results)}
    lsm = {name for name, module in LSM_CASES.items() if not lsm_enabled(module)}
    assert ISSUE_4_CASES | lsm <= set(counted)
    assert {n for n in ISSUE_4_CASES | lsm if not counted[n]["passed"]["ociruntime"]} == set()
    later = {c["name"] for c in results["cases"] if c["needs"]}
    assert ISSUE_4_CASES & later == set(), "implemented features are no longer listed apart"


def test_lsm_refusals_fail_like_runc(results):
    """Without the LSM both runtimes refuse the label (runtime.md create: a property that
    cannot be applied MUST be an error): counted, passing, agreeing."""
    cases = {c["name"]: c for c in core_cases(results)}
    for name, module in LSM_CASES.items():
        if lsm_enabled(module):
            continue
        case = cases[name]
        assert case["passed"] == {"ociruntime": True, "runc": True}, case
        assert all(o.startswith("exit 1: ") for o in case["outcome"].values()), case


#: Issue #5's cgroup cases: linux.resources configs and the pause/update/events operations.
ISSUE_5_CASES = {
    "resources-memory-pids",
    "resources-memory",
    "resources-cpu",
    "resources-blockio",
    "resources-devices",
    "resources-devices-deny",
    "resources-network",
    "pause-resume",
    "update",
    "events",
}


def test_issue_5_cgroup_cases_are_counted_and_pass(results):
    """Issue #5's acceptance: the cgroup cases are counted, pass under ociruntime, and
    (by the tests above) agree with runc up to documented deviations; nothing of #5 is
    listed apart any more. Each resources config checked its limits in the container's
    cgroup files (a case whose checks never ran would pass vacuously)."""
    counted = {c["name"]: c for c in core_cases(results)}
    wanted = ISSUE_5_CASES | ({"resources-hugetlb"} & set(counted))
    assert wanted <= set(counted)
    assert {n for n in wanted if not counted[n]["passed"]["ociruntime"]} == set()
    assert [c["name"] for c in results["cases"] if c["needs"]] == [
        c["name"] for c in results["cases"] if c["needs"] and c["needs"]["issue"] != "#5"
    ]
    deny = counted["resources-devices-deny"]
    assert "D20" in deny["deviations"] and not deny["passed"]["runc"], deny


@pytest.mark.pure
def test_resource_checks_read_the_cgroup_files():
    """The resources checks are not vacuous: the memory-pids case's config asks for the
    files the inspector reads, and a wrong value in one of them fails the case."""
    from conformance import checks, corpus, execute
    from conformance.report import parse

    case = next(c for c in corpus.resource_cases() if c.name == "resources-memory-pids")
    config = case.config()
    probes = [line.split()[1] for line in execute.inspect_conf(config, case) if "cgfile" in line]
    expected = {e.file: e.want for e in cgroupfiles.expected_files(config["linux"]["resources"])}
    assert set(expected) <= set(probes) and len(expected) == 3
    report = "".join(f"cgfile {k} {v}\n" for k, v in expected.items()) + "end\n"
    facts = checks.Facts(config, parse(report), "/nonexistent", "/nonexistent", {})
    assert [c for c in checks.check_resources(facts) if c.failed] == []
    wrong = report.replace(expected[probes[0]], "max", 1)
    facts.report = parse(wrong)
    assert [c.name for c in checks.check_resources(facts) if c.failed]


def test_later_issue_cases_are_listed_not_counted(results):
    later = [c for c in results["cases"] if c["needs"]]
    for case in later:
        assert case["needs"]["issue"] == "#4" and case["needs"]["feature"]
    assert results["totals"]["cases"] == len(core_cases(results))


def test_nothing_left_behind(results):
    tag = results["tag"]
    assert results["leftovers"]["ociruntime"] == []
    assert glob.glob(f"/tmp/{tag}-*") == []
    leftover_cgroups = [p for p, dirs, _ in os.walk("/sys/fs/cgroup") for d in dirs if tag in d]
    assert leftover_cgroups == []
    alive = [pid for pid in results["helper_pids"] if _running(pid)]
    assert alive == [], "namespace holder processes still running"


def _running(pid: int) -> bool:
    """Alive and not a zombie (this host's PID 1 may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


#: A host whose /tmp is a tmpfs (Debian 13, Fedora, Arch), with /srv/data bind-mounted
#: at /data and a second tmpfs mounted over /tmp/over (the later line is on top).
TMPFS_TMP_MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
60 27 0:40 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=4096k
61 27 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw
62 60 0:41 / /tmp/over rw - tmpfs tmpfs rw
63 60 0:42 /a\\040b /tmp/over rw - tmpfs tmpfs rw
"""


@pytest.mark.pure
@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/tmp/ws/bundles/x/shared", "/ws/bundles/x/shared"),  # the tmpfs's own path
        ("/tmp", "/"),
        ("/tmpx/y", "/tmpx/y"),  # not under /tmp: on the root filesystem
        ("/work/bundle/shared", "/work/bundle/shared"),
        ("/data/v/w", "/srv/data/v/w"),  # a host mount that is itself a bind
        ("/tmp/over/z", "/a b/z"),  # the last mount at a point is on top; \040 is a space
    ],
)
def test_bind_source_root_is_relative_to_its_host_mount(path, root):
    """proc(5): mountinfo's root field is a path inside the filesystem, not a host path."""
    from conformance import hostmounts

    assert hostmounts.root_in_filesystem(path, TMPFS_TMP_MOUNTINFO) == root


@pytest.mark.pure
def test_bind_source_check_passes_with_tmp_on_tmpfs(tmp_path, monkeypatch):
    """With /tmp a tmpfs a bind of /tmp/ws/shared shows root /ws/shared (runc's and
    ours alike): the check wants that, not the host path; a wrong root still fails."""
    from conformance import checks, hostmounts
    from conformance.report import parse

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(TMPFS_TMP_MOUNTINFO)
    monkeypatch.setattr(hostmounts, "MOUNTINFO", str(mountinfo))
    config = {"mounts": [{"destination": "/shared", "type": "bind",
                          "source": "/tmp/ws/shared", "options": ["rbind"]}]}  # fmt: skip

    def failed(root: str) -> list[str]:
        line = f"mount /shared ext4 rw,relatime private tmpfs rw {root}\nend\n"
        facts = checks.Facts(config, parse(line), "/nonexistent", "/tmp/ws", {})
        return [c.name for c in checks.check_mounts(facts) if c.failed]

    assert failed("/ws/shared") == []
    assert failed("/tmp/ws/shared") == ["/shared shows the bind source"]
