"""The runc-compatible command line.

Parsed by hand rather than with argparse: engines pass Go-style flags (`-b x`, `--bundle=x`,
`-bundle x`), and the parser must cost nothing on the hot path. As in runc, global flags
come before the command; a command's own flags may also follow its arguments, as urfave/cli
v1 reorders them (`reorder_args`), except for exec and ps, whose trailing arguments belong
to the process.
"""

import _signal
import gc
import posix  # not os: the one-shot commands never load it (pathlite.py)
import sys

from ociruntime import pathlite
from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms)
if TYPE_CHECKING:
    from collections.abc import Callable


def _default_root() -> str:
    """runc's rule: /run/<name> for root; an unprivileged (rootless) caller's own
    $XDG_RUNTIME_DIR/<name>, since it cannot write /run."""
    runtime_dir = posix.environ.get(b"XDG_RUNTIME_DIR", b"").decode(
        sys.getfilesystemencoding(), "surrogateescape"
    )
    if runtime_dir and posix.geteuid() != 0:
        return pathlite.join(runtime_dir, "ociruntime")
    return "/run/ociruntime"


DEFAULT_ROOT = _default_root()


class Flag:
    __slots__ = ("names", "dest", "takes_value", "default")

    def __init__(
        self, names: tuple[str, ...], dest: str, takes_value: bool = False, default: object = None
    ) -> None:
        self.names, self.dest, self.takes_value, self.default = names, dest, takes_value, default


class Parsed:
    __slots__ = ("options", "args")

    def __init__(self, options: dict[str, object], args: list[str] | None = None) -> None:
        self.options, self.args = options, args or []


GLOBAL_FLAGS = (
    Flag(("root",), "root", True, DEFAULT_ROOT),
    Flag(("log",), "log", True, None),
    Flag(("log-format",), "log_format", True, "text"),
    Flag(("debug",), "debug"),
    Flag(("systemd-cgroup",), "systemd_cgroup"),
    Flag(("criu",), "criu", True),
    Flag(("rootless",), "rootless", True),
    Flag(("help", "h"), "help"),
    Flag(("version", "v"), "version"),
)
_BUNDLE = Flag(("bundle", "b"), "bundle", True, "")
_PID_FILE = Flag(("pid-file",), "pid_file", True)
_CONSOLE = Flag(("console-socket",), "console_socket", True)
_CREATE_FLAGS = (
    _BUNDLE,
    _PID_FILE,
    _CONSOLE,
    Flag(("no-pivot",), "no_pivot"),
    Flag(("no-new-keyring",), "no_new_keyring"),
    Flag(("preserve-fds",), "preserve_fds", True, "0"),
)
COMMAND_FLAGS: dict[str, tuple[Flag, ...]] = {
    "create": _CREATE_FLAGS,
    "run": _CREATE_FLAGS
    + (
        Flag(("detach", "d"), "detach"),
        Flag(("no-subreaper",), "no_subreaper"),
        Flag(("keep",), "keep"),
    ),  # fmt: skip
    "start": (),
    "state": (),
    "list": (Flag(("format", "f"), "format", True, "table"), Flag(("quiet", "q"), "quiet")),
    "kill": (Flag(("all", "a"), "all"),),
    "delete": (Flag(("force", "f"), "force"),),
    "spec": (_BUNDLE, Flag(("rootless",), "rootless")),
    "features": (),
    "validate": (_BUNDLE,),
    "ps": (Flag(("format", "f"), "format", True, "table"),),
    "exec": (
        Flag(("process", "p"), "process", True),
        Flag(("tty", "t"), "tty"),
        _CONSOLE,
        Flag(("detach", "d"), "detach"),
        _PID_FILE,
        Flag(("cwd",), "cwd", True),
        Flag(("env", "e"), "env", True, []),
        Flag(("user", "u"), "user", True),
        Flag(("additional-gids", "g"), "additional_gids", True, []),
        Flag(("cap", "c"), "cap", True, []),
        Flag(("no-new-privs",), "no_new_privs"),
        Flag(("preserve-fds",), "preserve_fds", True, "0"),
        Flag(("cgroup",), "cgroup", True, []),
        Flag(("apparmor",), "apparmor", True),
        Flag(("process-label",), "process_label", True),
        Flag(("ignore-paused",), "ignore_paused"),
    ),
    "pause": (),
    "resume": (),
    "events": (Flag(("interval",), "interval", True, "5s"), Flag(("stats",), "stats")),
    "update": (
        Flag(("resources", "r"), "resources", True),
        Flag(("cpu-share", "cpu-shares"), "cpu_share", True),
        # runc 1.1.5's value flags, each named as its option
        *(
            Flag((name,), name.replace("-", "_"), True)
            for name in (
                "blkio-weight cpu-period cpu-quota cpu-burst cpu-rt-period cpu-rt-runtime "
                "cpuset-cpus cpuset-mems kernel-memory kernel-memory-tcp memory cpu-idle "
                "memory-reservation memory-swap pids-limit l3-cache-schema mem-bw-schema"
            ).split()
        ),
    ),
}
_CRIU_FLAGS = (  # shared by checkpoint and restore (runc's names)
    Flag(("image-path",), "image_path", True, ""),
    Flag(("work-path",), "work_path", True, ""),
    Flag(("tcp-established",), "tcp_established"),
    Flag(("ext-unix-sk",), "ext_unix_sk"),
    Flag(("shell-job",), "shell_job"),
    Flag(("file-locks",), "file_locks"),
    Flag(("manage-cgroups-mode",), "manage_cgroups_mode", True, ""),
    Flag(("empty-ns",), "empty_ns", True, ""),
    Flag(("auto-dedup",), "auto_dedup"),
    Flag(("lazy-pages",), "lazy_pages"),
)
COMMAND_FLAGS["checkpoint"] = _CRIU_FLAGS + (
    Flag(("parent-path",), "parent_path", True, ""),
    Flag(("leave-running",), "leave_running"),
    Flag(("page-server",), "page_server", True, ""),
    Flag(("status-fd",), "status_fd", True, ""),
    Flag(("pre-dump",), "pre_dump"),
)
COMMAND_FLAGS["restore"] = _CRIU_FLAGS + (
    _CONSOLE,
    _BUNDLE,
    Flag(("detach", "d"), "detach"),
    _PID_FILE,
    Flag(("no-subreaper",), "no_subreaper"),
    Flag(("no-pivot",), "no_pivot"),
    Flag(("lsm-profile",), "lsm_profile", True, ""),
)
#: Every command's -h/--help: urfave/cli appends it to each command's flags, so reordering
#: moves it too (`runc pause ID -h` prints pause's help).
HELP_FLAG = Flag(("help", "h"), "help")
#: runc's commands with urfave/cli's SkipArgReorder: what follows the id is the process's
#: (exec's command and its arguments, ps's ps(1) options), never runc's.
NO_REORDER = frozenset({"exec", "ps"})


