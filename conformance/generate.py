"""Hypothesis-generated variations of the base config, as plain data.

A strategy draws one valid choice per field group (namespaces, uts names, user, env, cwd,
capabilities, rlimits, noNewPrivileges, oomScoreAdj, root, rootfsPropagation, mounts,
masked/read-only paths, sysctl, devices, cgroupsPath); conformance/variations.py turns
each into an edit of the base config. The choices stay inside what is safe and grantable
on this host (see corpus.py).

Run as a script in its own interpreter (`python -I generate.py COUNT CAPS_JSON`), it
prints the variations as JSON. The separate process is what makes generation
reproducible: besides its seed (derandomize), Hypothesis draws "interesting" constants
from every local module loaded at the time, so in-process results would change with
whatever else was imported, or with any edit to those modules. This file imports only
the standard library and Hypothesis.
"""

from __future__ import annotations

import json
import resource
import sys

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

OPTIONAL_NAMESPACES = ("pid", "network", "ipc", "uts", "cgroup")
NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20).filter(
    lambda s: s[0] != "-" and s[-1] != "-"
)
MOUNT_FLAGS = ("ro", "nosuid", "nodev", "noexec", "noatime", "strictatime", "relatime")
TMPFS_DATA = ("mode=755", "mode=700", "mode=1777", "size=1m", "size=4m")
PROPAGATION = ("private", "shared", "unbindable", "rprivate")
BIND_FLAGS = ("ro", "rw", "nosuid", "nodev", "noexec", "rro", "rnosuid")
MASKABLE = (
    "/secret.txt",
    "/secretdir",
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/sys/firmware",
    "/proc/acpi",
)
READONLY_ABLE = ("/ro-dir", "/ro-file.txt", "/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq")


