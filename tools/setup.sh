#!/bin/sh
# Install everything ociruntime needs on Debian 12 (as root) and create the venv in .venv.
# Idempotent: re-running only installs what is missing.
set -eu
cd "$(dirname "$0")/.."
debs="python3 python3-venv python3-dev gcc libseccomp-dev busybox-static runc iproute2 procps"
debs="$debs ${OCIRUNTIME_EXTRA_DEBS:-}"
. tools/debs.sh
# shellcheck disable=SC2086 # one word a package
install_missing_debs setup "" $debs
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
# compat mode: a plain .pth entry, no import-hook finder on the hot path.
stamp=.venv/.installed-$(cat setup.cfg pyproject.toml setup.py ociruntime/security/_anonexe.c ociruntime/kernel/_syscall.c | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" \
        --config-settings editable_mode=compat
    touch "$stamp"
fi
# Byte-compile the package: the runtime starts on every container operation, and without
# .pyc files (e.g. under PYTHONDONTWRITEBYTECODE) each start would recompile it.
.venv/bin/python -m compileall -q ociruntime
# Replace pip's console-script wrapper with the compiled launcher (the interpreter embedded,
# isolated and site-less: faster start, immune to PYTHONPATH; the script launcher where it
# cannot be built): see ociruntime/launcher.py.
.venv/bin/python -m ociruntime.launcher .venv/bin/ociruntime
