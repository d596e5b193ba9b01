"""The command line as engines and people use it: flags, --version, features, spec,
validate, and the log formats containerd and podman read."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ociruntime.cli import COMMAND_FLAGS, GLOBAL_FLAGS, parse_flags
from ociruntime.container.validation import check_features, check_state
from ociruntime.errors import RuntimeFailure
from ociruntime.signals import parse_signal

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.pure
@pytest.mark.parametrize(
    "argv",
    [
        ["--bundle", "/b", "--pid-file", "/p", "id"],
        ["-b", "/b", "-pid-file", "/p", "id"],
        ["--bundle=/b", "--pid-file=/p", "id"],
    ],
)
def test_go_style_flags(argv):
    parsed = parse_flags(argv, COMMAND_FLAGS["create"], "create")
    assert parsed.options["bundle"] == "/b" and parsed.options["pid_file"] == "/p"
    assert parsed.args == ["id"]


@pytest.mark.pure
def test_flags_stop_at_first_argument():
    parsed = parse_flags(["--force", "id", "--all"], COMMAND_FLAGS["delete"], "delete")
    assert parsed.options["force"] is True and parsed.args == ["id", "--all"]


@pytest.mark.pure
def test_unknown_flag_is_named():
    with pytest.raises(RuntimeFailure, match="flag provided but not defined: -frob"):
        parse_flags(["--frob"], GLOBAL_FLAGS, "ociruntime")


@pytest.mark.pure
@pytest.mark.parametrize(
    ("text", "number"), [("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("9", 9), ("term", 15)]
)
def test_signal_names(text, number):
    assert parse_signal(text) == number


@pytest.mark.pure
@pytest.mark.parametrize("text", ["FOO", "SIGFOO", "65", "0x9"])
def test_bad_signals(text):
    with pytest.raises(RuntimeFailure):
        parse_signal(text)


def test_version_says_what_runcs_says(runtime):
    """runc's lines (version, commit, spec, its language, libseccomp): the same library's
    version as runc reports, this checkout's commit."""
    out = runtime("--version", check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("ociruntime version ")
    assert [ln.split(":")[0] for ln in lines[1:]] == ["commit", "spec", "python", "libseccomp"]
    assert "spec: 1.3.0" in lines
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)  # fmt: skip
    if head.returncode == 0:
        assert f"commit: {head.stdout.strip()[:12]}" in lines
    if os.path.exists("/usr/sbin/runc"):
        runc = subprocess.run(["/usr/sbin/runc", "--version"], capture_output=True, text=True)
        theirs = [ln for ln in runc.stdout.splitlines() if ln.startswith("libseccomp:")]
        assert theirs and theirs[0] in lines


def test_features_is_valid_and_truthful(runtime):
    features = json.loads(runtime("features", check=True).stdout)
    check_features(features)
    assert features["ociVersionMax"] == "1.3.0"
    assert "user" in features["linux"]["namespaces"]
    assert features["linux"]["mountExtensions"]["idmap"]["enabled"] is True
    assert features["linux"]["seccomp"]["enabled"] is True
    assert {"bind", "rbind", "ro", "nosuid"} <= set(features["mountOptions"])


def test_state_output_is_valid(runtime, make_bundle):
    cid = runtime.new_id()
    runtime("create", "--bundle", str(make_bundle(["sleep", "1000"]).path), cid, check=True)
    out = runtime("state", cid, check=True).stdout
    assert not out.endswith("\n")  # as runc
    check_state(json.loads(out))


def test_spec_refuses_to_overwrite(runtime, tmp_path):
    runtime("spec", "--bundle", str(tmp_path), check=True)
    again = runtime("spec", "--bundle", str(tmp_path))
    assert again.returncode == 1 and "config.json exists" in again.stderr


def test_validate_command(runtime, make_bundle):
    bundle = make_bundle(["true"])
    assert runtime("validate", "--bundle", str(bundle.path)).returncode == 0
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": "many", "hard": 1}]
    bundle.write()
    result = runtime("validate", "--bundle", str(bundle.path))
    assert result.returncode == 1
    assert result.stderr.startswith("config.json: /process/rlimits/0/soft: ")


def test_json_log_records(runtime, tmp_path):
    result = runtime("state", "no-such-container")
    assert result.returncode == 1
    assert result.stderr == "container does not exist\n"
    records = [json.loads(line) for line in open(runtime.log)]
    assert list(records[-1]) == ["level", "msg", "time"]
    assert records[-1]["level"] == "error" and records[-1]["msg"] == "container does not exist"


def test_text_error_without_log_file(runtime):
    import subprocess

    from conftest import OCIRUNTIME

    p = subprocess.run([OCIRUNTIME, "--root", runtime.root, "state", "nope"],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 1
    assert p.stderr.startswith('time="')
    assert 'level=error msg="container does not exist"' in p.stderr


def test_unknown_command_exits_3(runtime):
    assert runtime("frobnicate").returncode == 3


def test_preserve_fds(runtime, make_bundle, tmp_path):
    """--preserve-fds N passes fds 3..3+N-1 into the container; fd 3+N is not passed."""
    import subprocess

    from conftest import OCIRUNTIME

    passed, leaked = tmp_path / "passed", tmp_path / "leaked"
    passed.write_text("through-fd-3")
    leaked.write_text("must-not-arrive")
    bundle = make_bundle(["sh", "-c", "cat <&3; echo; cat <&4 || echo fd4-closed"])
    # The shell opens fds 3 and 4 for the runtime only (pytest itself uses low fds).
    cmd = [OCIRUNTIME, "--root", runtime.root, "run", "--preserve-fds", "1", "--bundle",
           str(bundle.path), runtime.new_id()]  # fmt: skip
    p = subprocess.run(["sh", "-c", f'exec "$@" 3<{passed} 4<{leaked}', "sh", *cmd],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["through-fd-3", "fd4-closed"]


@pytest.mark.pure
def test_signal_zero_checks_existence():
    assert parse_signal("0") == 0


@pytest.mark.pure
@pytest.mark.parametrize("text", ["RTMIN", "SIGRTMIN", "RTMIN+1", "SIG_DFL"])
def test_realtime_and_pseudo_names_are_refused_like_runc(text):
    with pytest.raises(RuntimeFailure, match="unknown signal"):
        parse_signal(text)
