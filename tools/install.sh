#!/bin/sh
# Install ociruntime from this checkout as a system tool (as root; idempotent):
#   tools/install.sh               the venv in /opt/ociruntime, the command /usr/local/bin/ociruntime
#   tools/install.sh --uninstall   removes exactly those two (the Debian packages stay)
# --prefix DIR / --bindir DIR (or OCIRUNTIME_PREFIX / OCIRUNTIME_BINDIR) install elsewhere.
#
# /opt/ociruntime, not /usr/local/lib/ociruntime: the install is one self-contained tree
# (its own interpreter venv, dependencies, package) that nothing else shares, which is what
# /opt is for; uninstalling is removing that one directory and the one launcher.
#
# The package (with its C extensions, byte-compiled) is built from a copy of the checkout's
# sources, so the checkout gets no build/ or egg-info and the install does not depend on the
# checkout staying where it is. The commit it was built from is written into the installed
# package (ociruntime/_build_info.py), where `ociruntime --version` reads it.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${OCIRUNTIME_PREFIX:-/opt/ociruntime}
bindir=${OCIRUNTIME_BINDIR:-/usr/local/bin}
action=install
while [ $# -gt 0 ]; do
    case $1 in
        --uninstall) action=uninstall ;;
        --prefix) prefix=$2; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        --bindir) bindir=$2; shift ;;
        --bindir=*) bindir=${1#--bindir=} ;;
        *) echo "usage: $0 [--uninstall] [--prefix DIR] [--bindir DIR]" >&2; exit 2 ;;
    esac
    shift
done
marker=$prefix/.ociruntime-install

uninstall() {
    if [ ! -e "$marker" ]; then
        echo "install.sh: nothing installed in $prefix (no $marker)" >&2
        return 0
    fi
    # What install recorded: the launcher (removed only if it is still ours) and whether
    # install made its directory (removed then if empty).
    launcher=$(sed -n 's/^launcher=//p' "$marker")
    made_bindir=$(sed -n 's/^made_bindir=//p' "$marker")
    # (the compiled launcher names its venv inside; the script one in its first line)
    if [ -n "$launcher" ] && { grep -qaF "ociruntime launcher for $prefix/venv" "$launcher" 2>/dev/null ||
        head -n 1 "$launcher" 2>/dev/null | grep -qxF "#!$prefix/venv/bin/python -IS"; }; then
        rm -f "$launcher"
    fi
    if [ -n "$made_bindir" ]; then
        rmdir "$made_bindir" 2>/dev/null || true
    fi
    rm -rf "$prefix"
    echo "install.sh: removed $prefix and $launcher" >&2
}

if [ "$action" = uninstall ]; then
    uninstall
    exit 0
fi

case $prefix in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
case $bindir in /*) ;; *) echo "install.sh: --bindir must be absolute" >&2; exit 2 ;; esac
if [ -e "$prefix" ] && [ ! -e "$marker" ] && [ -n "$(ls -A "$prefix")" ]; then
    echo "install.sh: $prefix exists and is not an ociruntime install: not touching it" >&2
    exit 1
fi
# Building needs a compiler and Python's headers (the two C extensions) and libseccomp
# (pyseccomp); running needs libseccomp2 only.
. "$src/tools/debs.sh"
install_missing_debs install.sh "" python3 python3-venv python3-dev gcc libseccomp-dev

# The commit, -dirty if the package's sources differ from it (safe.directory: root
# installing a checkout another user owns); without git, read from .git as --version does.
commit=""
if command -v git >/dev/null && git -c safe.directory="$src" -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    commit=$(git -c safe.directory="$src" -C "$src" rev-parse --short=12 HEAD)
    git -c safe.directory="$src" -C "$src" diff --quiet HEAD -- ociruntime setup.py setup.cfg pyproject.toml ||
        commit="$commit-dirty"
else
    commit=$(/usr/bin/python3 -I -S -c 'import sys; sys.path.insert(0, sys.argv[1])
from ociruntime.commands.version import commit; print(commit() or "")' "$src" 2>/dev/null || true)
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -C "$src" --exclude=__pycache__ --exclude='*.so' -cf - \
    pyproject.toml setup.cfg setup.py ociruntime | tar -C "$build" -xf -
printf '"""Written by tools/install.sh: the commit this copy was installed from."""\n\nCOMMIT = %s\n' \
    "\"$commit\"" > "$build/ociruntime/_build_info.py"

made_bindir=""
if [ -e "$marker" ]; then
    made_bindir=$(sed -n 's/^made_bindir=//p' "$marker")
elif [ ! -d "$bindir" ]; then
    made_bindir=$bindir
fi
mkdir -p "$prefix" "$bindir"
printf 'launcher=%s\nmade_bindir=%s\n' "$bindir/ociruntime" "$made_bindir" > "$marker"
if [ ! -x "$prefix/venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$prefix/venv"
fi
# A local directory is always rebuilt and reinstalled, so re-running picks up new code.
"$prefix/venv/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$build"
"$prefix/venv/bin/python" -I -m compileall -q "$prefix/venv/lib"
# The launcher (compiled, else an isolated script: see ociruntime/launcher.py), its paths
# those of the installed copy:
# -I so that the checkout (the working directory) is not on sys.path.
(cd / && "$prefix/venv/bin/python" -I -m ociruntime.launcher "$bindir/ociruntime")
echo "install.sh: installed $bindir/ociruntime (${commit:-unknown commit}), venv $prefix/venv" >&2