def _is_flag(arg: str, by_name: dict[str, Flag]) -> bool:
    """urfave/cli's argIsFlag: `-x`, `--x` or `--x=v` naming one of the command's flags
    (`-` and `--` never are)."""
    if arg in ("-", "--") or not arg.startswith("-"):
        return False
    name = arg[2:] if arg.startswith("--") else arg[1:]
    return name.partition("=")[0] in by_name


def reorder_args(argv: list[str], flags: tuple[Flag, ...]) -> list[str]:
    """urfave/cli v1.22's reorderArgs, which runc 1.1.5 applies before Go's flag parser:
    the command's known flags (each with the next argument when that is not a known flag,
    bool or not) move in front of the other arguments; the first `--` that is not such a
    value ends the reordering and goes in front of the arguments after the flags. Unknown
    flags stay where they are (so they end up among the arguments). Its quirks are kept:
    `kill ID --all KILL` takes KILL as --all's value, leaving KILL as the container id."""
    by_name = {n: f for f in flags for n in f.names}
    moved: list[str] = []
    rest: list[str] = []
    may_be_value = False
    for i, arg in enumerate(argv):
        if may_be_value and not _is_flag(arg, by_name):
            may_be_value = False
            moved.append(arg)
        elif arg == "--":
            rest = ["--", *rest, *argv[i + 1 :]]
            break
        elif _is_flag(arg, by_name):
            moved.append(arg)
            may_be_value = "=" not in arg
        else:
            rest.append(arg)
    return moved + rest


