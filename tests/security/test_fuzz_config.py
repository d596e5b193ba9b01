"""Fuzzing config.json through the real CLI (issue #9): hostile configs never crash,
hang, leak or escape.

Each example starts from the example bundle's config (conftest.base_config) and applies
0-3 mutations: wrong types, huge strings and lists (bounded), deep nesting, `..` paths,
NUL bytes, lone surrogates, unknown fields, negative and huge numbers, hostile mounts,
paths, hooks, namespaces, seccomp, and valid but unusual values (m_valid, so that about a
third run a container); half the examples plant symlinks in the rootfs pointing outside
it (absolute and relative), one in ten gets raw non-UTF-8 bytes. The real
`ociruntime run` runs it (30 s timeout), and each example must:

- either run (stderr empty: the process is `true`, `false` or `exit 3`), or fail with
  exactly one line on stderr, at most MAX_LINE characters, exit 1, no "Traceback" and no
  "internal error", and the same message as the one error record in --log (except the
  init's failures after `start`: see AFTER_START);
- leave nothing: no state dir, no process of the example, no mount under the fuzz
  directory, no cgroup named after the id or the marker, no file named with the marker
  outside the example's own directory (/, /tmp, /run, /dev, /etc, /var/tmp, the fuzz
  directory), the sentinel directory the planted symlinks point at unchanged.

Cost: one shared read-only rootfs (the busybox template) under a per-example overlay
(mounted privately, ~2 ms), so a symlink planted in the rootfs changes only the
example's upper directory. Safety: generated values never name host objects whose
change would matter (real cgroups, namespaces of other processes, real sysctls, host
network interfaces, hook programs other than true/false): a regression must show up as a
failed assertion, not as a damaged host.

Reproducible: derandomized (the same examples on every run, no example database);
FUZZ_EXAMPLES=N changes the count, FUZZ_SEED=N explores other examples.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import OCIRUNTIME, base_config, cgroup_dirs_named
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from test_bad_input import processes_of

from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import MS_BIND, MS_PRIVATE, MS_REC
from testkit.processes import state_dirs

MARK = "fzmark"
MAX_LINE = 1024
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
TIMEOUT = 30
#: Host directories where an escaping path would most likely create something.
WATCHED = ("/", "/tmp", "/run", "/dev", "/etc", "/var/tmp")


# --- the environment shared by every example -------------------------------------------------


class Env:
    """The fuzz directory S (a private bind mount of itself, so no example mount
    propagates anywhere), the sentinel and bind-source directories in it, the state
    root, and the figures."""

    def __init__(self, base: Path, template: Path) -> None:
        self.base, self.template = base, template
        self.sentinel = base / f"{MARK}-sentinel"
        self.bindsrc = base / f"{MARK}-bindsrc"
        self.root = f"/run/ociruntime-fuzz-{uuid.uuid4().hex[:8]}"
        self.counter = 0
        self.figures = {"examples": 0, "ran": 0, "failed": 0, "stderr_only": 0,
                        "tracebacks": 0, "hangs": 0, "leaks": 0}  # fmt: skip
        self.messages: dict[str, int] = {}

    def setup(self) -> None:
        sc.mount(str(self.base), str(self.base), None, MS_BIND)
        sc.mount(None, str(self.base), None, MS_PRIVATE | MS_REC)
        self.sentinel.mkdir()
        (self.sentinel / "secret").write_text("host data\n")
        (self.sentinel / "dir").mkdir()
        self.bindsrc.mkdir()
        self.sentinel_before = snapshot(self.sentinel)
        self.template_before = snapshot(self.template)
        self.watched_before = {d: marked(d) for d in WATCHED}

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        sc.umount2(str(self.base), k.MNT_DETACH)


def snapshot(path: Path) -> list[tuple]:
    """Every entry under path with its type, size and mtime (symlinks not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            st_ = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.join(dirpath, name), st_.st_mode, st_.st_size, st_.st_mtime_ns))
    return sorted(out)


def marked(directory: str | Path) -> set[str]:
    try:
        return {n for n in os.listdir(directory) if MARK in n}
    except OSError:
        return set()


