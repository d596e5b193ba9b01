"""No import cycle anywhere in the repo: every .py of the runtime, the tests, the
conformance suite, the benchmarks, testkit, tools and schemas parsed with `ast`, each
import (at module level or inside a function) an edge to the repo's file it loads; a cycle
fails the test, named file by file.

A name is looked up as Python would find it here: relative to the file's package, then in
the first folder above the file that is not a package (pytest's rootdir-style sys.path
entry for tests/, a script's own folder for bench/ and tools/), then in the repo root."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TREES = ("ociruntime", "tests", "conformance", "bench", "testkit", "tools", "schemas")


def python_files() -> list[Path]:
    return sorted(p for tree in TREES for p in (REPO / tree).rglob("*.py"))


def base_dir(path: Path) -> Path:
    """The first folder above `path` that is not a package."""
    folder = path.parent
    while (folder / "__init__.py").exists():
        folder = folder.parent
    return folder


def module_file(root: Path, dotted: str) -> Path | None:
    """The repo file that `dotted` names under `root` (a module or a package)."""
    if not dotted:
        return None
    target = root.joinpath(*dotted.split("."))
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file() and REPO in candidate.parents:
            return candidate
    return None


def resolve(path: Path, dotted: str, level: int) -> list[Path]:
    """The files an import of `dotted` loads: the module and each package above it."""
    if level:
        package = path.parent
        for _ in range(level - 1):
            package = package.parent
        roots = [package]
    else:
        roots = [base_dir(path), REPO]
    for root in roots:
        parts = dotted.split(".") if dotted else []
        found = [module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
        if found and found[-1] is not None:
            return [f for f in found if f is not None]
        if not parts and (root / "__init__.py").is_file():
            return [root / "__init__.py"]
    return []


def imports_of(path: Path) -> set[Path]:
    edges: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                edges.update(resolve(path, alias.name, 0))
        elif isinstance(node, ast.ImportFrom):
            base = resolve(path, node.module or "", node.level)
            edges.update(base)
            prefix = f"{node.module}." if node.module else ""
            for alias in node.names:  # `from package import module`
                edges.update(resolve(path, prefix + alias.name, node.level)[-1:])
    edges.discard(path)
    return edges


@functools.cache
def import_graph() -> dict[Path, set[Path]]:
    return {path: imports_of(path) for path in python_files()}


def cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """The strongly connected components of more than one file (Tarjan), each sorted."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    found: list[list[Path]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def one_cycle(graph: dict[Path, set[Path]], component: list[Path]) -> list[Path]:
    """A shortest import path from the component's first file back to itself."""
    members = set(component)
    start = component[0]
    paths = {succ: [start, succ] for succ in graph[start] if succ in members}
    frontier = list(paths)
    while start not in paths:
        nxt = []
        for node in frontier:
            for succ in graph[node]:
                if succ in members and succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    nxt.append(succ)
        frontier = nxt
    return paths[start]


@pytest.mark.pure
def test_the_graph_sees_the_imports_that_matter() -> None:
    """The resolver finds each style of import the repo uses (or the test would pass on
    an empty graph)."""
    graph = import_graph()
    edges = {(a.relative_to(REPO), b.relative_to(REPO)) for a in graph for b in graph[a]}
    assert (Path("tests/test_exec.py"), Path("tests/test_bad_input.py")) in edges
    assert (Path("tests/security/test_masks.py"), Path("tests/security/common.py")) in edges
    assert (Path("conformance/run.py"), Path("conformance/corpus.py")) in edges
    assert (Path("bench/bench.py"), Path("testkit/containerd.py")) in edges


def named_cycles(graph: dict[Path, set[Path]]) -> dict[str, set[str]]:
    """Each cycle's component (as repo paths), under a name that follows one cycle."""
    return {
        " -> ".join(str(p.relative_to(REPO)) for p in one_cycle(graph, component))
        + f" ({len(component)} files in the cycle's component)": {
            str(p.relative_to(REPO)) for p in component
        }
        for component in cycles(graph)
    }


@pytest.mark.pure
def test_no_import_cycle() -> None:
    found = list(named_cycles(import_graph()))
    assert found == [], "import cycles:\n" + "\n".join(found)


@pytest.mark.pure
def test_no_cycle_between_folders() -> None:
    """testkit <- tests, conformance, bench; conformance <- tests (the driver); nothing
    imports back up (a folder's graph: an edge where any file imports another folder's)."""
    folders: dict[Path, set[Path]] = {}
    for path, targets in import_graph().items():
        top = REPO / path.relative_to(REPO).parts[0]
        folders.setdefault(top, set()).update(REPO / t.relative_to(REPO).parts[0] for t in targets)
        folders[top].discard(top)
    found = [" <-> ".join(str(p.relative_to(REPO)) for p in c) for c in cycles(folders)]
    assert found == [], f"folders importing each other: {found}"
    assert folders[REPO / "testkit"] <= {REPO / "ociruntime"}, folders[REPO / "testkit"]


#: Inside the package, which folder may import which (ARCHITECTURE.md's table); the
#: basics (the package's top-level modules but cli) are open to every folder.
PACKAGE_LAYERS: dict[str, set[str]] = {
    "cli": {"commands", "container", "cgroups"},
    "commands": {"container", "stages", "process", "rootfs", "cgroups", "security", "kernel"},
    "stages": {"container", "process", "rootfs", "cgroups", "security", "kernel"},
    "container": {"cgroups", "process"},
    "process": {"rootfs", "security", "kernel"},
    "rootfs": {"cgroups", "security", "kernel"},
    "cgroups": {"kernel"},
    "security": {"kernel"},
    "kernel": set(),
    "basics": {"security"},  # importguard (tests only) reads containersafe's variable name
}


def package_layer(path: Path) -> str:
    parts = path.relative_to(REPO / "ociruntime").parts
    if len(parts) > 1:
        return parts[0]
    return "cli" if parts[0] in ("cli.py", "__main__.py", "launcher.py") else "basics"


@pytest.mark.pure
def test_package_folders_import_only_downwards() -> None:
    """A lower folder that must talk to a stage takes a callable, not the protocol; the
    cgroups package knows nothing of the container record; and so on (ARCHITECTURE.md)."""
    package = REPO / "ociruntime"
    wrong = sorted(
        f"{src.relative_to(REPO)} -> {dst.relative_to(REPO)}"
        for src, targets in import_graph().items()
        if package in src.parents
        for dst in targets
        if package in dst.parents
        and package_layer(dst) not in ("basics", package_layer(src))
        and package_layer(dst) not in PACKAGE_LAYERS[package_layer(src)]
    )
    assert wrong == [], "imports against the layering:\n" + "\n".join(wrong)
