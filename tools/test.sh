#!/bin/sh
# Install what the tests need (Debian packages, venv) and run the whole test suite in two
# tiers: the pure tests (marked `pure`: no root, no kernel state) as an unprivileged user,
# then everything else as root. Extra arguments go to both pytest runs, e.g.
# `tools/test.sh -k lifecycle -x`; with `-m` of your own, one root run as before.
set -eu
cd "$(dirname "$0")/.."
OCIRUNTIME_EXTRA_DEBS="gcc libc6-dev uidmap" tools/setup.sh
tools/install-clients.sh  # the engines the client tests drive (containerd, podman, docker)
.venv/bin/ruff check ociruntime tests bench schemas conformance testkit
.venv/bin/python schemas/generate.py --check

for arg in "$@"; do
    case "$arg" in -m | -m*) exec .venv/bin/python -m pytest "$@" ;; esac
done

# The pure tier as nobody (uid 65534): proves those tests need no privilege. It writes
# nothing in the repo (no cache, no bytecode, hypothesis and pytest's tmp in a dir it
# owns), so it only needs to read the repo. Should it not be able to (a repo under a 0700
# directory such as /root), the pure tests run in the root tier instead, said in one line.
pure_rc=skipped
if [ "$(id -u)" = 0 ]; then
    tmp=$(mktemp -d /tmp/ociruntime-pure.XXXXXX)
    chown 65534:65534 "$tmp"
    as_nobody="setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=$tmp TMPDIR=$tmp"
    as_nobody="$as_nobody PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY=$tmp/hypothesis"
    if $as_nobody .venv/bin/python -c "import ociruntime, pytest, hypothesis" 2>/dev/null; then
        echo "test.sh: the pure tier, as nobody (uid 65534)" >&2
        pure_rc=0
        $as_nobody .venv/bin/python -m pytest "$@" -m pure -p no:cacheprovider \
            --basetemp="$tmp/base" || pure_rc=$?
    else
        echo "test.sh: nobody (uid 65534) cannot read $(pwd) or its .venv (a 0700" \
            "directory above it?): the pure tests run as root with the others" >&2
    fi
    rm -rf "$tmp"
fi
case "$pure_rc" in
    0) ;;  # the root tier leaves them out: no test runs twice
    5) pure_rc=skipped ;;  # none of the selected tests is pure
    skipped) ;;
    *) exit "$pure_rc" ;;
esac

echo "test.sh: the root tier" >&2
if [ "$pure_rc" = 0 ]; then
    rc=0
    .venv/bin/python -m pytest "$@" -m "not pure" || rc=$?
    [ "$rc" = 5 ] && rc=0  # every selected test was pure, and passed above
    exit "$rc"
fi
exec .venv/bin/python -m pytest "$@"