def parse_flags(argv: list[str], flags: tuple[Flag, ...], where: str) -> Parsed:
    """Go flag semantics: -x and --x alike, `--x=v` or `--x v`; stops at the first
    non-flag argument or at `--`."""
    by_name = {n: f for f in flags for n in f.names}
    parsed = Parsed({f.dest: f.default for f in flags})
    given: dict[str, set[str]] = {}  # dest -> the names it was given as
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None:
            raise RuntimeFailure(f"{where}: flag provided but not defined: -{name}")
        _one_form(flag, given.setdefault(flag.dest, set()), name)
        if flag.takes_value and not eq:
            i += 1
            if i >= len(argv):
                raise RuntimeFailure(f"{where}: flag needs an argument: -{name}")
            value = argv[i]
        if isinstance(flag.default, list):  # repeatable (-e A=1 -e B=2)
            parsed.options[flag.dest] = [*parsed.options[flag.dest], value]  # type: ignore[misc]
        else:
            parsed.options[flag.dest] = value if flag.takes_value else (value or "true") == "true"
        i += 1
    parsed.args = argv[i:]
    return parsed


def parse_command(command: str, argv: list[str]) -> Parsed:
    """A command's flags and arguments as runc 1.1.5 reads them: its flags and -h/--help,
    reordered first unless the command is exec or ps (urfave/cli's SkipArgReorder)."""
    flags = (*COMMAND_FLAGS[command], HELP_FLAG)
    if command not in NO_REORDER:
        argv = reorder_args(argv, flags)
    return parse_flags(argv, flags, command)


def _one_form(flag: Flag, given: set[str], name: str) -> None:
    """urfave/cli's normalizeFlags: `-f --force` is refused (the names in declaration
    order, the later one first, as runc words it); the same form repeated is not."""
    given.add(name)
    if len(given) > 1:
        first, second = (n for n in flag.names if n in given)
        raise RuntimeFailure(f"Cannot use two forms of the same flag: {second} {first}")


def _one_id(parsed: Parsed, command: str, most: int | None = 1) -> str:
    """The container id, first of at least one and at most `most` arguments (None: no
    limit), refused in runc's words (its checkArgs: exact, minimum, maximum)."""
    n = len(parsed.args)
    if most == 1 and n != 1:
        raise RuntimeFailure(f'"{command}" requires exactly 1 argument(s)')
    if n < 1:
        raise RuntimeFailure(f'"{command}" requires a minimum of 1 argument(s)')
    if most is not None and n > most:
        raise RuntimeFailure(f'"{command}" requires a maximum of {most} argument(s)')
    return parsed.args[0]


def _start_cgroup_warm_up() -> None:
    """The first thing `create`, `run` and `exec` do, before importing the command: the
    kernel's first cgroup migration waits for an RCU grace period (~10-25 ms on cgroup
    v1), the longest wait of the whole command, and everything up to the init's join
    can overlap it (cgroups/warmup.py). The installed launcher has usually started it
    already, before importing this module; this covers `python -m ociruntime`."""
    from ociruntime.cgroups import warmup

    warmup.start()


def _create_options(g: dict, p: Parsed, command: str):
    from ociruntime.commands.create import CreateOptions

    o = p.options
    if o["pid_file"]:
        from ociruntime.commands import pidfile

        pidfile.check_dir(str(o["pid_file"]))
    try:
        preserve = int(str(o["preserve_fds"]))
    except ValueError:
        raise RuntimeFailure(f"invalid value for --preserve-fds: {o['preserve_fds']}") from None
    return CreateOptions(
        root=str(g["root"]),
        container_id=_one_id(p, command),
        bundle=str(o["bundle"] or "."),
        pid_file=o["pid_file"],  # type: ignore[arg-type]
        no_pivot=bool(o["no_pivot"]),
        no_new_keyring=bool(o["no_new_keyring"]),
        preserve_fds=preserve,
        console_socket=o["console_socket"],  # type: ignore[arg-type]
        log_until_exec=command == "run",
        systemd_cgroup=bool(g["systemd_cgroup"]),
    )


def _cmd_create(g: dict, p: Parsed) -> int:
    _start_cgroup_warm_up()
    from ociruntime.commands.create import create

    create(_create_options(g, p, "create"))
    return 0


def _cmd_run(g: dict, p: Parsed) -> int:
    _start_cgroup_warm_up()
    from ociruntime.commands.run import run

    o = p.options
    return run(_create_options(g, p, "run"), bool(o["detach"]), bool(o["keep"]))


def _cmd_start(g: dict, p: Parsed) -> int:
    from ociruntime.commands.start import start

    start(str(g["root"]), _one_id(p, "start"))
    return 0


def _cmd_state(g: dict, p: Parsed) -> int:
    from ociruntime.commands.query import state

    sys.stdout.write(state(str(g["root"]), _one_id(p, "state")))  # no newline, as runc
    return 0


