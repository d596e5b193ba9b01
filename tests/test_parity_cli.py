"""Issue #11, runc parity of the command line: flags after the container id (urfave/cli's
reordering, none for exec and ps), help for every command, `run --keep`, `exec --cgroup`,
and `validate` refusing what `run` refuses. Each behaviour is compared with runc 1.1.5's,
run side by side where practical (real containers); the pure tests pin what runc was
observed to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Runtime
from test_bad_input import no_leftover_processes  # noqa: F401 - autouse: no process left

from ociruntime.cli import COMMAND_FLAGS, COMMANDS, GLOBAL_FLAGS, main, parse_command, reorder_args
from ociruntime.errors import RuntimeFailure

RUNC = "/usr/sbin/runc"


def last_error(rt: Runtime) -> str:
    """The last error record of a runtime's JSON --log (both write errors there, not to
    stderr), without runc's `/usr/sbin/runc: ` prefix on usage errors."""
    with open(rt.log) as f:
        records = [json.loads(line) for line in f if line.strip()]
    errors = [r["msg"] for r in records if r["level"] == "error"]
    return re.sub(r"^\S*runc: ", "", errors[-1]).strip() if errors else ""


@pytest.fixture
def runc(tmp_path: Path):
    """runc with its own --root; every container it ran deleted afterwards."""
    if not os.path.exists(RUNC):
        pytest.skip("runc (the reference runtime) is not installed")
    rt = Runtime(root=str(tmp_path / "runc-root"), log=str(tmp_path / "runc.log"), binary=RUNC)
    yield rt
    rt.cleanup()


@pytest.fixture
def both(runtime, runc, make_bundle):
    """The same sleeping container running under ociruntime and under runc."""
    bundle = make_bundle(["sleep", "1000"])
    pairs = []
    for rt in (runtime, runc):
        cid = rt.new_id()
        rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)
        pairs.append((rt, cid))
    return pairs


# --- item 5: flags after the container id ------------------------------------------------


@pytest.mark.pure
@pytest.mark.parametrize(
    ("command", "argv", "options", "args"),
    [
        # observed with runc 1.1.5, each: what the command then did
        ("update", ["ID", "--pids-limit", "20"], {"pids_limit": "20"}, ["ID"]),
        ("update", ["ID", "--pids-limit", "-5"], {"pids_limit": "-5"}, ["ID"]),  # rc 0
        (
            "update",
            ["ID", "--pids-limit=7", "-r", "f"],
            {"pids_limit": "7", "resources": "f"},
            ["ID"],
        ),  # fmt: skip
        ("update", ["ID", "--bogus", "1"], {}, ["ID", "--bogus", "1"]),  # needs exactly 1
        ("update", ["ID", "--memory", "--"], {"memory": "--"}, ["ID"]),  # invalid size '--'
        ("kill", ["ID", "--all", "KILL"], {"all": True}, ["KILL", "ID"]),  # no container KILL
        ("kill", ["ID", "KILL", "--all"], {"all": True}, ["ID", "KILL"]),
        ("kill", ["ID", "--", "KILL"], {}, ["ID", "KILL"]),  # the container is killed
        ("state", ["ID", "--"], {}, ["ID"]),  # rc 0
        ("state", ["ID", "--", "x"], {}, ["ID", "x"]),  # needs exactly 1
        ("delete", ["ID", "--force"], {"force": True}, ["ID"]),
        ("delete", ["ID", "-f"], {"force": True}, ["ID"]),
        ("pause", ["ID", "-h"], {"help": True}, ["ID"]),  # pause's help
        ("list", ["extra", "-q"], {"quiet": True}, ["extra"]),  # needs exactly 0
        ("run", ["ID", "-d", "--bundle", "/b"], {"detach": True, "bundle": "/b"}, ["ID"]),
        (
            "create",
            ["ID", "--pid-file=/p", "-b", "/b"],
            {"pid_file": "/p", "bundle": "/b"},
            ["ID"],
        ),  # fmt: skip
        ("events", ["ID", "--stats"], {"stats": True}, ["ID"]),
        ("spec", ["--rootless", "-b", "/b"], {"rootless": True, "bundle": "/b"}, []),
        # exec and ps (SkipArgReorder): everything after the id is the process's
        ("exec", ["ID", "sh", "-c", "ls -l"], {}, ["ID", "sh", "-c", "ls -l"]),
        ("exec", ["ID", "--env", "A=1", "sh"], {"env": []}, ["ID", "--env", "A=1", "sh"]),
        ("exec", ["ID", "--", "sh"], {}, ["ID", "--", "sh"]),  # exec: "--": not found
        ("exec", ["--", "ID", "sh", "-c", "x"], {}, ["ID", "sh", "-c", "x"]),
        ("exec", ["-e", "A=1", "ID", "-h"], {"env": ["A=1"], "help": None}, ["ID", "-h"]),
        ("ps", ["ID", "--format", "json"], {"format": "table"}, ["ID", "--format", "json"]),
        ("ps", ["-f", "json", "ID", "-ef"], {"format": "json"}, ["ID", "-ef"]),
    ],
)
def test_flags_after_the_id_as_runc(command, argv, options, args):
    """urfave/cli v1.22's reorderArgs, as runc 1.1.5 was seen to apply it."""
    parsed = parse_command(command, argv)
    assert {k: parsed.options[k] for k in options} == options
    assert parsed.args == args


