#!/bin/sh
# Install everything (Debian packages, venv) and run the example busybox container.
# The bundle (bundles/busybox/config.json and a fresh busybox rootfs) is put together in a
# temporary directory, removed afterwards: nothing is written into the checkout but .venv.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
cp bundles/busybox/config.json "$bundle/"
bundles/build-rootfs.sh "$bundle/rootfs"
.venv/bin/ociruntime run --bundle "$bundle" "example-$$"
