#!/bin/sh
# Install what the tests need (Debian packages, venv) and run the whole test suite as root.
# Extra arguments go to pytest, e.g. `tools/test.sh -k lifecycle -x`.
set -eu
cd "$(dirname "$0")/.."
OCIRUNTIME_EXTRA_DEBS="gcc libc6-dev uidmap" tools/setup.sh
tools/install-clients.sh  # the engines the client tests drive (containerd, podman)
.venv/bin/ruff check ociruntime tests bench schemas conformance
.venv/bin/python schemas/generate.py --check
exec .venv/bin/python -m pytest "$@"