@pytest.mark.pure
def test_reorder_moves_only_known_flags():
    flags = COMMAND_FLAGS["kill"]
    assert reorder_args(["a", "--x", "b", "-a"], flags) == ["-a", "a", "--x", "b"]
    assert reorder_args(["a", "-", "--all=true", "b"], flags) == ["--all=true", "a", "-", "b"]


@pytest.mark.pure
def test_two_forms_of_one_flag_are_refused_as_runc():
    """runc: `delete -f --force ID` -> Cannot use two forms of the same flag: f force."""
    for argv in (["-f", "--force", "ID"], ["ID", "--force", "-f"]):
        with pytest.raises(RuntimeFailure, match="^Cannot use two forms of the same flag: f force"):
            parse_command("delete", argv)
    assert parse_command("exec", ["-e", "A=1", "-e", "B=2", "ID"]).options["env"] == [
        "A=1",
        "B=2",
    ]


def test_flags_after_the_id_against_runc(both):
    """The same command lines under both runtimes: the same outcome, limits and output."""
    for rt, cid in both:
        assert rt("update", cid, "--pids-limit", "20").returncode == 0, rt.log
        with open(f"/proc/{rt.state(cid)['pid']}/cgroup") as f:
            pids = next(line.split(":", 2)[2].strip() for line in f if ":pids:" in line)
        assert Path(f"/sys/fs/cgroup/pids{pids}/pids.max").read_text() == "20\n"
        out = rt("exec", cid, "sh", "-c", "echo one two")
        assert (out.returncode, out.stdout) == (0, "one two\n")
        out = rt("exec", "--", cid, "sh", "-c", "echo dashed")
        assert (out.returncode, out.stdout) == (0, "dashed\n")
        assert rt("exec", cid, "--", "true").returncode == 255  # "--" is the command
        assert rt("state", cid, "--").returncode == 0
        assert rt("kill", cid, "--all", "KILL").returncode == 1  # KILL taken for the id
        assert last_error(rt) == "container does not exist"
        assert rt("state", cid, "extra", "-x").returncode == 1
        assert last_error(rt) == '"state" requires exactly 1 argument(s)'
        assert rt("kill").returncode == 1
        assert last_error(rt) == '"kill" requires a minimum of 1 argument(s)'
        assert rt("kill", cid, "KILL", "x").returncode == 1
        assert last_error(rt) == '"kill" requires a maximum of 2 argument(s)'
        assert rt("kill", cid, "--", "KILL").returncode == 0


# --- item 6: help ------------------------------------------------------------------------


def sections(text: str) -> list[str]:
    """The section headers of a urfave/cli help text (NAME:, USAGE:...), in order."""
    return [line for line in text.splitlines() if re.fullmatch(r"[A-Z][A-Z ]*:", line)]


