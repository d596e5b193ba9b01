"""The help text: `ociruntime --help`, `ociruntime help [COMMAND]`, `ociruntime COMMAND -h`.

Laid out as runc's (urfave/cli v1) help is, section by section (NAME, USAGE, VERSION,
COMMANDS, GLOBAL OPTIONS; a command's NAME, USAGE, DESCRIPTION, OPTIONS), since scripts
grep `runc --help` and engines read it the same way. Imported only when help is asked
(cli.py), so the text costs the hot path nothing. The flags themselves come from cli.py's
tables, passed in as (names, takes a value) pairs (this module imports nothing of cli.py's:
no cycle): it adds their descriptions, and a flag without one is a bug
(tests/test_parity_cli.py checks every command's).
"""

from __future__ import annotations

from ociruntime import SPEC_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    #: a flag as cli.py passes it: its names (long first) and whether it takes a value
    FlagSpec = tuple[tuple[str, ...], bool]

_ID_NEW = """Where "<container-id>" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host."""
_ID = 'Where "<container-id>" is the name for the instance of the container.'
_CREATE_DESCRIPTION = """The {cmd} command creates an instance of a container for a bundle.
The bundle is a directory with a specification file named "config.json" and a root
filesystem.

The specification file includes an args parameter. The args parameter is used
to specify command(s) that get run when the container is started. To change the
command(s) that get executed on start, edit the args parameter of the spec. See
"ociruntime spec --help" for more explanation."""

#: command -> (summary, usage after the command's name, text after USAGE, DESCRIPTION)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "checkpoint": ("checkpoint a running container", "[command options] <container-id>", _ID,
                   "The checkpoint command saves the state of the container instance with\n"
                   "CRIU (the criu executable, or --criu PATH)."),
    "create": ("create a container", "[command options] <container-id>", _ID_NEW,
               _CREATE_DESCRIPTION.format(cmd="create")),
    "delete": ("delete any resources held by the container often used with detached "
               "container", "[command options] <container-id>", _ID,
               "A stopped container's state and cgroup are removed; --force kills a running\n"
               "one first."),
    "events": ("display container events such as OOM notifications, cpu, memory, and IO "
               "usage statistics", "[command options] <container-id>", _ID,
               "The events command displays information about the container. By default the\n"
               "information is displayed once every 5 seconds."),
    "exec": ("execute new process inside the container",
             "[command options] <container-id> <command> [command options]  || "
             "-p process.json <container-id>",
             'Where "<container-id>" is the name for the instance of the container and\n'
             '"<command>" is the command to be executed in the container.\n'
             '"<command>" can\'t be empty unless a "-p" flag provided.\n\n'
             "Flags go before <container-id>: everything after it is the command's.\n\n"
             "EXAMPLE:\n"
             "For example, if the container is configured to run the linux ps command the\n"
             "following will output a list of processes running in the container:\n\n"
             "       # ociruntime exec <container-id> ps", ""),
    "features": ("show the enabled features", "[arguments...]", "",
                 "Show the enabled features.\nThe result is parsable as a JSON."),
    "kill": ("kill sends the specified signal (default: SIGTERM) to the container's init "
             "process", "[command options] <container-id> [signal]",
             'Where "<container-id>" is the name for the instance of the container and\n'
             '"[signal]" is the signal to be sent to the init process.\n\n'
             'EXAMPLE:\nFor example, the following sends a "KILL" signal to the init process\n'
             'of the "ubuntu01" container:\n\n       # ociruntime kill ubuntu01 KILL', ""),
    "list": ("lists containers started by ociruntime with the given root",
             "[command options]",
             'Where the given root is specified via the global option "--root".', ""),
    "pause": ("pause suspends all processes inside the container", "<container-id>", _ID,
              "The pause command suspends all processes in the instance of the container."),
    "ps": ("ps displays the processes running inside a container",
           "[command options] <container-id> [ps options]",
           "Flags go before <container-id>: everything after it is passed to ps(1).", ""),
    "resume": ("resumes all processes that have been previously paused", "<container-id>",
               _ID, "The resume command resumes all processes in the instance of the "
               "container."),
    "restore": ("restore a container from a previous checkpoint",
                "[command options] <container-id>",
                'Where "<container-id>" is the name for the instance of the container to be\n'
                "restored.", "Restores the saved state of the container instance that was "
                "previously saved\nusing the ociruntime checkpoint command."),
    "run": ("create and run a container", "[command options] <container-id>", _ID_NEW,
            _CREATE_DESCRIPTION.format(cmd="run")),
    "spec": ("create a new specification file", "[command options] [arguments...]", "",
             'The spec command creates the new specification file named "config.json" for\n'
             "the bundle: runc's defaults, a starter file to edit (its args call \"sh\")."),
    "start": ("executes the user defined process in a created container", "<container-id>",
              _ID_NEW, "The start command executes the user defined process in a created "
              "container."),
    "state": ("output the state of a container", "<container-id>", _ID,
              "The state command outputs current state information for the\n"
              "instance of a container."),
    "update": ("update container resource constraints", "[command options] <container-id>",
               _ID, "With --resources (-r) FILE or - (standard input), a JSON object of\n"
               "linux.resources; then every other option is ignored."),
    "validate": ("check a bundle's config.json as create would, without creating anything",
                 "[command options]", "",
                 "Every check create makes before it touches the kernel: the schema, the\n"
                 "fields create refuses, the features this host lacks."),
}  # fmt: skip

