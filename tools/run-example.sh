#!/bin/sh
# Install everything (Debian packages, venv) and run the example busybox container.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
[ -x bundles/busybox/rootfs/bin/busybox ] || bundles/build-rootfs.sh bundles/busybox/rootfs
exec .venv/bin/ociruntime run --bundle bundles/busybox "example-$$"