@pytest.mark.pure
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    """`CMD -h`, `CMD --help` and `help CMD`: the same text, exit 0, every flag of the
    command listed with a description, runc's sections."""
    texts = []
    for argv in ([command, "-h"], [command, "--help"], ["help", command], ["h", command]):
        assert main(argv) == 0, argv
        texts.append(capsys.readouterr().out)
    assert len(set(texts)) == 1
    text = texts[0]
    assert text.startswith(f"NAME:\n   ociruntime {command} - ")
    assert sections(text)[:2] == ["NAME:", "USAGE:"]
    for flag in COMMAND_FLAGS[command]:
        long = next(n for n in flag.names if len(n) > 1)
        line = next(x for x in text.splitlines() if x.startswith(f"   --{long}"))
        assert len(line.split("  ", 2)) == 3 and line.split("  ")[-1].strip(), line
    if COMMAND_FLAGS[command]:
        assert "OPTIONS:" in sections(text)


@pytest.mark.pure
def test_top_level_help_has_runcs_layout(capsys):
    """`--help`, `-h`, `help` and no command at all: NAME, USAGE, VERSION, COMMANDS,
    GLOBAL OPTIONS (runc's order, compared with `runc --help` when runc is here); every
    command and every global flag listed."""
    texts = []
    for argv in (["--help"], ["-h"], ["help"], []):
        assert main(argv) == 0, argv
        texts.append(capsys.readouterr().out)
    assert len(set(texts)) == 1
    text = texts[0]
    want = ["NAME:", "USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"]
    assert sections(text) == want
    if os.path.exists(RUNC):
        runc_text = subprocess.run([RUNC, "--help"], capture_output=True, text=True).stdout
        assert sections(runc_text) == want
    listed = text.split("COMMANDS:\n")[1].split("\n\n")[0]
    assert {line.split()[0] for line in listed.splitlines()} == {*COMMANDS, "help,"}
    options = text.split("GLOBAL OPTIONS:\n")[1]
    for flag in GLOBAL_FLAGS:
        assert f"   --{flag.names[0]}" in options, flag.names


@pytest.mark.pure
def test_help_for_no_such_command_exits_3(capsys):
    """runc: `help nosuch` -> No help topic for 'nosuch', exit 3."""
    assert main(["help", "nosuch"]) == 3
    assert "No help topic for 'nosuch'" in capsys.readouterr().err


@pytest.mark.pure
def test_help_text_is_off_the_hot_path():
    """The help module is imported only when help is asked (tests/test_hot_path.py also
    lists it among the modules no hot-path command may import)."""
    code = (
        "import sys, ociruntime.cli as c; assert 'ociruntime.helptext' not in sys.modules;"
        "c.main(['--help']); assert 'ociruntime.helptext' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_help_after_the_id_against_runc(both):
    """`pause ID -h` prints pause's help under both (urfave/cli reorders -h too); exec's
    and ps's -h after the id is the process's."""
    for rt, cid in both:
        out = rt("pause", cid, "-h")
        assert out.returncode == 0 and out.stdout.startswith("NAME:\n"), out
        assert rt.state(cid)["status"] == "running"  # -h did not pause it
        assert rt("exec", cid, "echo", "-h").stdout == "-h\n"


# --- item 10: validate runs create's checks ----------------------------------------------


def _drop(*path: str):
    def edit(cfg: dict) -> None:
        for key in path[:-1]:
            cfg = cfg[key]
        del cfg[path[-1]]

    return edit


def _set(value: object, *path: str):
    def edit(cfg: dict) -> None:
        for key in path[:-1]:
            cfg = cfg.setdefault(key, {})
        cfg[path[-1]] = value

    return edit


def _no_mount_ns(cfg: dict) -> None:
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]