#: One line a flag (continued on indented lines): `[command] flag: description`, the
#: command given where its flag reads differently from the same flag elsewhere.
_FLAG_TEXT = """
bundle: path to the root of the bundle directory, defaults to the current directory
spec bundle: path to the root of the bundle directory
console-socket: path to an AF_UNIX socket which will receive a file descriptor
    referencing the master end of the console's pseudoterminal
pid-file: specify the file to write the process id to
no-pivot: do not use pivot root to jail process inside rootfs.  This should be used
    whenever the rootfs is on top of a ramdisk
no-new-keyring: do not create a new session keyring for the container.  This will cause
    the container to inherit the calling processes session key
preserve-fds: Pass N additional file descriptors to the container (stdio + $LISTEN_FDS +
    N in total) (default: 0)
detach: detach from the container's process
no-subreaper: disable the use of the subreaper used to reap reparented processes
keep: do not delete the container after it exits
format: select one of: table or json (default: "table")
quiet: display only container IDs
all: send the specified signal to all processes inside the container
force: Forcibly deletes the container if it is still running (uses SIGKILL)
spec rootless: generate a configuration for a rootless container
process: path to the process.json
tty: allocate a pseudo-TTY
cwd: current working directory in the container
env: set environment variables
user: UID (format: <uid>[:<gid>])
additional-gids: additional gids
cap: add a capability to the bounding set for the process
no-new-privs: set the no new privileges value for the process
apparmor: set the apparmor profile for the process
process-label: set the asm process label for the process commonly used with selinux
cgroup: run the process in an (existing) sub-cgroup(s). Format is
    [<controller>:]<cgroup>.
ignore-paused: allow exec in a paused container
image-path: path for saving criu image files (default: ./checkpoint)
restore image-path: path to criu image files for restoring (default: ./checkpoint)
work-path: path for saving work files and logs (default: the image path)
parent-path: path for previous criu image files in pre-dump (relative to --image-path)
leave-running: leave the process running after checkpointing
tcp-established: allow open tcp connections
ext-unix-sk: allow external unix sockets
shell-job: allow shell jobs
file-locks: handle file locks, for safety
manage-cgroups-mode: cgroups mode: 'soft' (default), 'full', 'strict' and 'ignore'
empty-ns: create a namespace, but don't restore its properties (only: network)
auto-dedup: enable auto deduplication of memory images
lazy-pages: use userfaultfd to lazily restore memory pages
page-server: ADDRESS:PORT of the page server
status-fd: criu writes a NUL byte to this FD once lazy-pages is ready (ignored)
pre-dump: dump container's memory information only, leave the container running after this
lsm-profile: Specify an LSM profile to be used during restore in the form of TYPE:NAME
restore detach: detach from the container's process
restore no-pivot: accepted for runc's sake; CRIU builds the root itself
interval: set the stats collection interval (default: 5s)
stats: display the container's stats then exit
resources: path to the file containing the resources to update or '-' to read from the
    standard input
cpu-share: CPU shares (relative weight vs. other containers)
blkio-weight: Specifies per cgroup weight, range is from 10 to 1000 (default: 0)
cpu-period: CPU CFS period to be used for hardcapping (in usecs). 0 to use system
    default
cpu-quota: CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period
cpu-burst: CPU CFS hardcap burst limit (in usecs). Allowed accumulated cpu time
    additionally for burst a given period
cpu-rt-period: CPU realtime period to be used for hardcapping (in usecs). 0 to use
    system default
cpu-rt-runtime: CPU realtime hardcap limit (in usecs). Allowed cpu time in a given
    period
cpuset-cpus: CPU(s) to use
cpuset-mems: Memory node(s) to use
kernel-memory: Kernel memory limit (in bytes) (ignored, as by runc)
kernel-memory-tcp: Kernel memory limit for tcp buffer (in bytes) (ignored)
memory: Memory limit (in bytes)
cpu-idle: set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE
memory-reservation: Memory reservation or soft_limit (in bytes)
memory-swap: Total memory usage (memory + swap); set '-1' to enable unlimited swap
pids-limit: Maximum number of pids allowed in the container (default: 0)
l3-cache-schema: The string of Intel RDT/CAT L3 cache schema
mem-bw-schema: The string of Intel RDT/MBA memory bandwidth schema
help: show help
root: root directory for storage of container state (this should be located in tmpfs)
    (default: {root})
log: set the log file to write ociruntime logs to (default is '/dev/stderr')
log-format: set the log format ('text' (default), or 'json') (default: "text")
debug: enable debug logging
systemd-cgroup: enable systemd cgroup support, expects cgroupsPath to be of form
    "slice:prefix:name" for e.g. "system.slice:runc:434234"
criu: path to the criu binary used for checkpoint and restore (default: "criu")
rootless: ignore cgroup permission errors ('true', 'false', or 'auto') (default: "auto")
version: print the version
"""