def variations(count: int, caps: list[str]) -> list[dict]:
    """`count` distinct variations, the same ones on every run.

    Hypothesis starts with the simplest examples and then mutates its favourites, so
    neighbours are near-duplicates: draw ten times as many and keep an evenly spaced
    selection of the distinct ones."""
    drawn: dict[str, dict] = {}

    @settings(
        max_examples=count * 10,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(variation(tuple(caps)))
    def collect(v: dict) -> None:
        drawn.setdefault(json.dumps(v, sort_keys=True), v)

    collect()
    distinct = list(drawn.values())
    step = max(1, len(distinct) // count)
    return distinct[::step][:count]


@st.composite
def variation(draw: st.DrawFn, caps: tuple[str, ...]) -> dict:
    """One choice per field group, as plain data (shown in RESULTS.md)."""
    ns = sorted(draw(st.sets(st.sampled_from(OPTIONAL_NAMESPACES))))
    v: dict = {"namespaces": ns}
    if "uts" in ns:
        v["hostname"] = draw(st.none() | NAME)
        v["domainname"] = draw(st.none() | NAME)
    v["user"] = draw(users())
    v["env"] = draw(
        st.lists(
            st.tuples(st.sampled_from(("A", "B_1", "LONG_NAME")), st.text("ab =:/", max_size=6)),
            max_size=3,
        )
    )
    v["cwd"] = draw(st.sampled_from(("/", "/tmp", "/root", "/home", "/etc")))
    v["capabilities"] = draw(capability_sets(caps))
    v["rlimits"] = draw(rlimits())
    v["noNewPrivileges"] = draw(st.booleans())
    v["oomScoreAdj"] = draw(st.none() | st.integers(0, 1000))
    v["readonly"] = draw(st.booleans())
    v["rootfsPropagation"] = draw(st.none() | st.sampled_from(("shared", "slave", "private")))
    v["mounts"] = draw(st.lists(mounts(), max_size=2))
    v["maskedPaths"] = sorted(draw(st.sets(st.sampled_from(MASKABLE))))
    v["readonlyPaths"] = sorted(draw(st.sets(st.sampled_from(READONLY_ABLE))))
    v["sysctl"] = draw(sysctls(ns))
    v["devices"] = draw(st.lists(devices(), max_size=2, unique_by=lambda d: d["path"]))
    v["cgroupsPath"] = draw(st.sampled_from((None, "/@ID@-gen/leaf", "@ID@-gen/leaf")))
    return v


@st.composite
def users(draw: st.DrawFn) -> dict:
    user = {
        "uid": draw(st.sampled_from((0, 1, 1000, 65534))),
        "gid": draw(st.sampled_from((0, 1, 100, 1000))),
    }
    gids = draw(st.lists(st.sampled_from((5, 10, 100, 1000, 4242)), max_size=3, unique=True))
    if gids:
        user["additionalGids"] = gids
    umask = draw(st.none() | st.sampled_from((0, 0o022, 0o027, 0o077, 0o002)))
    if umask is not None:
        user["umask"] = umask
    return user


@st.composite
def capability_sets(draw: st.DrawFn, caps: tuple[str, ...]) -> dict:
    """bounding ⊇ permitted ⊇ effective, inheritable ⊆ bounding: sets a runtime can
    always install; ambient may ask for more than the kernel allows (it is then left out,
    as the spec's own default does)."""
    pool = st.sampled_from(caps)
    bounding = draw(st.sets(pool, max_size=8))
    permitted = draw(st.sets(st.sampled_from(sorted(bounding)), max_size=6)) if bounding else set()
    effective = draw(st.sets(st.sampled_from(sorted(permitted)))) if permitted else set()
    inheritable = draw(st.sets(st.sampled_from(sorted(bounding)))) if bounding else set()
    ambient = draw(st.sets(st.sampled_from(sorted(bounding)))) if bounding else set()
    return {
        name: sorted(s)
        for name, s in (
            ("bounding", bounding),
            ("permitted", permitted),
            ("effective", effective),
            ("inheritable", inheritable),
            ("ambient", ambient),
        )
    }


def host_hard_limit(name: str) -> int:
    """The runner's hard limit: a container cannot get more without CAP_SYS_RESOURCE."""
    hard = resource.getrlimit(getattr(resource, name))[1]
    return 2**64 - 1 if hard == resource.RLIM_INFINITY else hard


#: type -> (lowest soft that keeps the inspector working, cap on hard)
RLIMIT_RANGES = {
    "RLIMIT_NOFILE": (64, host_hard_limit("RLIMIT_NOFILE")),
    "RLIMIT_CORE": (0, 1 << 30),
    "RLIMIT_NPROC": (1024, min(host_hard_limit("RLIMIT_NPROC"), 1 << 20)),
    "RLIMIT_STACK": (1 << 20, 1 << 28),
    "RLIMIT_MSGQUEUE": (0, host_hard_limit("RLIMIT_MSGQUEUE")),
    "RLIMIT_MEMLOCK": (0, host_hard_limit("RLIMIT_MEMLOCK")),
    "RLIMIT_FSIZE": (1 << 20, 1 << 40),
    "RLIMIT_CPU": (60, 1 << 20),
}


@st.composite
def rlimits(draw: st.DrawFn) -> list[dict]:
    kinds = draw(st.lists(st.sampled_from(sorted(RLIMIT_RANGES)), unique=True, max_size=3))
    out = []
    for kind in kinds:
        low, high = RLIMIT_RANGES[kind]
        hard = draw(st.integers(low, high))
        out.append({"type": kind, "soft": draw(st.integers(low, hard)), "hard": hard})
    return out


@st.composite
def mounts(draw: st.DrawFn) -> dict:
    where = "/gen-" + draw(st.sampled_from(("a", "b", "c", "d")))
    if draw(st.booleans()):
        options = draw(
            st.lists(
                st.sampled_from(MOUNT_FLAGS + TMPFS_DATA + PROPAGATION), unique=True, max_size=4
            )
        )
        return {"destination": where, "type": "tmpfs", "source": "tmpfs", "options": options}
    kind = draw(st.sampled_from(("bind", "rbind")))
    flags = draw(st.lists(st.sampled_from(BIND_FLAGS), unique=True, max_size=3))
    return {
        "destination": where,
        "type": "bind",
        "source": "@BUNDLE@/shared",
        "options": [kind, *flags],
    }


@st.composite
def sysctls(draw: st.DrawFn, ns: list[str]) -> dict:
    """Only in namespaces the container gets new, never the host's."""
    choices = []
    if "ipc" in ns:
        choices += [
            ("kernel.shmmax", "65536"),
            ("kernel.msgmax", "4096"),
            ("fs.mqueue.queues_max", "128"),
        ]
    if "network" in ns:
        choices += [("net.ipv4.ip_forward", "1"), ("net.core.somaxconn", "512")]
    if not choices:
        return {}
    return dict(draw(st.lists(st.sampled_from(choices), unique_by=lambda kv: kv[0], max_size=2)))


@st.composite
def devices(draw: st.DrawFn) -> dict:
    name = draw(st.sampled_from(("gen-null", "gen-zero", "gen-fifo")))
    device = {"path": f"/dev/{name}", "type": "p" if name == "gen-fifo" else "c"}
    if device["type"] == "c":
        device["major"], device["minor"] = 1, (3 if name == "gen-null" else 5)
    device["fileMode"] = draw(st.sampled_from((0o600, 0o644, 0o666)))
    device["uid"] = draw(st.sampled_from((0, 1000)))
    device["gid"] = draw(st.sampled_from((0, 100)))
    return device


def main(argv: list[str]) -> None:
    count, caps = int(argv[1]), json.loads(argv[2])
    json.dump(variations(count, caps), sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
