"""Install the `ociruntime` command: a compiled launcher, or else an isolated script.

pip's console-script wrapper runs the interpreter with `site` (the venv's .pth files,
~2 ms) and imports `re`, then honours PYTHONPATH and friends. A container runtime runs as
root on every container operation, so the command starts Python isolated (as -I: no
PYTHON* variables, no user site-packages) and without `site` (-S), with the paths it
needs written in: where the package is, where its dependencies are, the standard library.

The launcher is a small C program (launcher.c) that embeds the interpreter, linked with
libpython's static library: for `create`, `run` and `exec` it starts the cgroup warm-up
(cgroups/warmup.py) before the interpreter starts, ~7 ms earlier than a script can, and
the kernel's grace period, create's longest wait, ends that much sooner (40 interleaved
runs, medians: create 35.4 -> 31.2 ms, run 43.2 -> 37.3, exec 28.8 -> 27.4). It also
skips the kernel's `#!` indirection, the interpreter's search for its own paths and the
script's compilation (`pass` starts in 6.3 ms instead of 7.2), but Debian's static
library has no link-time optimisation (/usr/bin/python3.11 has), so Python code runs
~10% slower in it, and the one-shot commands lose 0.2-0.3 ms (two runs of 300
interleaved `state`s: 8.42 -> 8.64 ms and 10.66 -> 10.98).
The runtime's C extensions are linked in as built-in modules and zlib and expat
statically (launcher.c says why: create 30.79 -> 29.91 ms, exec 24.68 -> 22.66, `state`
9.81 -> 9.62 in interleaved A/Bs). Where it cannot be built (no C compiler, no
libpython3.11.a: python3-dev), the script
launcher (TEMPLATE) is written instead, with a warning. It holds its interpreter: after
an upgrade of Python, run tools/setup.sh (or tools/install.sh) again.

    .venv/bin/python -m ociruntime.launcher .venv/bin/ociruntime
    .venv/bin/python -m ociruntime.launcher --script .venv/bin/ociruntime
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

TEMPLATE = """#!{python} -IS
# Written by `python -m ociruntime.launcher`: isolated from the environment, no site.
import sys
sys.path[0:0] = {paths!r}
if "create" in sys.argv or "run" in sys.argv or "exec" in sys.argv:
    from ociruntime.cgroups.warmup import warm_up_for
    warm_up_for(sys.argv[1:])  # the kernel's grace period, started first
from ociruntime.cli import run_and_exit
run_and_exit()
"""

#: What the compiled launcher runs, `WARMED` (a create, run or exec) and `WARM_UP_THREAD`
#: set by it (launcher.c); `prelude` (Python lines) goes before the CLI's import: the
#: bench's and the tests' variants.
BODY = """if WARMED:  # the C extensions linked into the launcher, and its warm-up thread
    import sys, _ociruntime_syscall, _ociruntime_anonexe
    sys.modules["ociruntime.kernel._syscall"] = _ociruntime_syscall
    sys.modules["ociruntime.security._anonexe"] = _ociruntime_anonexe
    if WARM_UP_THREAD:
        from ociruntime.cgroups.warmup import adopt
        adopt(WARM_UP_THREAD)  # started by the launcher, before the interpreter
{prelude}from ociruntime.cli import run_and_exit
run_and_exit()
"""

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(_HERE, "launcher.c")
#: The runtime's C extensions, linked into the launcher as built-in modules (BODY).
EXTENSIONS = [
    os.path.join(_HERE, "kernel", "_syscall.c"),
    os.path.join(_HERE, "security", "_anonexe.c"),
]
#: Libraries libpython's built-in modules need, linked statically where their archives
#: are installed (python3-dev brings them): two shared objects fewer to load and detach.
STATIC_IF_FOUND = ("z", "expat")


class BuildError(Exception):
    """The compiled launcher could not be built here."""


def package_paths() -> list[str]:
    """Where the package and its dependencies are, first on the launcher's path."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_parent]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in paths:
            paths.append(path)
    return paths


def launcher_text() -> str:
    """The script launcher for this interpreter and this package."""
    return TEMPLATE.format(python=sys.executable, paths=package_paths())


def _isolated_interpreter() -> dict:
    """sys.path and the prefixes of this interpreter run as `python -I -S`."""
    code = (
        "import sys, json; print(json.dumps({'path': sys.path, 'prefix': sys.prefix,"
        " 'exec_prefix': sys.exec_prefix, 'base_prefix': sys.base_prefix,"
        " 'base_exec_prefix': sys.base_exec_prefix}))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True, cwd="/").stdout  # fmt: skip
    return json.loads(out)


def _c_string(text: str) -> str:
    """A C string literal of `text`'s file-system bytes: every byte that is not a
    letter, digit or plain punctuation as an octal escape."""
    plain = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-./,:;=+()[]")
    data = os.fsencode(text)
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03o}" for b in data) + '"'