def _cmd_list(g: dict, p: Parsed) -> int:
    from ociruntime.commands.query import list_containers

    if p.args:
        raise RuntimeFailure('"list" requires exactly 0 argument(s)')
    sys.stdout.write(
        list_containers(str(g["root"]), str(p.options["format"]), bool(p.options["quiet"]))
    )
    return 0


def _cmd_kill(g: dict, p: Parsed) -> int:
    from ociruntime.commands.kill import kill

    container_id = _one_id(p, "kill", most=2)
    sig = p.args[1] if len(p.args) > 1 else "SIGTERM"
    kill(str(g["root"]), container_id, sig, bool(p.options["all"]))
    return 0


def _cmd_delete(g: dict, p: Parsed) -> int:
    from ociruntime.commands.delete import delete

    delete(str(g["root"]), _one_id(p, "delete"), bool(p.options["force"]))
    return 0


def _cmd_spec(g: dict, p: Parsed) -> int:
    from ociruntime.commands.spec import write_spec

    if p.args:
        raise RuntimeFailure('"spec" requires exactly 0 argument(s)')
    try:
        write_spec(str(p.options["bundle"] or "."), bool(p.options["rootless"]))
    except FileExistsError as e:
        raise RuntimeFailure(str(e)) from None
    return 0


def _cmd_features(g: dict, p: Parsed) -> int:
    import json

    from ociruntime.commands.features import features

    sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    return 0


def _cmd_validate(g: dict, p: Parsed) -> int:
    """create's own checks (commands.create.preflight), so that `valid` means create would
    accept the config; the id only names the default cgroup, which no config can spoil."""
    from ociruntime.cgroups import cgroupfs
    from ociruntime.commands.create import preflight

    if p.args:
        raise RuntimeFailure('"validate" requires exactly 0 argument(s)')
    found = cgroupfs.hierarchies()
    b, _, _ = preflight(str(p.options["bundle"] or "."), "validate", found,
                        systemd=bool(g["systemd_cgroup"]))  # fmt: skip
    sys.stdout.write(f"{b.path}/config.json: valid\n")
    return 0


def _cmd_ps(g: dict, p: Parsed) -> int:
    from ociruntime.commands.ps import ps

    container_id = _one_id(p, "ps", most=None)
    sys.stdout.write(ps(str(g["root"]), container_id, str(p.options["format"]), p.args[1:]))
    return 0


def _cmd_exec(g: dict, p: Parsed) -> int:
    _start_cgroup_warm_up()  # the process joins the container's cgroups
    from ociruntime.commands.exec import ExecOptions, exec_command

    _one_id(p, "exec", most=None)
    opts = ExecOptions(str(g["root"]), p.args[0], p.args[1:], p.options)
    return exec_command(opts)


def _cmd_pause(g: dict, p: Parsed) -> int:
    from ociruntime.commands.pause import pause

    pause(str(g["root"]), _one_id(p, "pause"))
    return 0


def _cmd_resume(g: dict, p: Parsed) -> int:
    from ociruntime.commands.resume import resume

    resume(str(g["root"]), _one_id(p, "resume"))
    return 0


def _cmd_update(g: dict, p: Parsed) -> int:
    from ociruntime.commands.update import update

    update(str(g["root"]), _one_id(p, "update"), p.options)
    return 0


def _cmd_events(g: dict, p: Parsed) -> int:
    from ociruntime.commands.events import events

    container_id = _one_id(p, "events")
    events(str(g["root"]), container_id, str(p.options["interval"]), bool(p.options["stats"]))
    return 0


def _cmd_checkpoint(g: dict, p: Parsed) -> int:
    from ociruntime.commands.checkpoint import CheckpointOptions, checkpoint

    container_id = _one_id(p, "checkpoint")
    checkpoint(str(g["root"]), container_id, CheckpointOptions(p.options, str(g["criu"] or "criu")))
    return 0


def _cmd_restore(g: dict, p: Parsed) -> int:
    from ociruntime.commands.restore import RestoreOptions, restore

    container_id = _one_id(p, "restore")
    if g["systemd_cgroup"]:
        # The scope would have to be started around CRIU's restored init: not built yet.
        raise RuntimeFailure("restore: --systemd-cgroup is not supported yet (cgroupfs only)")
    opts = RestoreOptions(str(g["root"]), container_id, p.options, str(g["criu"] or "criu"))
    return restore(opts)


