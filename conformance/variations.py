"""Generated variations as corpus cases: run conformance/generate.py in a fresh
interpreter (see its docstring for why), then turn each variation into an edit. The
corpus's cases and these are put together by `all_cases` (corpus imports nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conformance import corpus

GENERATOR = Path(__file__).with_name("generate.py")
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def load(count: int) -> list[dict]:
    """`count` variations from the generator; -I keeps the working directory (and every
    project module) out of its imports."""
    proc = subprocess.run(
        [sys.executable, "-I", str(GENERATOR), str(count), json.dumps(corpus.HOST_CAPS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(proc.stdout)


def apply(v: dict) -> corpus.Edit:
    """The variation as an edit of the base config."""

    def edit(config: dict) -> None:
        corpus.namespaces(*v["namespaces"])(config)
        for key in ("hostname", "domainname"):
            if v.get(key):
                config[key] = v[key]
        proc = config["process"]
        proc["user"] = dict(v["user"])
        proc["env"] = [PATH] + [f"{k}={val}" for k, val in dict(v["env"]).items()]
        proc["cwd"] = v["cwd"]
        proc["capabilities"] = v["capabilities"]
        proc["rlimits"] = v["rlimits"]
        proc["noNewPrivileges"] = v["noNewPrivileges"]
        if v["oomScoreAdj"] is not None:
            proc["oomScoreAdj"] = v["oomScoreAdj"]
        config["root"]["readonly"] = v["readonly"]
        config["mounts"] += [dict(m) for m in v["mounts"]]
        _linux_fields(config["linux"], v)

    return edit


def _linux_fields(linux: dict, v: dict) -> None:
    for key in ("rootfsPropagation", "cgroupsPath"):
        if v[key]:
            linux[key] = v[key]
    linux["maskedPaths"] = list(v["maskedPaths"])
    linux["readonlyPaths"] = list(v["readonlyPaths"])
    if v["sysctl"]:
        linux["sysctl"] = dict(v["sysctl"])
    if v["devices"]:
        linux["devices"] = [dict(d) for d in v["devices"]]


def summarise(v: dict) -> str:
    """A short human description of what a variation sets (for RESULTS.md)."""
    user = v["user"]
    parts = [
        "ns=" + ("+".join(v["namespaces"]) or "mount"),
        f"uid={user['uid']} gid={user['gid']}",
        f"caps={len(v['capabilities']['bounding'])}b/{len(v['capabilities']['effective'])}e",
        f"rlimits={len(v['rlimits'])}",
        f"mounts={len(v['mounts'])}",
        "ro-root" if v["readonly"] else "rw-root",
    ]
    if v.get("hostname"):
        parts.append(f"hostname={v['hostname']}")
    if v["sysctl"]:
        parts.append("sysctl=" + ",".join(v["sysctl"]))
    if v["rootfsPropagation"]:
        parts.append(f"rootfsPropagation={v['rootfsPropagation']}")
    if v["cgroupsPath"]:
        parts.append("cgroupsPath=" + ("abs" if v["cgroupsPath"].startswith("/") else "rel"))
    return " ".join(parts)


GENERATED_COUNT = 30


def generated_cases(count: int = GENERATED_COUNT) -> list[corpus.Case]:
    """`count` distinct hypothesis variations, the same ones on every run."""
    return [
        corpus.Case(
            f"gen-{i:02d}",
            "generated",
            "hypothesis variation",
            apply(v),
            summary=summarise(v),
        )
        for i, v in enumerate(load(count))
    ]


def all_cases() -> list[corpus.Case]:
    return corpus.static_cases() + generated_cases() + corpus.later_cases()