def config_header(dest: str, prelude: str = "") -> str:
    """launcher_config.h for a launcher installed at `dest`."""
    isolated = _isolated_interpreter()
    paths = package_paths() + [p for p in isolated["path"] if p and p not in package_paths()]
    lines = [
        "/* Generated by ociruntime/launcher.py: the paths and the body of one launcher. */",
        "static const char *const SEARCH_PATHS[] = {"
        + ", ".join(_c_string(p) for p in paths)
        + ", 0};",
    ]
    for name in ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix"):
        lines.append(f"#define {name.upper()} {_c_string(isolated[name])}")
    lines.append(f"#define EXECUTABLE {_c_string(os.path.abspath(dest))}")
    lines.append(f"#define IDENT {_c_string('ociruntime launcher for ' + sys.prefix)}")
    lines.append(f"#define BODY {_c_string(BODY.format(prelude=prelude))}")
    return "\n".join(lines) + "\n"


def _compile_command(source: str, include: str, out: str, selftest: bool) -> list[str]:
    cv = sysconfig.get_config_var
    library = os.path.join(cv("LIBPL") or "", cv("LIBRARY") or "")
    if not os.path.isfile(library):
        raise BuildError(f"no {library} (Debian: apt-get install python3-dev)")
    candidates = [*(cv("CC") or "").split()[:1], "gcc", "cc"]
    cc = next((found for name in candidates if (found := shutil.which(name))), None)
    if cc is None:
        raise BuildError("no C compiler (Debian: apt-get install gcc)")
    libs = []
    for flag in " ".join([cv("LIBS") or "", cv("SYSLIBS") or "", cv("MODLIBS") or ""]).split():
        if flag not in libs:
            libs.append(flag)
    for name in STATIC_IF_FOUND:
        archive = subprocess.run([cc, f"-print-file-name=lib{name}.a"], capture_output=True,
                                 text=True).stdout.strip()  # fmt: skip
        if f"-l{name}" in libs and os.path.isabs(archive):
            libs[libs.index(f"-l{name}")] = archive
    selftest_flags = ["-DLAUNCHER_SELFTEST"] if selftest else []
    # -no-pie as /usr/bin/python3.11: Debian's libpython3.11.a is not position-independent.
    # LINKFORSHARED exports the interpreter's symbols to the extension modules it loads.
    return [cc, "-O2", "-no-pie", *selftest_flags, "-I", include, "-I", cv("INCLUDEPY"),
            source, *EXTENSIONS, "-o", out, library, *(cv("LINKFORSHARED") or "").split(), *libs,
            "-lpthread"]  # fmt: skip


def build(dest: str, prelude: str = "", selftest: bool = False) -> None:
    """Compile the launcher to `dest` (atomically), checked by running it once."""
    with tempfile.TemporaryDirectory() as include:
        with open(os.path.join(include, "launcher_config.h"), "w") as f:
            f.write(config_header(dest, prelude))
        tmp = dest + ".tmp"
        cmd = _compile_command(SOURCE, include, tmp, selftest)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise BuildError(f"{' '.join(cmd)}:\n{p.stderr.strip()}")
    check = [tmp] if selftest else [tmp, "--version"]
    p = subprocess.run(check, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        os.unlink(tmp)
        raise BuildError(f"the built launcher does not run: {p.stdout}{p.stderr}".strip())
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)


def write_script(dest: str, prelude: str = "") -> None:
    """Write the script launcher to `dest` (atomically)."""
    text = launcher_text()
    anchor = "from ociruntime.cli import run_and_exit\n"
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(text.replace(anchor, prelude + anchor))
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)


def install(dest: str, script: bool = False) -> None:
    """The compiled launcher at `dest`; the script launcher if asked or if it cannot be
    built here (saying why)."""
    if not script:
        try:
            build(dest)
            return
        except BuildError as e:
            print(f"ociruntime.launcher: writing the script launcher (~1 ms slower to start"
                  f" on every command): the compiled one could not be built: {e}",
                  file=sys.stderr)  # fmt: skip
    write_script(dest)


if __name__ == "__main__":
    args = sys.argv[1:]
    install(args[-1], script="--script" in args[:-1])