@pytest.fixture(scope="module")
def env(rootfs_template: Path, tmp_path_factory: pytest.TempPathFactory):
    e = Env(tmp_path_factory.mktemp("fuzz"), rootfs_template)
    e.setup()
    try:
        yield e
    finally:
        e.teardown()
    assert cgroup_dirs_named({MARK}) == [] and not _cgroups_marked(), "cgroups left behind"
    print(f"\nfuzz figures: {json.dumps(e.figures)}")
    common = sorted(e.messages.items(), key=lambda kv: -kv[1])[:40]
    print("most common failures:\n" + "\n".join(f"{n:5d} {m}" for m, n in common))
    figures_file = os.environ.get("FUZZ_FIGURES")
    if figures_file:
        Path(figures_file).write_text(json.dumps({"figures": e.figures, "messages": common}))


def _cgroups_marked() -> list[str]:
    """Directories whose name holds the marker, anywhere under /sys/fs/cgroup (slow:
    once, at the end)."""
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(dirpath, d) for d in dirnames if MARK in d]
    return found


# --- values --------------------------------------------------------------------------------

SYMLINKS = ("fzmark-abs", "fzmark-rel", "fzmark-root", "fzmark-tmp")


def hostile_strings(paths: bool = False) -> st.SearchStrategy[str]:
    """Strings a config should never contain, and some it may."""
    simple = st.sampled_from([
        "", "fzmark", "/fzmark", "fzmark\x00x", "/fzmark/\x00", "\ud800", "\udfff fzmark",
        "fzmark\n\r\t\x1b[31m", "é€𝄞fzmark", "../../../../../../tmp/fzmark-esc",
        "/../../../../tmp/fzmark-esc", "/fzmark-abs/fzmark-in", "/fzmark-rel/fzmark-in",
        "/fzmark-root/tmp/fzmark-in", "/fzmark-tmp/fzmark-in", "./fzmark", "//fzmark//x/",
        "/proc/self/fzmark", "/dev/fzmark", "/sys/fzmark", "/.", "/..", ".", "..",
    ])  # fmt: skip
    sized = st.builds(lambda c, n: ("/" if paths else "") + c * n,
                      st.sampled_from(["a", "/", "é", "\x00", ".", "../"]),
                      st.sampled_from([255, 256, 4097, 70_000]))  # fmt: skip
    text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(
        lambda s: f"/{MARK}{s}" if paths else MARK + s
    )
    return st.one_of(simple, sized, text)


NUMBERS = st.sampled_from([
    0, 1, -1, 7, 255, 256, 4096, 2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**63, 2**64,
    -(2**63), -(2**63) - 1, 10**30, 1.5, -0.0, 1e308, 1e-300,
])  # fmt: skip

WRONG_TYPES = st.sampled_from([None, True, False, 0, -1, 1.5, "", "x", [], [None], {}, {"a": 1}])


def any_value() -> st.SearchStrategy[object]:
    return st.one_of(WRONG_TYPES, NUMBERS, hostile_strings(), hostile_strings(paths=True))


def nested_text(depth: int) -> str:
    """JSON text nested `depth` levels (written as text: json.dumps itself would recurse)."""
    half = depth // 2
    return '{"n": ' * half + "[" * (depth - half) + "]" * (depth - half) + "}" * half


# --- mutations of the config ---------------------------------------------------------------
#
# Each is (name, function(config, draw) -> None); `draw` is hypothesis' draw.


def pointers(config: object, prefix: str = "") -> list[str]:
    """JSON pointers in config (the document itself as ""); at most 20 children of each
    container (a huge list would make each draw slow)."""
    out = [prefix]
    if isinstance(config, dict):
        for k, v in list(config.items())[:20]:
            out += pointers(v, f"{prefix}/{k}")
    elif isinstance(config, list):
        for i, v in enumerate(config[:20]):
            out += pointers(v, f"{prefix}/{i}")
    return out


def _parent(config: dict, pointer: str) -> tuple[object, str | int]:
    *parents, last = pointer.split("/")[1:]
    node: object = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    return node, int(last) if isinstance(node, list) else last