def _flag_table(text: str) -> dict[tuple[str, str], str]:
    """(command or "", the flag's first name) -> its description; "" for any command."""
    table: dict[tuple[str, str], str] = {}
    key = ("", "")
    for line in text.strip("\n").splitlines():
        if line.startswith("    "):
            table[key] += " " + line.strip()
            continue
        name, _, description = line.partition(": ")
        command, _, flag = name.rpartition(" ")
        key = (command, flag)
        table[key] = description
    return table


FLAGS = _flag_table(_FLAG_TEXT)

_NAME_TEXT = """ociruntime is a command line client for running applications packaged according
to the Open Container Initiative (OCI) format and is a compliant implementation of the
Open Container Initiative specification, with runc's command line.

To start a new instance of a container:

    # ociruntime run [ -b bundle ] <container-id>

Where "<container-id>" is your name for the instance of the container that you
are starting. Providing the bundle directory using "-b" is optional. The default
value for "bundle" is the current directory."""


def describe(command: str, names: tuple[str, ...]) -> str:
    """A flag's description; KeyError when it has none (a test catches that)."""
    return FLAGS.get((command, names[0])) or FLAGS[("", names[0])]


def _options(command: str, flags: Iterable[FlagSpec], root: str = "") -> str:
    """urfave/cli's flag lines: `--name value, -n value` (value only when the flag takes
    one), descriptions aligned two spaces after the longest."""
    rows = []
    for flag_names, takes_value in flags:
        value = " value" if takes_value else ""
        names = ", ".join(("-" if len(n) == 1 else "--") + n + value for n in flag_names)
        rows.append((names, describe(command, flag_names).replace("{root}", f'"{root}"')))
    width = max(len(names) for names, _ in rows) + 2
    return "".join(f"   {names.ljust(width)}{text}\n" for names, text in rows)


def app_help(global_flags: Iterable[FlagSpec], root: str) -> str:
    """`ociruntime --help`: runc's sections, in its order."""
    names = sorted(COMMANDS) + ["help, h"]
    width = max(len(n) for n in names) + 2
    summaries = {**{c: v[0] for c, v in COMMANDS.items()},
                 "help, h": "Shows a list of commands or help for one command"}  # fmt: skip
    commands = "".join(f"   {n.ljust(width)}{summaries[n]}\n" for n in names)
    return (
        f"NAME:\n   ociruntime - Open Container Initiative runtime\n\n{_NAME_TEXT}\n\n"
        "USAGE:\n   ociruntime [global options] command [command options] [arguments...]\n\n"
        f"VERSION:\n   {__version__}\nspec: {SPEC_VERSION}\n\n"
        f"COMMANDS:\n{commands}\n"
        f"GLOBAL OPTIONS:\n{_options('', global_flags, root)}"
    )


def command_help(command: str, flags: Iterable[FlagSpec]) -> str:
    """`ociruntime COMMAND --help` (or `help COMMAND`): NAME, USAGE, DESCRIPTION, OPTIONS."""
    summary, usage, after_usage, description = COMMANDS[command]
    text = f"NAME:\n   ociruntime {command} - {summary}\n\n"
    text += f"USAGE:\n   ociruntime {command} {usage}\n\n"
    if after_usage:
        text += f"{after_usage}\n\n"
    if description:
        text += "DESCRIPTION:\n   " + description + "\n\n"
    flags = tuple(flags)
    return text + (f"OPTIONS:\n{_options(command, flags)}" if flags else "")