COMMANDS: "dict[str, Callable[[dict, Parsed], int]]" = {
    "create": _cmd_create,
    "run": _cmd_run,
    "start": _cmd_start,
    "state": _cmd_state,
    "list": _cmd_list,
    "kill": _cmd_kill,
    "delete": _cmd_delete,
    "spec": _cmd_spec,
    "features": _cmd_features,
    "validate": _cmd_validate,
    "ps": _cmd_ps,
    "exec": _cmd_exec,
    "pause": _cmd_pause,
    "resume": _cmd_resume,
    "update": _cmd_update,
    "events": _cmd_events,
    "checkpoint": _cmd_checkpoint,
    "restore": _cmd_restore,
}


def main(argv: list[str] | None = None) -> int:
    from ociruntime.log import LOG, configure

    argv = sys.argv[1:] if argv is None else argv
    try:
        g = parse_flags(argv, GLOBAL_FLAGS, "ociruntime")
        configure(g.options["log"], str(g.options["log_format"]), bool(g.options["debug"]))  # type: ignore[arg-type]
        LOG.stage("cli: imported, flags parsed")
        return _dispatch(g)
    except RuntimeFailure as e:
        LOG.error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug; engines still get one line, not a traceback
        return _internal_error(e)


def _internal_error(e: Exception) -> int:
    """Exit 1 with one line naming the exception (its traceback on stderr with --debug):
    engines parse stderr and the --log file line by line. Every input the tests and the
    fuzzer (tests/security/test_fuzz_config.py) try ends in a RuntimeFailure instead."""
    from ociruntime.log import LOG

    if LOG.threshold <= 10:  # --debug
        import traceback

        traceback.print_exc()
    LOG.error(f"internal error: {type(e).__name__}: {e}")
    return 1


def run_and_exit() -> None:
    """Console-script entry point: main(), then exit without the interpreter's teardown
    (module and GC finalisation cost ~5 ms per command and nothing here needs it).

    SIGINT kills, as it kills runc, instead of raising KeyboardInterrupt wherever the
    command happens to be: an exception there would run a rollback from an arbitrary
    point, and a second ^C would cut that rollback short (a create interrupted while
    making its cgroups left them behind, and one interrupted while taking its lock
    waited for itself). Killed, a command leaves what SIGKILL leaves, which `list`
    shows and `delete --force` removes (see commands/create.py). `run` and `exec`
    forward it to the container once the process runs. Left ignored if it was ignored
    (a background job of a script).

    The cyclic garbage collector is off: a command lives for milliseconds and makes
    almost no cycles, while the collector's passes over the objects the imports make
    (~7,000 for create, and again in the forked init, where they copy pages the parent
    shares) cost 0.5-1.3 ms of CPU per `run` (A/Bs of 60 and 80 interleaved runs, medians
    32.0 -> 30.7 and 33.3 -> 32.8 ms). A command that then waits for long (`run` and
    `exec` in the foreground, `restore` without -d, `events`) turns it back on first
    (`gc.enable()`)."""
    gc.disable()
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    posix._exit(code)


def _dispatch(g: Parsed) -> int:
    opts = g.options
    if opts["version"]:
        from ociruntime.commands.version import version_text

        sys.stdout.write(version_text())
        return 0
    if opts["help"] or not g.args:
        return _help(None)
    if opts["log_format"] not in ("text", "json"):
        raise RuntimeFailure(f"invalid log-format: {opts['log_format']}")
    command, rest = g.args[0], g.args[1:]
    if command in ("help", "h"):
        return _help(rest[0] if rest else None)
    handler = COMMANDS.get(command)
    if handler is None:
        raise RuntimeFailure(f"No help topic for '{command}'", exit_code=3)
    parsed = parse_command(command, rest)
    if parsed.options["help"]:
        return _help(command)
    root = str(opts["root"])
    opts["root"] = pathlite.abspath(root)
    return handler(opts, parsed)


def _specs(flags: tuple[Flag, ...]) -> list[tuple[tuple[str, ...], bool]]:
    """What the help text needs of each flag (helptext imports nothing of cli.py's)."""
    return [(f.names, f.takes_value) for f in flags]


def _help(topic: str | None) -> int:
    """The help text (ociruntime.helptext, imported only here: never on the hot path);
    runc's exit 3 for a topic that is no command."""
    if topic is not None and topic not in COMMANDS:
        raise RuntimeFailure(f"No help topic for '{topic}'", exit_code=3)
    from ociruntime import helptext

    if topic is None:
        sys.stdout.write(helptext.app_help(_specs(GLOBAL_FLAGS), DEFAULT_ROOT))
    else:
        sys.stdout.write(helptext.command_help(topic, _specs(COMMAND_FLAGS[topic])))
    return 0