def m_set_anywhere(config: dict, draw) -> None:
    """Any existing field: any hostile value (wrong type, number, string)."""
    pointer = draw(st.sampled_from([p for p in pointers(config)[1:] if p not in GUARDED]))
    node, key = _parent(config, pointer)
    node[key] = draw(any_value())  # type: ignore[index]


def m_delete_anywhere(config: dict, draw) -> None:
    pointer = draw(st.sampled_from([p for p in pointers(config)[1:] if p not in GUARDED]))
    node, key = _parent(config, pointer)
    del node[key]  # type: ignore[arg-type]


def m_unknown_field(config: dict, draw) -> None:
    objects = [p for p in pointers(config) if isinstance(_get(config, p), dict)]
    target = _get(config, draw(st.sampled_from(objects)))
    target[draw(st.sampled_from([MARK, f"{MARK}\x00", "x-" + MARK, "\ud800"]))] = draw(any_value())


def _get(config: dict, pointer: str) -> object:
    if not pointer:
        return config
    node, key = _parent(config, pointer)
    return node[key]  # type: ignore[index]


def m_deep(config: dict, draw) -> None:
    """Deep nesting under an unknown field, or in place of a known one."""
    depth = draw(st.sampled_from([10, 63, 64, 65, 66, 1000, 100_000]))
    if draw(st.booleans()):
        config[f"x-{MARK}"] = f"@@DEEP{depth - 1}@@"  # the document is level 1
    else:
        config["process"]["env"] = f"@@DEEP{depth - 2}@@"