#: configs the schema accepts and create refuses before touching the kernel
REFUSED_BY_CREATE = {
    "args-missing": (_drop("process", "args"), "config.json: /process/args: missing"),
    "args-empty": (_set([], "process", "args"), "config.json: /process/args: must not be empty"),
    "process-missing": (_drop("process"), "config.json: /process: missing"),
    "no-mount-namespace": (
        _no_mount_ns,
        "config.json: /linux/namespaces: unable to restrict sys entries",
    ),
    "intel-rdt": (_set({"closID": "x"}, "linux", "intelRdt"), "Intel RDT is not enabled"),
    "systemd-cgroups-path": (_set("system.slice:a:b", "linux", "cgroupsPath"), "systemd"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BY_CREATE))
def test_validate_refuses_what_run_refuses(runtime, make_bundle, case):
    """Before, validate said `valid` for each of these; now it fails as run does, with the
    same one line (both run create's pre-kernel checks: commands.create.preflight)."""
    edit, needle = REFUSED_BY_CREATE[case]
    bundle = make_bundle(["true"])
    edit(bundle.config)
    bundle.write()
    validate = runtime("validate", "--bundle", str(bundle.path))
    assert validate.returncode == 1 and validate.stdout == "", validate
    said = last_error(runtime)
    assert needle in said, said
    run = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert run.returncode == 1, run
    assert last_error(runtime) == said


def test_missing_args_is_refused_by_runc_too(runc, make_bundle):
    """runc words a missing process.args `args must not be empty`; ours says missing."""
    bundle = make_bundle(["true"])
    del bundle.config["process"]["args"]
    bundle.write()
    assert runc("run", "--bundle", str(bundle.path), runc.new_id()).returncode == 1
    assert last_error(runc).endswith("args must not be empty")


def test_validate_still_accepts_a_config_create_accepts(runtime, make_bundle):
    bundle = make_bundle(["true"])
    bundle.config["process"]["terminal"] = True  # create's console socket is the caller's
    bundle.write()
    out = runtime("validate", "--bundle", str(bundle.path))
    assert (out.returncode, out.stdout) == (0, f"{bundle.path}/config.json: valid\n"), out


# --- item 7: run --keep, exec --cgroup -----------------------------------------------------


def cgroup_paths(rt: Runtime, cid: str) -> dict[str, str]:
    """controller -> directory, from the state record (runc's state.json has the same
    field)."""
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        return json.load(f)["cgroup_paths"]


def test_run_keep_keeps_the_stopped_container_until_delete(runtime, runc, make_bundle, tmp_path):
    """runc: `run --keep` returns the process's status and leaves the container stopped,
    state and cgroups kept (poststop hooks then run at `delete`); without --keep, `run`
    deletes it. Before: ociruntime ignored --keep."""
    bundle = make_bundle(["sh", "-c", "exit 3"])
    for rt in (runtime, runc):
        marker = tmp_path / f"poststop-{Path(rt.binary).name}"
        bundle.config["hooks"] = {
            "poststop": [{"path": "/bin/touch", "args": ["touch", str(marker)]}]
        }
        bundle.write()
        cid = rt.new_id()
        assert rt("run", "--keep", "--bundle", str(bundle.path), cid).returncode == 3
        assert rt.state(cid)["status"] == "stopped"
        dirs = set(cgroup_paths(rt, cid).values())
        assert dirs and all(os.path.isdir(d) for d in dirs)
        assert not marker.exists()
        rt("delete", cid, check=True)
        assert marker.exists() and not any(os.path.isdir(d) for d in dirs)
        assert rt("state", cid).returncode == 1
        other = rt.new_id()
        assert rt("run", "--bundle", str(bundle.path), other).returncode == 3
        assert rt("state", other).returncode == 1  # no --keep: deleted


@pytest.mark.pure
@pytest.mark.parametrize(
    ("args", "paths"),
    [
        (["sub"], {"": "sub"}),
        (["pids:sub"], {"pids": "sub"}),
        (["pids,memory:a/b"], {"pids": "a/b", "memory": "a/b"}),
        ([":sub"], {"": "sub"}),
        (["pids:sub", "pids:x"], {"pids": "x"}),  # runc 1.1.5: the last one
        (["pids:"], {"pids": ""}),
    ],
)
def test_exec_cgroup_argument(args, paths):
    from ociruntime.commands.exec import sub_cgroup_paths

    assert sub_cgroup_paths(args) == paths


@pytest.mark.pure
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a:b:c"], "invalid --cgroup argument: a:b:c"),
        (["sub", "pids:sub"], "invalid --cgroup argument: sub (missing <controller>: prefix)"),
    ],
)
def test_exec_cgroup_argument_refused_as_runc(args, message):
    from ociruntime.commands.exec import sub_cgroup_paths

    with pytest.raises(RuntimeFailure) as e:
        sub_cgroup_paths(args)
    assert str(e.value) == message


@pytest.mark.pure
def test_manager_sub_cgroup(tmp_path):
    """Manager.sub: the directories exec joins instead of the container's."""
    from ociruntime.cgroups.manager import Manager

    pids, cpu = tmp_path / "pids" / "c", tmp_path / "cpu" / "c"
    for d in (pids / "sub", cpu / "sub", pids / "sub" / "deeper"):
        d.mkdir(parents=True)
    m = Manager([str(pids), str(cpu)], [str(pids), str(cpu)], {"pids": str(pids), "cpu": str(cpu)})
    assert m.sub({"pids": "sub"}).dirs == [str(pids / "sub"), str(cpu)]
    assert m.sub({"pids": "/sub/deeper"}).dirs == [str(pids / "sub" / "deeper"), str(cpu)]
    assert m.sub({"": "sub"}).dirs == [str(pids / "sub"), str(cpu / "sub")]
    assert m.sub({"pids": ""}).dirs == m.dirs
    assert m.sub({"pids": "sub"}).created == []  # exec never removes what it joins
    for wanted, message in [
        ({"bogus": "sub"}, "unknown controller bogus in SubCgroupPaths"),
        ({"pids": "../.."}, "../.. is not a sub cgroup path"),
        ({"pids": "../c2"}, "../c2 is not a sub cgroup path"),
        ({"pids": "nosuch"}, f"sub-cgroup {pids}/nosuch: no such file or directory"),
        ({"": "deeper"}, "no such file or directory"),  # not under cpu/c
    ]:
        with pytest.raises(RuntimeFailure, match=re.escape(message)):
            m.sub(wanted)


def test_exec_cgroup_against_runc(both):
    """`exec --cgroup pids:sub` runs the process in the sub-cgroup of that controller only;
    without a prefix, of every hierarchy; refusals exit 255 under both. The exec'd
    process is the container's (ps, kill --all) and its sub-cgroups go with `delete`."""
    for rt, cid in both:
        paths = cgroup_paths(rt, cid)
        for d in set(paths.values()):
            os.mkdir(os.path.join(d, "sub"))
            for name in ("cpuset.cpus", "cpuset.mems"):  # v1: empty in a new cpuset cgroup
                if os.path.exists(os.path.join(d, name)):
                    Path(d, "sub", name).write_text(Path(d, name).read_text())
        out = rt("exec", "--cgroup", "pids:sub", cid, "cat", "/proc/self/cgroup")
        assert out.returncode == 0, last_error(rt)
        lines = dict(line.split(":", 2)[1:] for line in out.stdout.splitlines())
        assert lines["pids"].endswith("/sub") and not lines["memory"].endswith("/sub"), lines
        out = rt("exec", "--cgroup", "sub", cid, "cat", "/proc/self/cgroup")
        assert out.returncode == 0, last_error(rt)
        assert all(line.endswith("/sub") for line in out.stdout.splitlines()), out.stdout
        for bad, said in [
            ("bogus:sub", "unknown controller bogus"),
            ("a:b:c", "invalid --cgroup argument: a:b:c"),
            ("pids:../..", "../.. is not a sub cgroup path"),
            ("pids:nosuch", "no such file or directory"),
        ]:
            assert rt("exec", "--cgroup", bad, cid, "true").returncode == 255, bad
            assert said in last_error(rt), (bad, last_error(rt))
        rt("exec", "-d", "--cgroup", "pids:sub", cid, "sleep", "1000", check=True)
        assert rt("ps", cid).stdout.count("sleep 1000") == 2
        rt("delete", "--force", cid, check=True)
        assert not any(os.path.exists(d) for d in paths.values())