def m_huge(config: dict, draw) -> None:
    """Huge strings and lists, up to a little over the 4 MiB config bound."""
    size = draw(st.sampled_from([1000, 70_000, 1_000_000, 4_300_000]))
    where = draw(st.sampled_from(["hostname", "args", "env", "annotations", "mounts", "version"]))
    if where == "hostname":
        config["hostname"] = "h" * size
    elif where == "args":
        config["process"]["args"] = ["true", "x" * size]
    elif where == "env":
        config["process"]["env"] = [f"A{i}=b" for i in range(size // 8)]
    elif where == "annotations":
        config["annotations"] = {f"k{i}": "v" for i in range(size // 10)}
    elif where == "mounts":
        # distinct dicts: one shared object that a later mutation grows would be
        # written size // 20 times (a 70 KB string in each made a 15 GB config.json)
        config["mounts"] = config["mounts"] + [{"destination": 5} for _ in range(size // 20)]
    else:
        config["ociVersion"] = "1." + "0" * size


def m_numbers(config: dict, draw) -> None:
    """Negative and huge numbers where numbers belong."""
    where = draw(st.sampled_from([
        ("process", "user", "uid"), ("process", "user", "gid"), ("process", "user", "umask"),
        ("process", "oomScoreAdj"), ("process", "consoleSize"), ("linux", "resources", "pids"),
        ("linux", "resources", "memory"), ("linux", "resources", "cpu"), ("process", "rlimits"),
        ("process", "user", "additionalGids"),
    ]))  # fmt: skip
    number = draw(NUMBERS)
    node = config
    for key in where[:-1]:
        node = node.setdefault(key, {})
    last = where[-1]
    shapes = {
        "pids": {"limit": number}, "memory": {"limit": number, "swap": number},
        "cpu": {"shares": number, "quota": number, "period": number, "cpus": "0-1"},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": number, "hard": number}],
        "additionalGids": [number], "consoleSize": {"height": number, "width": number},
    }  # fmt: skip
    node[last] = shapes.get(last, number)


def m_mount(config: dict, draw) -> None:
    """A mount whose destination or source is hostile (.., symlinks, NUL, relative...)."""
    kind = draw(st.sampled_from(["tmpfs", "bind", "proc", "sysfs", "devpts", "mqueue",
                                 "fzmarkfs", "", None]))  # fmt: skip
    mount: dict = {"destination": draw(hostile_strings(paths=True))}
    if kind is not None:
        mount["type"] = kind
    mount["source"] = draw(st.sampled_from([
        "tmpfs", "proc", "none", f"/{MARK}-missing", "fzmark-rel", "", "\x00",
        "BINDSRC", "BINDSRC/../fzmark-sentinel-not", "/dev/null",
    ]))  # fmt: skip
    if kind == "bind" or draw(st.booleans()):
        mount["options"] = draw(st.sampled_from([
            ["rbind"], ["bind", "ro"], ["rbind", "rw", "nosuid"], ["bogus"], ["size=1k"],
            ["rbind", "rro"], ["mode=\x00"], [5],
        ]))  # fmt: skip
    config["mounts"] = config["mounts"] + [mount]


def m_paths(config: dict, draw) -> None:
    """Path lists and single paths the runtime resolves inside the rootfs."""
    where = draw(st.sampled_from(["maskedPaths", "readonlyPaths", "cwd", "devices", "root"]))
    value = draw(hostile_strings(paths=True))
    if where in ("maskedPaths", "readonlyPaths"):
        config["linux"][where] = config["linux"].get(where, []) + [value]
    elif where == "cwd":
        config["process"]["cwd"] = value
    elif where == "devices":
        config["linux"]["devices"] = [{"path": value, "type": draw(st.sampled_from("cbup")),
                                       "major": 1, "minor": 3, "fileMode": 0o666}]  # fmt: skip
    else:
        config["root"]["path"] = draw(st.sampled_from([
            "rootfs", "./rootfs", "rootfs/", "rootfs/../rootfs", "../bundle/rootfs",
            f"{MARK}-missing", "", "rootfs\x00", "rootfs/fzmark-abs", "rootfs/fzmark-root",
        ]))  # fmt: skip


def m_process(config: dict, draw) -> None:
    """The process: args, env, user, capabilities, rlimits, hostname."""
    where = draw(st.sampled_from(["args", "env", "caps", "rlimit", "hostname", "user"]))
    proc = config["process"]
    if where == "args":
        proc["args"] = draw(st.sampled_from([
            ["false"], ["sh", "-c", "exit 3"], ["/fzmark-missing"], ["./true"], ["true\x00"],
            ["../../../bin/true"], [""], ["fzmark/true"], ["true", "\x00"], ["/bin"],
        ]))  # fmt: skip
    elif where == "env":
        proc["env"] = [draw(hostile_strings())] + proc.get("env", [])
    elif where == "caps":
        proc["capabilities"]["bounding"] = [draw(st.sampled_from(
            ["CAP_FZMARK", "cap_kill", "CAP_SYS_ADMIN", "", "CAP_\x00", "KILL"]))]  # fmt: skip
    elif where == "rlimit":
        proc["rlimits"] = [{"type": draw(st.sampled_from(
            ["RLIMIT_NOFILE", "RLIMIT_FZMARK", "RLIMIT_CPU", "rlimit_nofile", "RLIMIT_\x00"])),
            "soft": draw(NUMBERS), "hard": draw(NUMBERS)}]  # fmt: skip
    elif where == "hostname":
        config["hostname"] = draw(hostile_strings())
    else:
        proc["user"] = {"uid": draw(NUMBERS), "gid": draw(NUMBERS),
                        "additionalGids": draw(st.lists(NUMBERS, max_size=3))}  # fmt: skip


def _rule(names: list[str], action: str, **extra: object) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": names, "action": action, **extra}]}  # fmt: skip


SECCOMPS = [
    _rule([MARK], "SCMP_ACT_ERRNO"),
    _rule(["x" * 100_000], "SCMP_ACT_KILL"),
    _rule(["mkdir"], "SCMP_ACT_ERRNO", args=[{"index": 99, "value": 2**64, "op": "SCMP_CMP_EQ"}]),
    _rule(["mkdir"], "SCMP_ACT_FZMARK"),
    {"defaultAction": "SCMP_ACT_FZMARK"},
    {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_FZMARK"]},
    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1},
    {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/fzmark-missing"},
]


def m_linux(config: dict, draw) -> None:
    """linux.*: cgroupsPath (always under the marker: never a real cgroup), namespaces
    (never another process's), sysctl (never a real key), seccomp, resources, devices."""
    linux = config["linux"]
    where = draw(st.sampled_from(["cgroupsPath", "namespaces", "sysctl", "seccomp",
                                  "devices", "netDevices", "propagation"]))  # fmt: skip
    if where == "cgroupsPath":
        linux["cgroupsPath"] = draw(st.sampled_from([
            f"/{MARK}-cg/leaf", f"{MARK}-cg", f"/{MARK}-cg/./x/../leaf", f"{MARK}:slice:x",
            f"/{MARK}\x00", f"/{MARK}-" + "c" * 300, f"/{MARK}-cg/" + "d/" * 50, 5, "",
        ]))  # fmt: skip
    elif where == "namespaces":
        kind = draw(st.sampled_from(["network", "ipc", "uts", "cgroup", "fzmark", "user"]))
        ns = {"type": kind}
        path = draw(st.sampled_from([None, f"/{MARK}-missing", "SENTINEL/secret", "SENTINEL",
                                     "relative", "/dev/null", "\x00"]))  # fmt: skip
        if path is not None:
            ns["path"] = path
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != kind] + [ns]
    elif where == "sysctl":
        linux["sysctl"] = {draw(st.sampled_from([
            f"net.{MARK}", f"kernel.{MARK}", f"{MARK}", f"net/../../{MARK}", "net.\x00",
            f"fs.mqueue.{MARK}", "",
        ])): draw(st.sampled_from(["1", "", "\x00", "x" * 5000]))}  # fmt: skip
    elif where == "seccomp":
        linux["seccomp"] = draw(st.sampled_from(SECCOMPS))
    elif where == "devices":
        linux.setdefault("resources", {})["devices"] = [draw(st.sampled_from([
            {"allow": False, "access": "rwm"}, {"allow": True, "type": "z"},
            {"allow": True, "major": -5, "minor": 2**40, "type": "c", "access": "rwm"},
            {"allow": True, "access": "rwmx\x00"},
        ]))]  # fmt: skip
    elif where == "netDevices":
        linux["netDevices"] = {draw(st.sampled_from([f"{MARK}0", "", "a/b", "x" * 20])): {}}
    else:
        linux["rootfsPropagation"] = draw(st.sampled_from(
            ["private", "slave", "shared", "unbindable", "rprivate", MARK]))  # fmt: skip


def m_hooks(config: dict, draw) -> None:
    """Hooks run on the host: only true/false (or programs that cannot exist), with
    hostile paths, args, env and timeouts."""
    stage = draw(st.sampled_from(["prestart", "createRuntime", "createContainer",
                                  "startContainer", "poststart", "poststop", MARK]))  # fmt: skip
    hook: dict = {"path": draw(st.sampled_from([
        "/bin/true", "/bin/false", f"/{MARK}-missing", "true", "/bin/true\x00", "/dev/null",
        "SENTINEL", "/bin/../bin/true",
    ]))}  # fmt: skip
    if draw(st.booleans()):
        hook["args"] = ["true", draw(hostile_strings())]
    if draw(st.booleans()):
        hook["env"] = [draw(hostile_strings())]
    if draw(st.booleans()):
        hook["timeout"] = draw(st.sampled_from([0, 1, -1, 2**63, 1.5, "1"]))
    config["hooks"] = {stage: [hook]}


def m_valid(config: dict, draw) -> None:
    """Valid but unusual values, so that a good share of the examples run a container
    and the hostile ones meet a config that gets far."""
    kind = draw(st.sampled_from(["hostname", "env", "annotations", "mount", "masked", "user",
                                 "cwd", "cgroup", "sysctl", "device", "rlimit", "propagation",
                                 "readonly"]))  # fmt: skip
    linux, proc = config["linux"], config["process"]
    if kind == "hostname":
        config["hostname"] = draw(st.sampled_from([f"{MARK}-host", "a" * 64, "x"]))
    elif kind == "env":
        proc["env"] = proc["env"] + [draw(st.sampled_from(["FZ=1", "FZ=", "=x", "é=€"]))]
    elif kind == "annotations":
        config["annotations"] = {f"{MARK}.io/k": draw(hostile_strings())}
    elif kind == "mount":
        dest = draw(st.sampled_from([f"/{MARK}-ok", f"/fzmark-abs/{MARK}", f"/{MARK}/a/b",
                                     f"/fzmark-rel/{MARK}", f"/fzmark-root/{MARK}"]))  # fmt: skip
        config["mounts"] = config["mounts"] + [
            {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}
        ]
    elif kind == "masked":
        linux["maskedPaths"] = linux["maskedPaths"] + [
            draw(st.sampled_from([f"/{MARK}-none", "/fzmark-abs/secret", "/fzmark-rel/dir",
                                  "/etc/passwd", "/fzmark-root/etc"]))]  # fmt: skip
    elif kind == "readonly":
        linux["readonlyPaths"] = linux["readonlyPaths"] + [
            draw(st.sampled_from(["/fzmark-abs", "/fzmark-rel/dir", "/etc", "/fzmark-tmp"]))
        ]
    elif kind == "user":
        proc["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 2**31 - 1]}
    elif kind == "cwd":
        proc["cwd"] = draw(st.sampled_from(["/tmp", "/fzmark-abs", "/fzmark-rel", "/etc/"]))
    elif kind == "cgroup":
        linux["cgroupsPath"] = f"/{MARK}-cg/ok"
        linux["resources"] = {"pids": {"limit": 100}, "memory": {"limit": 64 << 20}}
    elif kind == "sysctl":
        linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "100"}
    elif kind == "device":
        linux["devices"] = [{"path": draw(st.sampled_from([
            f"/dev/{MARK}", f"/fzmark-abs/{MARK}-dev", f"/fzmark-rel/{MARK}-dev"])),
            "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}]  # fmt: skip
    elif kind == "rlimit":
        proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]
    else:
        linux["rootfsPropagation"] = draw(st.sampled_from(["private", "slave", "shared"]))


#: m_valid three times: about a third of the examples run a container.
MUTATIONS = (m_set_anywhere, m_delete_anywhere, m_unknown_field, m_deep, m_huge, m_numbers,
             m_mount, m_paths, m_process, m_linux, m_hooks, m_valid, m_valid, m_valid)  # fmt: skip
#: Never given an arbitrary value or deleted (m_set_anywhere, m_delete_anywhere): a
#: root.path of "/.." is the host's root (mountpoints would be made there, as runc makes
#: them), a cgroupsPath of "/.." the host's root cgroup (refused now; if that regressed,
#: delete would SIGKILL the host). m_paths and m_linux give them hostile values that stay
#: inside the example.
GUARDED = frozenset(("/root", "/root/path", "/linux", "/linux/cgroupsPath"))


# --- raw-byte mutations --------------------------------------------------------------------

RAW = st.sampled_from([
    *[None] * 36,  # mostly none: 1 in 10 examples gets raw bytes
    ("insert", b"\xff"), ("insert", b"\xc0\x80"), ("insert", b"\xed\xa0\x80"),
    ("insert", b"\x00"), ("insert", b"\xfe\xff"), ("truncate", None), ("bom", None),
    ("append", b" garbage"), ("latin1", None),
])  # fmt: skip


def apply_raw(data: bytes, raw, position: float) -> bytes:
    if raw is None:
        return data
    kind, payload = raw
    at = int(len(data) * position)
    if kind == "insert":
        return data[:at] + payload + data[at:]
    if kind == "truncate":
        return data[:at]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "append":
        return data + payload
    return data.replace(b"true", "tr\u00fce".encode("latin-1"))  # not UTF-8


@st.composite
def cases(draw) -> dict:
    config = base_config(["true"])
    names = []
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), min_size=0, max_size=3)):
        try:
            mutate(config, draw)
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # an earlier mutation took the shape this one expected: skipped
        names.append(mutate.__name__)
    plant = draw(st.sampled_from([None, None, None, "links", "links", "replace"]))
    raw = draw(RAW)
    position = draw(st.floats(0, 1))
    ascii_ = draw(st.booleans())  # \ud800 escaped (JSON) or raw bytes (not UTF-8)
    return {"config": config, "mutations": names, "plant": plant, "raw": raw, "at": position,
            "ascii": ascii_}  # fmt: skip


# --- one example ---------------------------------------------------------------------------


def plant_symlinks(rootfs: Path, env: Env, how: str) -> None:
    """Symlinks out of the rootfs: absolute and relative to the sentinel, to /, to /tmp;
    with "replace" also /tmp and /dev replaced by links to the sentinel."""
    depth = "../" * 12
    os.symlink(str(env.sentinel), rootfs / "fzmark-abs")
    os.symlink(depth + str(env.sentinel).lstrip("/"), rootfs / "fzmark-rel")
    os.symlink("/", rootfs / "fzmark-root")
    os.symlink("/tmp", rootfs / "fzmark-tmp")
    if how == "replace":
        for name in ("tmp", "dev"):
            shutil.rmtree(rootfs / name)
            os.symlink(str(env.sentinel), rootfs / name)


def write_config(bundle: Path, case: dict, env: Env) -> None:
    text = json.dumps(case["config"], ensure_ascii=case["ascii"])
    text = text.replace("BINDSRC", str(env.bindsrc)).replace("SENTINEL", str(env.sentinel))
    if "@@DEEP" in text:
        for depth in (8, 9, 61, 62, 63, 64, 65, 998, 999, 99_998, 99_999):
            text = text.replace(f'"@@DEEP{depth}@@"', nested_text(depth))
    data = text.encode("utf-8", "surrogatepass")  # raw lone surrogates as (invalid) bytes
    assert len(data) < 24 << 20, "the fuzzer's own mutations grew a config past 24 MiB"
    (bundle / "config.json").write_bytes(apply_raw(data, case["raw"], case["at"]))


def run_example(env: Env, case: dict) -> None:
    env.counter += 1
    if os.environ.get("FUZZ_TRACE"):
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            env.counter,
            rss,
            case["mutations"],
            case["plant"],
            case["raw"],
            time.time(),
            file=sys.stderr,
            flush=True,
        )
    example = env.base / f"e{env.counter}"
    bundle, upper, work = example / "bundle", example / "upper", example / "work"
    for d in (bundle / "rootfs", upper, work):
        d.mkdir(parents=True)
    rootfs = bundle / "rootfs"
    sc.mount("overlay", str(rootfs), "overlay", 0,
             f"lowerdir={env.template},upperdir={upper},workdir={work}")  # fmt: skip
    sc.mount(None, str(rootfs), None, MS_PRIVATE)
    cid = f"{MARK}-{env.counter}"
    try:
        if case["plant"]:
            plant_symlinks(rootfs, env, case["plant"])
        write_config(bundle, case, env)
        result = invoke(env, bundle, cid)
        check_outcome(env, case, result)
        state = state_dirs(env.root)
        if state:
            env.figures["leaks"] += 1
            raise AssertionError(f"state dirs left behind: {state}: {case['mutations']}")
    finally:
        busy = cleanup(env, rootfs, cid)
    check_nothing_left(env, example, cid, busy)


def invoke(env: Env, bundle: Path, cid: str) -> tuple[int, str, list[str]]:
    log = bundle.parent / "runtime.log"
    cmd = [OCIRUNTIME, "--root", env.root, "--log", str(log), "--log-format", "json",
           "run", "--bundle", str(bundle), cid]  # fmt: skip
    with open(bundle.parent / "out", "wb") as out, open(bundle.parent / "err", "wb") as err:
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               timeout=TIMEOUT)  # fmt: skip
        except subprocess.TimeoutExpired:
            env.figures["hangs"] += 1
            raise AssertionError(f"hang: no answer in {TIMEOUT} s") from None
    stderr = (bundle.parent / "err").read_bytes().decode(errors="replace")
    records = log.read_text(errors="replace").splitlines() if log.exists() else []
    return p.returncode, stderr, records


#: Failures of the container's init after `start` (startContainer hooks, the last steps
#: before execve): create's pipe is closed by then, so init.py writes the one line to
#: stderr itself and --log gets no record. Counted apart (figures["stderr_only"]), not
#: fixed here: init.py is another change's.
AFTER_START = ("config.json: /hooks/startContainer/", "container init: ")


def check_outcome(env: Env, case: dict, result: tuple[int, str, list[str]]) -> None:
    rc, stderr, records = result
    env.figures["examples"] += 1
    where = f"mutations={case['mutations']} raw={case['raw']} rc={rc} stderr={stderr[:2000]!r}"
    if "Traceback" in stderr or "internal error" in stderr:
        env.figures["tracebacks"] += 1
        raise AssertionError(f"crash: {where}")
    for record in records:
        assert len(record) <= MAX_LINE + 200, f"log record of {len(record)} chars: {where}"
        assert set(json.loads(record)) == {"level", "msg", "time"}, where
    if stderr == "":
        env.figures["ran"] += 1  # the process ran: its exit code is the process's
        return
    env.figures["failed"] += 1
    lines = stderr.splitlines()
    assert len(lines) == 1, f"want one stderr line: {where}"
    assert len(lines[0]) <= MAX_LINE, f"stderr line of {len(lines[0])} chars: {where}"
    assert rc == 1, f"a runtime failure exits 1: {where}"
    errors = [json.loads(r)["msg"] for r in records if json.loads(r)["level"] == "error"]
    if errors == [] and lines[0].startswith(AFTER_START):
        env.figures["stderr_only"] += 1  # a known gap (init.py): see AFTER_START
    else:
        assert errors == [lines[0]], f"want the one error record in --log: {where} {errors!r}"
    key = lines[0][:100]
    env.messages[key] = env.messages.get(key, 0) + 1


def cleanup(env: Env, rootfs: Path, cid: str) -> bool:
    """Whatever the example left, deleted (counted as a leak before or after). True when
    the overlay was still busy (a process or mount of the container still in it)."""
    if os.path.isdir(os.path.join(env.root, cid)):
        subprocess.run([OCIRUNTIME, "--root", env.root, "delete", "--force", cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=TIMEOUT)  # fmt: skip
    shutil.rmtree(env.root, ignore_errors=True)
    try:
        sc.umount2(str(rootfs), 0)
    except OSError:
        sc.umount2(str(rootfs), k.MNT_DETACH)
        return True
    return False


def check_nothing_left(env: Env, example: Path, cid: str, busy: bool) -> None:
    problems = ["the rootfs was still busy"] if busy else []
    if processes_of([example]):
        problems.append("processes")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(env.base) in line.split()[4]]
    if mounts != [str(env.base)]:
        problems.append(f"mounts {mounts}")
    for d in WATCHED:
        if marked(d) != env.watched_before[d]:
            problems.append(f"new entries in {d}: {marked(d) - env.watched_before[d]}")
    if snapshot(env.sentinel) != env.sentinel_before:
        problems.append("the sentinel directory changed")
    ours = {env.sentinel.name, env.bindsrc.name}
    strays = [n for n in os.listdir(env.base) if n not in ours and not n[1:].isdigit()]
    if strays:
        problems.append(f"new entries in the fuzz directory: {strays}")
    if _own_cgroup_left(cid):
        problems.append("cgroups")
    shutil.rmtree(example, ignore_errors=True)
    shutil.rmtree(env.bindsrc, ignore_errors=True)
    env.bindsrc.mkdir()
    if problems:
        env.figures["leaks"] += 1
        raise AssertionError(f"left behind by {cid}: {problems}")


def _own_cgroup_left(cid: str) -> bool:
    """The default place (the id under our own cgroup) and the marker at each hierarchy's
    root, where every generated cgroupsPath starts."""
    from ociruntime.cgroups import cgroupfs

    for h in cgroupfs.hierarchies():
        own = os.path.join(h.mountpoint, h.own_path.lstrip("/"))
        if os.path.exists(os.path.join(own, cid)) or marked(h.mountpoint) or marked(own):
            return True
    return False


# --- the test ------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_SEED" not in os.environ,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@FUZZ_SETTINGS
@given(case=cases())
def test_hostile_configs(env: Env, case: dict) -> None:
    run_example(env, case)


if "FUZZ_SEED" in os.environ:
    test_hostile_configs = seed(int(os.environ["FUZZ_SEED"]))(test_hostile_configs)


def test_the_fuzzer_ran_enough(env: Env) -> None:
    """Runs after test_hostile_configs (same module, file order): the figures are real."""
    f = env.figures
    if f["examples"] == 0:
        pytest.skip("test_hostile_configs did not run")
    assert f["examples"] >= EXAMPLES and f["tracebacks"] == f["hangs"] == f["leaks"] == 0, f
    assert f["ran"] >= EXAMPLES // 10, f"too few examples ran a container: {f}"
